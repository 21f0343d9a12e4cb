"""Putting a run's result layers into a project: loading, styling, tagging, grouping.

:func:`load_result_layer` is the one place a result raster becomes a styled, tagged
``QgsRasterLayer``; :func:`add_run_to_map` (the dialog's task, Processing's post-processor)
loads a whole run into a new group, and the map sheet loads what a project lacks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .runs import RunFileError, read_manifest, run_layers
from .styles import style_by_role
from .tags import ROLE_ABUNDANCE, tag_layer

GROUP_PREFIX = "URDM – "


def load_result_layer(run_json: str, manifest: dict, path: str, name: str, role: str,
                      endmember: Optional[str] = None):
    """A styled, tagged raster layer for one result file of a run (not added to a project).
    Raises :class:`RunFileError` when the file is missing or QGIS cannot load it."""
    from qgis.core import QgsRasterLayer

    if not path or not os.path.isfile(path):
        raise RunFileError(f"The result raster '{path}' of the run is missing",
                           "Check the run folder, or run the unmixing again")
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        raise RunFileError(f"QGIS cannot load the result raster '{path}'", "Check the run folder")
    style_by_role(layer, manifest, role, endmember)
    tag_layer(layer, run_json, role, endmember)
    return layer


def _unique_group_name(root, base: str) -> str:
    names = {g.name() for g in root.findGroups()}
    if base not in names:
        return base
    i = 2
    while f"{base} ({i})" in names:
        i += 1
    return f"{base} ({i})"


def group_name_for(input_name: str) -> str:
    return f"{GROUP_PREFIX}{input_name}"


def add_run_to_map(run_json: str, input_name: Optional[str] = None, project=None,
                   manifest: Optional[dict] = None):
    """Load every result layer of a run into a new group at the top of the layer tree.

    Returns ``(group, layers)``. The first abundance map is visible; the others, the
    dominant, residual and uncertainty maps are loaded unchecked (one click to compare).
    Raises :class:`RunFileError` (an OutputError) when a file cannot be loaded.
    """
    from qgis.core import QgsProject

    project = project or QgsProject.instance()
    run_json = os.path.abspath(run_json)
    m = manifest if manifest is not None else read_manifest(run_json)
    if input_name is None:
        input_name = Path(m.get("inputs", {}).get("image", "image")).stem
    root = project.layerTreeRoot()
    group = root.insertGroup(0, _unique_group_name(root, group_name_for(input_name)))
    layers = []
    first = True
    for path, name, role, em in run_layers(run_json, m):
        layer = load_result_layer(run_json, m, path, name, role, em)
        project.addMapLayer(layer, False)
        node = group.addLayer(layer)
        node.setItemVisibilityChecked(first and role == ROLE_ABUNDANCE)
        first = False
        if role != ROLE_ABUNDANCE:
            node.setExpanded(False)
        layers.append(layer)
    return group, layers


def move_layer_into_group(layer, project, group_name: str):
    """Move a layer's tree node into the (created if needed) top-level group ``group_name``."""
    root = project.layerTreeRoot()
    group = root.findGroup(group_name)
    if group is None:
        group = root.insertGroup(0, group_name)
    node = root.findLayer(layer.id())
    if node is None:
        group.addLayer(layer)
        return group
    if node.parent() is group:
        return group
    clone = node.clone()
    group.addChildNode(clone)
    node.parent().removeChildNode(node)
    return group


def group_of_run(project, run_json: str, input_name: str):
    """The layer-tree group holding ``run_json``'s layers, else the run's default group
    (created at the top when missing)."""
    from .tags import layers_with_runs, run_json_of_layer, same_path

    root = project.layerTreeRoot()
    for lyr in layers_with_runs(project):
        if same_path(run_json_of_layer(lyr), run_json):
            node = root.findLayer(lyr.id())
            if node is not None and node.parent() is not None:
                return node.parent()
    name = group_name_for(input_name)
    return root.findGroup(name) or root.insertGroup(0, name)
