"""A finished run's files: reading and rewriting ``run.json`` (no QGIS).

:func:`read_manifest` is the one reader of run.json for the QGIS side (dialog, map tools,
Processing); :func:`load_run` turns it into the :class:`RunInfo` the map tools use and
:func:`run_layers` lists the result rasters in map order. Every result layer carries the
custom property ``urdm/run_json`` (see :mod:`.tags`), so everything else is read from these
files, also after QGIS restarts with the project reopened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..core.errors import OutputError, UrdmError
from .tags import ROLE_ABUNDANCE, ROLE_DOMINANT, ROLE_RESIDUAL, ROLE_SCALING, ROLE_UNCERTAINTY


class RunFileError(OutputError):
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
    dominant: Optional[str] = None  # dominant.tif when prepare_run wrote it

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
    def method_short(self) -> str:
        """The label without its explanation in brackets ("URDM", "TV-regularised")."""
        return self.method_label.split(" (")[0].strip() or str(self.method)

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


def resolve_run_file(folder: str, name: Optional[str]) -> Optional[str]:
    """The run file ``name`` inside ``folder`` (never outside it: see core.io.manifest)."""
    from ..core.io.manifest import run_file_path

    if not name:
        return None
    try:
        return run_file_path(folder, name)
    except OutputError as exc:
        raise RunFileError(exc.problem, exc.fix) from None


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


def read_manifest(run_json) -> dict:
    """The content of ``run_json`` (checked by :class:`core.io.manifest.RunManifest`);
    raises :class:`RunFileError` when it is unreadable or lists no endmember rasters."""
    from ..core.io.manifest import RunManifest

    try:
        return RunManifest.read(run_json).to_dict()
    except OutputError as exc:
        raise RunFileError(exc.problem, exc.fix) from None


def write_manifest(run_json: str, manifest: dict) -> None:
    """Rewrite run.json atomically (a reader never sees a half-written file)."""
    from ..core.io.manifest import RunManifest

    RunManifest.from_dict(manifest, str(run_json)).write(run_json)


def load_run(path) -> RunInfo:
    """Read a run from its folder or run.json; raises :class:`RunFileError` if unusable."""
    run_json = resolve_run_json(path)
    m = read_manifest(run_json)
    folder = os.path.dirname(run_json)
    ems = []
    for e in m["endmembers"]:
        ems.append((str(e.get("name") or Path(e["file"]).stem), resolve_run_file(folder, e["file"])))
    inputs = m.get("inputs") or {}
    image = _locate_image(folder, str(inputs.get("image") or ""))
    extra = m.get("extra_files") or {}
    lib = resolve_run_file(folder, extra.get("endmembers_used") or "endmembers_used.csv")
    return RunInfo(
        run_json=run_json,
        folder=folder,
        manifest=m,
        method=str(m.get("method", "")),
        endmembers=ems,
        residual=resolve_run_file(folder, m.get("residual_file")),
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
        dominant=_existing(resolve_run_file(folder, extra.get("dominant"))),
    )


def _existing(path: Optional[str]) -> Optional[str]:
    return path if path and os.path.isfile(path) else None


def run_layers(run_json: str, manifest: Optional[dict] = None) -> list:
    """``[(path, layer name, role, endmember or None)]`` for the files of a run, in map order."""
    run_json = os.path.abspath(run_json)
    run_dir = os.path.dirname(run_json)
    m = manifest if manifest is not None else read_manifest(run_json)
    out = []
    for em in m.get("endmembers", []):
        out.append((resolve_run_file(run_dir, em["file"]), em["name"], ROLE_ABUNDANCE, em["name"]))
    extra = m.get("extra_files") or {}
    if extra.get("dominant"):
        out.append((resolve_run_file(run_dir, extra["dominant"]), "dominant material", ROLE_DOMINANT, None))
    if m.get("residual_file"):
        out.append((resolve_run_file(run_dir, m["residual_file"]), "residual RMSE", ROLE_RESIDUAL, None))
    for s in extra.get("std") or []:
        out.append((resolve_run_file(run_dir, s["file"]), f"{s['name']} uncertainty (std)", ROLE_UNCERTAINTY,
                    s["name"]))
    for s in extra.get("scaling") or []:
        out.append((resolve_run_file(run_dir, s["file"]), f"{s['name']} scaling (ψ)", ROLE_SCALING, s["name"]))
    return out
