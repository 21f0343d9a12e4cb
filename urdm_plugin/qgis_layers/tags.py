"""Tagging result layers, and finding the project layers of a run.

Every result layer carries three custom properties: ``urdm/run_json`` (absolute path of
the run's ``run.json``), ``urdm/role`` (one of the ``ROLE_*`` constants) and, for
per-endmember layers, ``urdm/endmember``. The map tools (pixel inspector, map sheet)
find a run's layers by them, also in a reopened project. The functions here only call
methods of the layers and project they are given (no QGIS import).
"""

from __future__ import annotations

import os
from typing import Optional

#: Custom layer properties set on every result layer.
PROP_RUN_JSON = "urdm/run_json"
PROP_ROLE = "urdm/role"
PROP_ENDMEMBER = "urdm/endmember"

ROLE_ABUNDANCE = "abundance"
ROLE_RESIDUAL = "residual"
ROLE_DOMINANT = "dominant"
ROLE_UNCERTAINTY = "uncertainty"
ROLE_SCALING = "scaling"


def tag_layer(layer, run_json: str, role: str, endmember: Optional[str] = None) -> None:
    """Set the ``urdm/*`` custom properties of a result layer."""
    layer.setCustomProperty(PROP_RUN_JSON, os.path.abspath(run_json))
    layer.setCustomProperty(PROP_ROLE, role)
    if endmember is not None:
        layer.setCustomProperty(PROP_ENDMEMBER, str(endmember))


def same_path(a, b) -> bool:
    if not a or not b:
        return False
    return os.path.normcase(os.path.realpath(str(a))) == os.path.normcase(os.path.realpath(str(b)))


def run_json_of_layer(layer) -> Optional[str]:
    """The ``urdm/run_json`` custom property of a layer, or None."""
    if layer is None:
        return None
    try:
        v = layer.customProperty(PROP_RUN_JSON)
    except (AttributeError, RuntimeError):  # deleted C++ object
        return None
    return v if isinstance(v, str) and v else None


def layers_with_runs(project) -> list:
    """Project layers carrying ``urdm/run_json``, in layer-tree order (top first)."""
    if project is None:
        return []
    ordered = []
    try:
        ordered = [node.layer() for node in project.layerTreeRoot().findLayers()]
    except (AttributeError, RuntimeError):
        pass
    seen = {id(lyr) for lyr in ordered}
    ordered += [lyr for lyr in project.mapLayers().values() if id(lyr) not in seen]
    return [lyr for lyr in ordered if lyr is not None and run_json_of_layer(lyr)]


def project_has_runs(project) -> bool:
    return bool(layers_with_runs(project))


def run_jsons_in_project(project) -> list:
    """Distinct run.json paths referenced by project layers (layer-tree order)."""
    out = []
    for lyr in layers_with_runs(project):
        p = run_json_of_layer(lyr)
        if not any(same_path(p, q) for q in out):
            out.append(p)
    return out


def find_run_layer(project, run_json, role: str, endmember: Optional[str] = None):
    """The project layer of ``run_json`` with ``role`` (and ``endmember``), or None."""
    for lyr in layers_with_runs(project):
        if not same_path(run_json_of_layer(lyr), run_json):
            continue
        if str(lyr.customProperty(PROP_ROLE) or "") != role:
            continue
        if endmember is not None and str(lyr.customProperty(PROP_ENDMEMBER) or "") != str(endmember):
            continue
        return lyr
    return None


def current_run_json(iface, project) -> Optional[str]:
    """The run of the active layer if it has one, else the top-most run in the project."""
    active = None
    if iface is not None:
        try:
            active = iface.activeLayer()
        except (AttributeError, RuntimeError):
            active = None
    p = run_json_of_layer(active)
    if p:
        return p
    runs = run_jsons_in_project(project)
    return runs[0] if runs else None
