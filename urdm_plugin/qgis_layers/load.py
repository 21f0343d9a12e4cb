"""Loading a run's result rasters as styled, tagged layers (main thread).

:func:`load_result_layer` makes one layer (styled by :func:`.style.style_by_role`, tagged
by :func:`.tags.tag_layer`); :func:`add_run_to_map` loads every result of a run into a new
group at the top of the layer tree. Run :func:`.dominant.prepare_run` first (in a
background thread) so the dominant-material map and the display ranges exist.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from qgis.core import QgsLayerTreeGroup, QgsProject, QgsRasterLayer

from .groups import RANK_PROPERTY, run_group_name, unique_group_name
from .notes import attach_selection_note
from .runs import RunFileError, read_manifest, run_layers
from .style import style_by_role
from .tags import tag_layer


def load_result_layer(path: str, name: str, run_json: str, manifest: dict, role: str,
                      endmember: Optional[str] = None) -> QgsRasterLayer:
    """The result raster ``path`` as a layer named ``name``, styled for ``role`` and tagged
    with the run. Raises :class:`.runs.RunFileError` when the file is missing or unreadable."""
    if not path or not os.path.isfile(path):
        raise RunFileError(f"The result raster '{path}' of the run is missing",
                           "Check the run folder, or run the unmixing again")
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        raise RunFileError(f"QGIS cannot load the result raster '{path}'", "Check the run folder")
    style_by_role(layer, manifest, role, endmember)
    tag_layer(layer, run_json, role, endmember)
    return layer


def add_run_to_map(run_json: str, input_name: Optional[str] = None, project=None,
                   manifest: Optional[dict] = None, group_name: Optional[str] = None):
    """Load every result layer of a run into a new, expanded group at the top of the layer
    tree, named ``<input> – <method> <time>`` (:func:`.groups.run_group_name`) unless
    ``group_name`` is given.

    Returns ``(group, layers)``. Abundance maps come first, in library order, then the
    dominant, residual and uncertainty maps; only the first abundance map is visible (one
    click to compare the others); each carries the run's Selection note
    (:mod:`.notes`). Raises :class:`.runs.RunFileError` (an ``OutputError``)
    when a file cannot be loaded.
    """
    project = project or QgsProject.instance()
    run_json = os.path.abspath(run_json)
    m = manifest if manifest is not None else read_manifest(run_json)
    if input_name is None:
        input_name = Path(m.get("inputs", {}).get("image", "image")).stem
    root = project.layerTreeRoot()
    # the group is filled first and inserted whole: the Layers panel expands a group when it
    # is inserted, and an empty one stayed collapsed there though its node said expanded
    group = QgsLayerTreeGroup(unique_group_name(root, group_name or run_group_name(input_name, m)))
    group.setExpanded(True)
    layers = []
    for rank, (path, name, role, em) in enumerate(run_layers(run_json, m)):
        layer = load_result_layer(path, name, run_json, m, role, em)
        layer.setCustomProperty(RANK_PROPERTY, rank)
        layers.append(layer)
    for rank, layer in enumerate(layers):  # all loaded: a missing file added nothing
        project.addMapLayer(layer, False)
        node = group.addLayer(layer)
        node.setItemVisibilityChecked(rank == 0)
        node.setExpanded(rank == 0)
    root.insertChildNode(0, group)
    group.setExpanded(False)  # and told again: the panel follows a change of the flag
    group.setExpanded(True)
    attach_selection_note(layers, m)
    return group, layers
