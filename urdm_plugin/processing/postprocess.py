"""Layer post-processors for Processing results: style and tag each loaded result layer.

QGIS keeps only a raw pointer to a post-processor, so the Python objects are kept alive in
the module-level :data:`_KEEP_ALIVE` (keyed by the layer's file; a later run of the same
file replaces the entry).
"""

from __future__ import annotations

from typing import Optional

from qgis.core import QgsProcessingLayerPostProcessorInterface

#: Post-processors QGIS may still call (keyed by the output file path).
_KEEP_ALIVE: dict = {}


class ResultLayerPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles one result layer like the dialog does, sets the ``urdm/*`` custom properties
    and the run's Selection note, and moves it into its run's group (``<input> – <method> <time>``) at its place in the
    run's layer order (``rank``; only rank 0, the first abundance map, is visible)."""

    def __init__(self, run_json: str, role: str, endmember: Optional[str], group_name: str, name: str,
                 rank: Optional[int] = None):
        super().__init__()
        self.rank = rank
        self.run_json = run_json
        self.role = role
        self.endmember = endmember
        self.group_name = group_name
        self.name = name

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS's name
        from ..qgis_layers.groups import move_layer_into_group
        from ..qgis_layers.notes import attach_selection_note
        from ..qgis_layers.runs import read_manifest
        from ..qgis_layers.style import style_by_role
        from ..qgis_layers.tags import tag_layer

        try:
            manifest = read_manifest(self.run_json)
            style_by_role(layer, manifest, self.role, self.endmember)
            tag_layer(layer, self.run_json, self.role, self.endmember)
            attach_selection_note([layer], manifest)
            layer.setName(self.name)
            project = context.project()
            if project is not None:
                move_layer_into_group(layer, project, self.group_name, self.rank)
        except Exception as err:  # noqa: BLE001 - styling must never break loading the layer
            if feedback is not None:
                feedback.reportError(f"Could not style {layer.name()}: {err}")


def create(path: str, run_json: str, role: str, endmember: Optional[str], group_name: str,
           name: str, rank: Optional[int] = None) -> ResultLayerPostProcessor:
    """A post-processor for ``path``, kept alive in :data:`_KEEP_ALIVE`."""
    pp = ResultLayerPostProcessor(run_json, role, endmember, group_name, name, rank)
    _KEEP_ALIVE[path] = pp
    return pp
