"""The run.json manifest: what a run read, used and wrote (schema_version 1).

:class:`RunManifest` is the one reader and writer of ``run.json`` — the pipeline builds
it, the QGIS side reads and extends it (the dominant-material map), the tests write it
for their fixture runs. Unknown keys are kept, so a newer run.json survives a rewrite.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import OutputError
from .image import ImageInfo

#: Manifest schema version written to ``run.json``.
MANIFEST_SCHEMA_VERSION = 1


def jsonable(v: Any) -> Any:
    """``v`` as plain JSON values: numpy scalars and arrays to numbers and lists, non-finite
    floats to None, paths to strings, anything else unknown to its ``str``."""
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.ndarray):
        return [jsonable(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


@dataclass
class RunManifest:
    """The content of ``run.json``.

    ``inputs``: ``image``, ``library`` (absolute paths), ``bands_used`` (1-based GDAL
    bands), ``scale``/``offset`` (per used band, applied on reading), ``wavelengths_nm``
    (used bands, or None), ``unit``, ``window`` (col0, row0, w, h: GDAL's order, as the user gave it) or None, ``mask``.
    ``endmembers``: ``[{"name", "file"}]`` (files relative to the run folder);
    ``residual_file``; ``extra_files`` (e.g. ``endmembers_used``, ``std``, ``dominant``);
    ``parameters``: the method's parameters, the weight chosen and the run's options;
    ``selection``/``match``: how endmembers and bands were chosen; ``fit``: how well the
    endmembers explain a pixel sample (``relative_residual``, ``residual_rmse``, ``pixels``,
    ``poor``; see core.engine.fit_check); ``seconds``: wall time; ``seconds_by_stage``: its
    split (plan, read, solve, write, and a method's own parts of its solve).
    """

    method: str
    inputs: dict = field(default_factory=dict)
    endmembers: list = field(default_factory=list)
    residual_file: Optional[str] = None
    extra_files: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    version: str = ""
    seconds: float = 0.0
    created: str = ""
    warnings: list = field(default_factory=list)
    selection: Optional[dict] = None
    match: Optional[dict] = None
    valid_pixels: Optional[int] = None
    fit: Optional[dict] = None
    #: wall seconds of the run's stages: plan (pixel sample included), read, solve, write,
    #: and a method's own split of its solve (e.g. URDM's weight, network, data step)
    seconds_by_stage: dict = field(default_factory=dict)
    schema_version: int = MANIFEST_SCHEMA_VERSION
    #: keys this version does not know, kept as they were
    other: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"schema_version": self.schema_version}
        d.update({k: v for k, v in asdict(self).items() if k not in ("schema_version", "other")})
        d.update(self.other)
        return jsonable(d)

    @classmethod
    def from_dict(cls, d: Any, source: str = "run.json") -> RunManifest:
        """Check and wrap a parsed run.json; OutputError names what is wrong."""
        fix = "Choose a run.json written by URDM unmixing, or run the unmixing again"
        if not isinstance(d, dict):
            raise OutputError(f"'{source}' is not a run manifest (no JSON object)", fix)
        ems = d.get("endmembers")
        if not isinstance(ems, list) or not ems:
            raise OutputError(f"'{source}' lists no endmember rasters", fix)
        if not all(isinstance(e, dict) and e.get("file") for e in ems):
            raise OutputError(f"An endmember entry in '{source}' has no file", fix)
        for name in _listed_files(d):
            problem = run_file_problem(name)
            if problem:
                raise OutputError(f"'{source}' names the file '{_shown(name)}', which {problem}; a run folder "
                                  "only ever refers to files inside itself", fix)
        image = (d.get("inputs") or {}).get("image") if isinstance(d.get("inputs"), dict) else None
        if image and image_reference_problem(str(image)):
            raise OutputError(f"'{source}' names the input image '{_shown(image)}', which "
                              f"{image_reference_problem(str(image))}; it is not opened", fix)
        known = {f.name for f in fields(cls)} - {"other"}
        kw = {k: d[k] for k in known if k in d}
        kw.setdefault("method", "")
        for k in ("inputs", "extra_files", "parameters"):
            if not isinstance(kw.get(k, {}), dict):
                raise OutputError(f"'{source}' has a malformed '{k}' entry", fix)
            kw[k] = kw.get(k) or {}
        return cls(**kw, other={k: v for k, v in d.items() if k not in known})

    @classmethod
    def read(cls, path: Union[str, os.PathLike]) -> RunManifest:
        """Read ``run.json`` (the file or its folder); OutputError when unreadable."""
        p = Path(path)
        if p.is_dir():
            p = p / "run.json"
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OutputError(f"Cannot read the run manifest {p} ({exc})",
                              "Choose a folder written by URDM unmixing (it holds run.json)") from None
        return cls.from_dict(d, str(p))

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def write(self, path: Union[str, os.PathLike]) -> None:
        """Write atomically (a reader never sees a half-written file)."""
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".run.json.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.dumps())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def build_manifest(
    method: str,
    info: ImageInfo,
    library_path: str,
    matched=None,
    endmembers: Optional[list] = None,
    residual_file: Optional[str] = None,
    extra_files: Optional[dict] = None,
    parameters: Optional[dict] = None,
    version: str = "",
    seconds: float = 0.0,
    writer=None,  # a core.io.writer.OutputWriter (not imported: the writer imports this module)
    given: Optional[dict] = None,
    **recorded,
) -> RunManifest:
    """The :class:`RunManifest` of a run on ``info`` (schema_version 1, see docs/ARCHITECTURE.md).

    ``inputs.bands_used`` are 1-based GDAL band numbers; ``inputs.scale``/``offset``
    the per-used-band scale and offset applied on reading; ``inputs.wavelengths_nm``
    the used bands' wavelengths (nm) or None; ``inputs.unit`` the unit the image stored
    its wavelengths in. ``matched`` is a :class:`~urdm_plugin.core.bands.MatchedBands`
    (None = all bands). ``endmembers``/``residual_file`` default to the ``writer``'s.
    ``given``: the inputs as the user gave them, replacing or extending those derived from
    ``info`` (``image``, ``library``, ``product``, ``quality_mask``, ``window``, ``mask``).
    ``recorded``: the other :class:`RunManifest` fields (``created``, defaulting to now in
    UTC, ISO 8601; ``warnings``, ``selection``, ``match``, ``valid_pixels``, ``fit``,
    ``seconds_by_stage``).
    """
    if endmembers is None:
        endmembers = writer.endmember_entries() if writer is not None else []
    if residual_file is None and writer is not None:
        residual_file = writer.residual_file()
    recorded.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return RunManifest(
        method=method,
        inputs={**_band_inputs(info, library_path, matched), **(given or {})},
        endmembers=[dict(e) for e in endmembers],
        residual_file=residual_file,
        extra_files=dict(extra_files or {}),
        parameters=dict(parameters or {}),
        version=version,
        seconds=float(seconds),
        **recorded,
    )


def _band_inputs(info: ImageInfo, library_path: str, matched) -> dict:
    """run.json's ``inputs`` as the image and the band match give them: image, library,
    bands used (1-based), their scale, offset and wavelengths (nm), the stored unit."""
    idx = np.arange(info.band_count) if matched is None else np.asarray(matched.band_indices)
    wl = None
    if matched is not None and matched.wavelengths_nm is not None:
        wl = [round(float(v), 4) for v in matched.wavelengths_nm]
    elif matched is None and info.wavelengths_nm is not None:
        wl = [round(float(v), 4) for v in info.wavelengths_nm]
    return {
        "image": str(info.path),
        "library": str(library_path),
        "bands_used": [int(i) + 1 for i in idx],
        "scale": [float(info.scales[i]) for i in idx],
        "offset": [float(info.offsets[i]) for i in idx],
        "wavelengths_nm": wl,
        "unit": info.wavelength_unit.replace(" (inferred)", "") if info.wavelength_unit else None,
    }


# ----------------------------------------------------------------------------- trusted paths
def _shown(name) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in str(name))
    return text if len(text) <= 80 else text[:77] + "…"


def _listed_files(d: dict) -> list:
    """Every file name a manifest lists: endmember rasters, residual, extra files."""
    names = [e.get("file") for e in d.get("endmembers") or [] if isinstance(e, dict)]
    names.append(d.get("residual_file"))
    extra = d.get("extra_files") if isinstance(d.get("extra_files"), dict) else {}
    for val in extra.values():
        for item in val if isinstance(val, list) else [val]:
            names.append(item.get("file") if isinstance(item, dict) else item)
    return [n for n in names if n not in (None, "")]


def run_file_problem(name) -> Optional[str]:
    """Why ``name`` cannot be a file of a run folder (None when it can): the writer puts
    every output beside run.json, so anything but a plain file name — a path, ``..``, a
    drive, a GDAL virtual file system (/vsicurl/…) or a URL — came from elsewhere."""
    if not isinstance(name, str):
        return "is not a file name"
    if name in (".", "..") or not name.strip():
        return "is not a file name"
    if "/" in name or "\\" in name or ":" in name or "\0" in name:
        return "is a path, not a file name in the run folder"
    return None


def image_reference_problem(image: str) -> Optional[str]:
    """Why the input-image reference of a run must not be opened (None when it may be):
    GDAL virtual file systems and URLs would make GDAL read from a network or an archive."""
    low = image.strip().lower()
    if low.startswith("/vsi") or "://" in low or low.startswith("\\\\"):
        return "is a network, virtual or remote path"
    return None


def run_file_path(folder: Union[str, os.PathLike], name: str) -> str:
    """The absolute path of the run file ``name`` in ``folder``, checked to lie inside it
    once links are followed; OutputError otherwise."""
    problem = run_file_problem(name)
    base = os.path.realpath(str(folder))
    path = os.path.join(str(folder), name) if problem is None else ""
    if problem is None and os.path.dirname(os.path.realpath(path)) != base:
        problem = "is a link to a file outside the run folder"
    if problem:
        raise OutputError(f"The run file '{_shown(name)}' {problem}; it is not opened",
                          "Use a run folder as URDM unmixing wrote it, or run the unmixing again")
    return os.path.abspath(path)
