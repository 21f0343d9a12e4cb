"""Per-user cache of derived product files (VRTs, orthorectified GeoTIFFs, masks).

Layout: ``<cache root>/<key>/`` holds one product's derived files and a ``done.json``
written last; a folder without ``done.json`` is incomplete and is rebuilt. The root is
``$URDM_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/urdm_plugin/products`` (Linux,
``~/.cache`` without XDG), ``%LOCALAPPDATA%\\urdm_plugin\\products`` (Windows) or
``~/Library/Caches/urdm_plugin/products`` (macOS). Every file is written under a
temporary name in the same folder and renamed into place (:func:`atomic_path`), so two
runs never see half a file; when two runs build the same product at once, the last
rename wins and both results are identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ...errors import InputImageError

DONE = "done.json"
#: Bump when the derived files' layout or contents change, so old caches are rebuilt.
FORMAT_VERSION = 1


def cache_root() -> Path:
    """The folder holding every product's cache folder (not created here)."""
    env = os.environ.get("URDM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "urdm_plugin" / "products"


def product_key(files: Iterable[str], sensor: str) -> str:
    """Hex key of a product: its sensor and, for each input file, the absolute path,
    modification time (ns) and size — a changed or replaced file gives a new key."""
    h = hashlib.sha256(f"{sensor}|v{FORMAT_VERSION}".encode())
    for f in sorted(os.path.abspath(str(p)) for p in files):
        try:
            st = os.stat(f)
            h.update(f"|{f}|{st.st_mtime_ns}|{st.st_size}".encode())
        except OSError:
            h.update(f"|{f}|missing".encode())
    return h.hexdigest()[:24]


def product_dir(key: str) -> Path:
    """The product's cache folder, created (InputImageError naming it when it cannot be)."""
    d = cache_root() / key
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputImageError(f"Cannot create the product cache folder '{d}' ({exc.strerror or exc})",
                              "Set the environment variable URDM_CACHE_DIR to a writable folder") from None
    return d


def read_done(folder: Path) -> Optional[dict]:
    """The ``done.json`` record of a complete cache folder whose files all exist, or None."""
    try:
        rec = json.loads((folder / DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = [rec.get("path", "")] + ([rec["quality_mask_path"]] if rec.get("quality_mask_path") else [])
    if not all(f and (folder / Path(f).name).exists() for f in files):
        return None
    return rec


#: Days a product's derived files stay in the cache after their last use (environment
#: variable URDM_CACHE_MAX_AGE_DAYS; 0 = keep for ever). A changed or moved product gets a
#: new folder, so without pruning the cache would only grow.
CACHE_MAX_AGE_DAYS = 60
#: Hours after which a folder without done.json (a build that was killed) is removed.
STALE_BUILD_HOURS = 24
_KEY = re.compile(r"^[0-9a-f]{24}$")


def _max_age_days() -> float:
    try:
        return max(0.0, float(os.environ.get("URDM_CACHE_MAX_AGE_DAYS", CACHE_MAX_AGE_DAYS)))
    except ValueError:
        return float(CACHE_MAX_AGE_DAYS)


def prune_cache(keep: Optional[Path] = None) -> list:
    """Remove product folders of the cache unused for :data:`CACHE_MAX_AGE_DAYS` (the age of
    their ``done.json``, touched at each use) and incomplete builds older than
    :data:`STALE_BUILD_HOURS`; only folders named like this cache's keys, never ``keep``.
    Returns the removed folders. Errors (another run using a folder) leave it in place."""
    days = _max_age_days()
    if days <= 0:
        return []
    now = time.time()
    removed = []
    try:
        entries = list(cache_root().iterdir())
    except OSError:
        return removed
    for d in entries:
        if not _KEY.match(d.name) or not d.is_dir() or d.is_symlink() or (keep is not None and d == keep):
            continue
        done = d / DONE
        try:
            age = now - (done.stat().st_mtime if done.exists() else d.stat().st_mtime)
        except OSError:
            continue
        limit = days * 86400 if done.exists() else STALE_BUILD_HOURS * 3600
        if age > limit:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def cached_product(files, sensor: str, source: str) -> tuple:
    """``(folder, product)``: the cache folder of the product made of ``files`` and its
    :class:`~urdm_plugin.core.io.sensors.Product` when already built there (else None).
    A use marks the folder as recent; building a new one first prunes old ones
    (:func:`prune_cache`)."""
    from . import Product

    folder = product_dir(product_key(files, sensor))
    rec = read_done(folder)
    if not rec:
        prune_cache(keep=folder)
        return folder, None
    with contextlib.suppress(OSError):
        os.utime(folder / DONE)  # last use, for pruning
    mask = rec.get("quality_mask_path") or ""
    return folder, Product(rec["sensor"], source, str(folder / rec["path"]), str(folder / mask) if mask else "",
                           rec["description"])


def open_main_group(loc, folder: Path, label: str, fmt: str, fix: str) -> tuple:
    """``(path, dataset, root group)`` of the product's main file through GDAL's
    multidimensional API, unpacked into ``folder`` first when it sits in a .zip; one
    InputImageError naming the file, its ``label`` (e.g. "EMIT") and expected ``fmt``."""
    from osgeo import gdal

    from ..gdal_quiet import QuietGdal

    path = extract_member(loc.zip_path, loc.member, folder) if loc.zip_path else loc.gdal_path(loc.main)
    with QuietGdal() as q:
        ds = gdal.OpenEx(path, gdal.OF_MULTIDIM_RASTER)
        rg = ds.GetRootGroup() if ds is not None else None
    if rg is None:
        raise InputImageError(f"GDAL cannot read the {label} file '{path}' as {fmt} ({q.last or 'unknown error'})", fix)
    return path, ds, rg


def write_done(folder: Path, record: dict) -> None:
    """Write ``done.json`` atomically (last, after every derived file)."""
    with atomic_path(folder / DONE) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1), encoding="utf-8")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[str]:
    """Yield a temporary path beside ``final`` (same suffix); on success rename it to
    ``final`` (replacing an older one), on error remove it."""
    final = Path(final)
    tmp = final.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}")
    try:
        yield str(tmp)
        os.replace(tmp, final)
    except BaseException:
        for p in (tmp, Path(str(tmp) + ".aux.xml")):
            with contextlib.suppress(OSError):
                p.unlink()
        raise
    aux = Path(str(tmp) + ".aux.xml")  # GDAL side-car, should one have been written
    if aux.exists():
        os.replace(aux, Path(str(final) + ".aux.xml"))


def envi_metadata(wavelengths_nm, fwhm_nm=None, bbl=None) -> dict:
    """ENVI-domain metadata the image reader understands: ``wavelength``/``fwhm`` (nm),
    ``wavelength_units = Nanometers`` and ``bbl`` (1 = good band), as ``{a, b, ...}`` lists."""
    def lst(v, fmt):
        return "{" + ", ".join(fmt.format(float(x)) for x in v) + "}"

    md = {"wavelength": lst(wavelengths_nm, "{:.4f}"), "wavelength_units": "Nanometers"}
    if fwhm_nm is not None:
        md["fwhm"] = lst(fwhm_nm, "{:.4f}")
    if bbl is not None:
        md["bbl"] = "{" + ", ".join("1" if b else "0" for b in bbl) + "}"
    return md


def read_bytes(gdal_path: str) -> Optional[bytes]:
    """The bytes of a file on disk or behind a GDAL ``/vsi…/`` path; None if unreadable."""
    from osgeo import gdal

    if not gdal_path.startswith("/vsi"):
        try:
            return Path(gdal_path).read_bytes()
        except OSError:
            return None
    f = gdal.VSIFOpenL(gdal_path, "rb")
    if f is None:
        return None
    try:
        chunks = []
        while True:
            b = gdal.VSIFReadL(1, 1 << 20, f)
            if not b:
                break
            chunks.append(bytes(b))
        return b"".join(chunks)
    finally:
        gdal.VSIFCloseL(f)


def extract_member(zip_path: str, member: str, folder: Path) -> str:
    """Copy ``member`` out of ``zip_path`` into ``folder`` (atomically, once) and return
    its path — for HDF5/netCDF files, which GDAL does not read inside a zip."""
    import zipfile

    out = Path(folder) / Path(member).name
    if out.exists():
        return str(out)
    try:
        with zipfile.ZipFile(zip_path) as z, z.open(member) as src, atomic_path(out) as tmp:
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise InputImageError(f"Cannot unpack '{member}' from '{zip_path}' into the cache ({exc})",
                              "Unzip the product yourself and give the file, or free disk space "
                              "in the cache (URDM_CACHE_DIR)") from None
    return str(out)
