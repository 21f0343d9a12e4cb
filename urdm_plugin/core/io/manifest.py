"""The run.json manifest: what a run read, used and wrote (schema_version 1)."""

from __future__ import annotations

import datetime as _dt
from typing import Optional

import numpy as np

from .image import ImageInfo
from .writer import OutputWriter

#: Manifest schema version written to ``run.json``.
MANIFEST_SCHEMA_VERSION = 1


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
    created: Optional[str] = None,
    writer: Optional[OutputWriter] = None,
) -> dict:
    """The ``run.json`` dict (schema_version 1, see docs/ARCHITECTURE.md).

    ``inputs.bands_used`` are 1-based GDAL band numbers; ``inputs.scale``/``offset``
    the per-used-band scale and offset applied on reading; ``inputs.wavelengths_nm``
    the used bands' wavelengths (nm) or None; ``inputs.unit`` the unit the image stored
    its wavelengths in. ``matched`` is a :class:`~urdm_plugin.core.bands.MatchedBands`
    (None = all bands). ``endmembers``/``residual_file`` default to the ``writer``'s.
    ``created`` defaults to now (UTC, ISO 8601).
    """
    idx = np.arange(info.band_count) if matched is None else np.asarray(matched.band_indices)
    wl = None
    if matched is not None and matched.wavelengths_nm is not None:
        wl = [round(float(v), 4) for v in matched.wavelengths_nm]
    elif matched is None and info.wavelengths_nm is not None:
        wl = [round(float(v), 4) for v in info.wavelengths_nm]
    if endmembers is None:
        endmembers = writer.endmember_entries() if writer is not None else []
    if residual_file is None and writer is not None:
        residual_file = writer.residual_file()
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "method": method,
        "inputs": {
            "image": str(info.path),
            "library": str(library_path),
            "bands_used": [int(i) + 1 for i in idx],
            "scale": [float(info.scales[i]) for i in idx],
            "offset": [float(info.offsets[i]) for i in idx],
            "wavelengths_nm": wl,
            "unit": info.wavelength_unit.replace(" (inferred)", "") if info.wavelength_unit else None,
        },
        "endmembers": [dict(e) for e in endmembers],
        "residual_file": residual_file,
        "extra_files": dict(extra_files or {}),
        "parameters": dict(parameters or {}),
        "version": version,
        "seconds": float(seconds),
        "created": created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }

