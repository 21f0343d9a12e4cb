"""Finding finished runs: reading ``run.json`` and the project layers that point at one.

Every result layer carries the custom property ``urdm/run_json`` (absolute path of the
run's ``run.json``), so the map tools work after QGIS restarts with the project reopened:
everything else is read from the files.

:func:`load_run` needs no QGIS; the ``*_layers`` helpers take a ``QgsProject``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..core.errors import UrdmError

#: Custom layer properties (the same keys gui/results.py sets).
PROP_RUN_JSON = "urdm/run_json"
PROP_ROLE = "urdm/role"
PROP_ENDMEMBER = "urdm/endmember"

ROLE_ABUNDANCE = "abundance"
ROLE_RESIDUAL = "residual"


class RunFileError(UrdmError):
    """A run folder or its run.json is missing, unreadable or incomplete."""


@dataclass
class RunInfo:
    """What the map tools need from one run (paths absolute)."""

    run_json: str
    folder: str
    manifest: dict
    method: str
    endmembers: list  # [(name, absolute path)]
    residual: Optional[str]
    image: str
    input_name: str
    bands_used: list  # 1-based
    scale: list
    offset: list
    wavelengths_nm: Optional[list]
    library_csv: Optional[str]
    parameters: dict = field(default_factory=dict)
    version: str = ""
    created: str = ""

    @property
    def names(self) -> list:
        return [n for n, _ in self.endmembers]

    @property
    def method_label(self) -> str:
        from ..core.methods.registry import get_method

        try:
            return get_method(self.method).label
        except UrdmError:
            return str(self.method)

    @property
    def date(self) -> str:
        """The run's creation date (YYYY-MM-DD) or "" if unknown."""
        return (self.created or "")[:10]


def resolve_run_json(path) -> str:
    """Absolute path of run.json from a run folder or the run.json itself."""
    if path is None or str(path).strip() == "":
        raise RunFileError("No run was given", "Choose a run folder (it holds run.json) or its run.json")
    p = Path(str(path)).expanduser()
    if p.is_dir():
        p = p / "run.json"
    if not p.is_file():
        raise RunFileError(f"No run.json found at '{p}'",
                           "Choose a folder written by URDM unmixing (it holds run.json) or its run.json")
    return os.path.abspath(str(p))


def _resolve_file(folder: str, name: Optional[str]) -> Optional[str]:
    if not name:
        return None
    return name if os.path.isabs(name) else os.path.join(folder, name)


def _locate_image(folder: str, image: str) -> str:
    """The input image path; a relative or moved one is looked for beside the run too."""
    if not image:
        return ""
    if os.path.isabs(image) and os.path.exists(image):
        return image
    for cand in (os.path.join(folder, image), os.path.join(os.path.dirname(folder), image),
                 os.path.join(os.path.dirname(folder), os.path.basename(image))):
        if os.path.exists(cand):
            return os.path.abspath(cand)
    return os.path.abspath(image) if not os.path.isabs(image) else image


def load_run(path) -> RunInfo:
    """Read a run from its folder or run.json; raises :class:`RunFileError` if unusable."""
    run_json = resolve_run_json(path)
    try:
        with open(run_json, encoding="utf-8") as fh:
            m = json.load(fh)
    except (OSError, ValueError) as exc:
        raise RunFileError(f"Cannot read '{run_json}' ({exc})",
                           "Choose a run.json written by URDM unmixing") from None
    if not isinstance(m, dict) or not isinstance(m.get("endmembers"), list) or not m["endmembers"]:
        raise RunFileError(f"'{run_json}' lists no endmember rasters",
                           "Choose a run.json written by URDM unmixing, or run the unmixing again")
    folder = os.path.dirname(run_json)
    ems = []
    for e in m["endmembers"]:
        if not isinstance(e, dict) or "file" not in e:
            raise RunFileError(f"An endmember entry in '{run_json}' has no file",
                               "Run the unmixing again to rewrite run.json")
        ems.append((str(e.get("name") or Path(e["file"]).stem), _resolve_file(folder, e["file"])))
    inputs = m.get("inputs") or {}
    image = _locate_image(folder, str(inputs.get("image") or ""))
    extra = m.get("extra_files") or {}
    lib = _resolve_file(folder, extra.get("endmembers_used") or "endmembers_used.csv")
    return RunInfo(
        run_json=run_json,
        folder=folder,
        manifest=m,
        method=str(m.get("method", "")),
        endmembers=ems,
        residual=_resolve_file(folder, m.get("residual_file")),
        image=image,
        input_name=Path(image).stem if image else Path(folder).name,
        bands_used=[int(b) for b in inputs.get("bands_used") or []],
        scale=[float(s) for s in inputs.get("scale") or []],
        offset=[float(o) for o in inputs.get("offset") or []],
        wavelengths_nm=inputs.get("wavelengths_nm"),
        library_csv=lib if lib and os.path.isfile(lib) else None,
        parameters=dict(m.get("parameters") or {}),
        version=str(m.get("version", "")),
        created=str(m.get("created", "")),
    )


def same_path(a, b) -> bool:
    if not a or not b:
        return False
    return os.path.normcase(os.path.realpath(str(a))) == os.path.normcase(os.path.realpath(str(b)))


# -- project layers (qgis) -------------------------------------------------------------


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
