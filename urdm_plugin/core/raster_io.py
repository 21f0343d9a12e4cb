"""Block-wise GDAL reading of hyperspectral images and georeferenced output writing.

Reading (:func:`open_image`, :func:`iter_row_blocks`, :func:`read_window`) works for any
format GDAL reads (GeoTIFF, ENVI, VRT, ...). Values come back as float32 with each
band's scale/offset applied; a pixel is invalid when any band read is nodata or not
finite. Wavelengths are converted to nm, looked up in this order:

1. the ENVI metadata domain (``wavelength`` + ``wavelength_units``, also ``fwhm``, ``bbl``);
2. per-band metadata ``wavelength`` (+ ``wavelength_units`` on the band or the dataset);
3. per-band ``IMAGERY`` domain ``CENTRAL_WAVELENGTH_UM`` (+ ``FWHM_UM``);
4. band descriptions such as ``"401.00 nm"`` or ``"Band 5 (0.4500 µm)"``;

and are None when none of these covers every band. Unit-less numbers are µm when all
are < 30, else nm.

Writing (:class:`OutputWriter`) puts float32 GeoTIFFs into a temporary sibling folder
and renames it into place at :meth:`OutputWriter.commit`, so a failed or cancelled run
leaves nothing behind. Never calls ``gdal.UseExceptions()``: return values are checked.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
from osgeo import gdal

from .errors import InputImageError, OutputError, WavelengthError
from .spectra import (
    infer_unit_factor,
    is_index_unit,
    parse_number_list,
    parse_unit,
    unit_label,
    wavelength_from_text,
)

#: nodata value of every float output raster.
NODATA = -9999.0

#: Key and file stem reserved for the residual RMSE raster.
RESIDUAL_KEY = "residual_rmse"

#: Manifest schema version written to ``run.json``.
MANIFEST_SCHEMA_VERSION = 1

_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


class _QuietGdal:
    """Silence GDAL's error printing inside a block; the message is kept for ours."""

    def __enter__(self):
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        gdal.ErrorReset()
        return self

    def __exit__(self, *exc):
        self.last = gdal.GetLastErrorMsg()
        gdal.PopErrorHandler()
        return False


# ---------------------------------------------------------------------------------------
# Image metadata
# ---------------------------------------------------------------------------------------


@dataclass
class ImageInfo:
    """What the pipeline needs to know about an input image (no pixels).

    ``geotransform`` GDAL 6-tuple; ``crs_wkt`` "" when none; ``wavelengths_nm`` and
    ``fwhm_nm`` (B,) float64 in nm or None; ``scales``/``offsets`` (B,) applied on read;
    ``nodata`` per band (None where unset, raw units); ``usable`` (B,) bool from the
    ENVI ``bbl`` (all True without one); ``band_names`` (B,); ``dtype_name`` GDAL type
    of band 1. ``wavelength_source`` says where wavelengths came from and
    ``wavelength_unit`` the unit they were stored in ("nm", "µm", ...; "" if none).
    """

    path: str
    width: int
    height: int
    band_count: int
    geotransform: tuple
    crs_wkt: str
    wavelengths_nm: Optional[np.ndarray]
    fwhm_nm: Optional[np.ndarray]
    scales: np.ndarray
    offsets: np.ndarray
    nodata: list
    usable: np.ndarray
    band_names: list
    dtype_name: str
    wavelength_source: str = ""
    wavelength_unit: str = ""
    driver: str = ""


def _open_dataset(path: str):
    with _QuietGdal() as q:
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    if ds is None:
        if not os.path.exists(str(path)) and "://" not in str(path) and not str(path).startswith("/vsi"):
            raise InputImageError(f"Image '{path}' does not exist", "Check the path")
        raise InputImageError(
            f"GDAL cannot open '{path}' as a raster ({q.last or 'unknown format'})",
            "Give a raster GDAL reads (GeoTIFF, ENVI .img/.hdr, VRT, ...); for ENVI keep the .hdr beside the data",
        )
    return ds


def _norm_md(md: Optional[dict]) -> dict:
    """Metadata keys lower-cased with spaces as underscores ("wavelength units" ->
    "wavelength_units")."""
    return {re.sub(r"[\s]+", "_", str(k).strip().lower()): v for k, v in (md or {}).items()}


def _convert(values: np.ndarray, unit: Optional[str], path: str, what: str) -> tuple:
    """-> (nm values, unit label). Raises WavelengthError on unknown units/bad values."""
    try:
        factor = parse_unit(unit)
    except WavelengthError as exc:
        raise WavelengthError(f"{exc.problem} in the {what} of '{path}'", exc.fix) from None
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise WavelengthError(f"The {what} of '{path}' contain a value that is not a positive number",
                              "Fix the wavelength metadata")
    if factor is None:
        factor = infer_unit_factor(values)
        return values * factor, unit_label(factor) + " (inferred)"
    return values * factor, unit_label(factor)


def _read_wavelengths(ds, path: str) -> tuple:
    """-> (wavelengths_nm | None, fwhm_nm | None, bbl | None, source, unit label)."""
    B = ds.RasterCount
    envi = _norm_md(ds.GetMetadata("ENVI"))
    default = _norm_md(ds.GetMetadata())
    fwhm = None
    bbl = None
    if "bbl" in envi:
        vals = parse_number_list(envi["bbl"], f"ENVI bad-band list (bbl) of '{path}'")
        if vals.size != B:
            raise InputImageError(f"The ENVI bad-band list (bbl) of '{path}' has {vals.size} entries for {B} bands",
                                  "Fix 'bbl' in the .hdr (one 0/1 per band) or remove it")
        bbl = vals != 0
    # 1. ENVI domain
    if "wavelength" in envi:
        unit = envi.get("wavelength_units", default.get("wavelength_units"))
        if not is_index_unit(unit):
            raw = parse_number_list(envi["wavelength"], f"ENVI wavelength list of '{path}'")
            if raw.size == B:
                wl, label = _convert(raw, unit, path, "ENVI wavelengths")
                if "fwhm" in envi:
                    f = parse_number_list(envi["fwhm"], f"ENVI fwhm list of '{path}'")
                    if f.size == B and np.all(np.isfinite(f)) and np.all(f > 0):
                        fwhm = f * (wl[0] / raw[0])
                return wl, fwhm, bbl, "ENVI metadata", label
    bands = [ds.GetRasterBand(i + 1) for i in range(B)]
    # 2. per-band metadata
    per = [_norm_md(b.GetMetadata()) for b in bands]
    if all("wavelength" in m for m in per):
        try:
            raw = np.array([float(m["wavelength"]) for m in per])
        except ValueError:
            raw = None
        if raw is not None:
            units = {m.get("wavelength_units", default.get("wavelength_units")) for m in per}
            if len(units) > 1:
                raise WavelengthError(f"The bands of '{path}' give different wavelength units ({sorted(map(str, units))})",
                                      "Give every band the same wavelength_units")
            unit = units.pop()
            if not is_index_unit(unit):
                wl, label = _convert(raw, unit, path, "band wavelengths")
                if all("fwhm" in m for m in per):
                    try:
                        f = np.array([float(m["fwhm"]) for m in per])
                        if np.all(np.isfinite(f)) and np.all(f > 0):
                            fwhm = f * (wl[0] / raw[0])
                    except ValueError:
                        pass
                return wl, fwhm, bbl, "band metadata", label
    # 3. IMAGERY domain (always µm)
    imag = [_norm_md(b.GetMetadata("IMAGERY")) for b in bands]
    if all("central_wavelength_um" in m for m in imag):
        try:
            raw = np.array([float(m["central_wavelength_um"]) for m in imag])
            wl, label = _convert(raw, "um", path, "IMAGERY wavelengths")
            if all("fwhm_um" in m for m in imag):
                f = np.array([float(m["fwhm_um"]) for m in imag]) * 1000.0
                if np.all(np.isfinite(f)) and np.all(f > 0):
                    fwhm = f
            return wl, fwhm, bbl, "IMAGERY metadata", label
        except ValueError:
            pass
    # 4. band descriptions
    parsed = [wavelength_from_text(b.GetDescription()) for b in bands]
    if B and all(v is not None for v, _ in parsed):
        raw = np.array([v for v, _ in parsed])
        factors = {f for _, f in parsed}
        if len(factors) == 1:
            factor = factors.pop()
            if factor is None:
                factor = infer_unit_factor(raw)
                label = unit_label(factor) + " (inferred)"
            else:
                label = unit_label(factor)
            return raw * factor, None, bbl, "band descriptions", label
        if None not in factors:  # mixed explicit units: each converted by its own
            return np.array([v * f for v, f in parsed]), None, bbl, "band descriptions", "mixed"
    return None, None, bbl, "", ""


def open_image(path: Union[str, os.PathLike]) -> ImageInfo:
    """Read an image's size, georeferencing, wavelengths, scales and nodata.

    Raises :class:`InputImageError` (missing/unreadable file, no bands) or
    :class:`WavelengthError` (unknown unit in the metadata).
    """
    p = str(path)
    ds = _open_dataset(p)
    try:
        B = ds.RasterCount
        if B < 1:
            raise InputImageError(f"'{p}' has no raster bands", "Give a multiband raster image")
        gt = tuple(float(v) for v in ds.GetGeoTransform(can_return_null=False) or (0, 1, 0, 0, 0, 1))
        wkt = ds.GetProjection() or ""
        wl, fwhm, bbl, source, unit = _read_wavelengths(ds, p)
        scales, offsets, nodata, names = [], [], [], []
        for i in range(B):
            b = ds.GetRasterBand(i + 1)
            s, o = b.GetScale(), b.GetOffset()
            scales.append(1.0 if s is None or s == 0 or not math.isfinite(s) else float(s))
            offsets.append(0.0 if o is None or not math.isfinite(o) else float(o))
            nodata.append(b.GetNoDataValue())
            names.append(b.GetDescription() or f"Band {i + 1}")
        drv = ds.GetDriver()
        return ImageInfo(
            path=p, width=ds.RasterXSize, height=ds.RasterYSize, band_count=B, geotransform=gt,
            crs_wkt=wkt, wavelengths_nm=wl, fwhm_nm=fwhm, scales=np.array(scales), offsets=np.array(offsets),
            nodata=nodata, usable=np.ones(B, dtype=bool) if bbl is None else bbl, band_names=names,
            dtype_name=gdal.GetDataTypeName(ds.GetRasterBand(1).DataType), wavelength_source=source,
            wavelength_unit=unit, driver=drv.ShortName if drv is not None else "",
        )
    finally:
        ds = None


# ---------------------------------------------------------------------------------------
# Reading pixels
# ---------------------------------------------------------------------------------------


@dataclass
class RowBlock:
    """One block of full-width rows: ``row0`` first row (in the iterated grid),
    ``data`` (nb, rows, W) float32 scaled values (0 where invalid), ``valid``
    (rows, W) bool."""

    row0: int
    data: np.ndarray
    valid: np.ndarray

    @property
    def rows(self) -> int:
        return self.valid.shape[0]


def _bands_list(info: ImageInfo, bands: Optional[Sequence[int]]) -> list:
    if bands is None:
        return list(range(info.band_count))
    out = [int(b) for b in np.asarray(bands).ravel()]
    for b in out:
        if not 0 <= b < info.band_count:
            raise InputImageError(f"Band index {b} is outside the image's {info.band_count} bands",
                                  f"Use 0-based band indices from 0 to {info.band_count - 1}")
    if not out:
        raise InputImageError("No band selected to read", "Select at least one band")
    return out


def _nodata_match(raw: np.ndarray, nodata: Optional[float]) -> Optional[np.ndarray]:
    if nodata is None:
        return None
    if isinstance(nodata, float) and math.isnan(nodata):
        return np.isnan(raw) if raw.dtype.kind == "f" else None
    if raw.dtype.kind in "iu":
        info = np.iinfo(raw.dtype)
        if nodata != int(nodata) or not info.min <= nodata <= info.max:
            return None  # not representable: no pixel can hold it
        return raw == raw.dtype.type(int(nodata))
    return raw == raw.dtype.type(nodata)


#: Bands read per GDAL call: one dataset-level read serves interleaved (BIP/BIL) files
#: well while bounding the raw buffer.
_BAND_GROUP = 16


def _read(ds, info: ImageInfo, bands: list, col0: int, row0: int, w: int, h: int) -> tuple:
    data = np.empty((len(bands), h, w), dtype=np.float32)
    valid = np.ones((h, w), dtype=bool)
    for g0 in range(0, len(bands), _BAND_GROUP):
        group = bands[g0:g0 + _BAND_GROUP]
        raw = ds.ReadAsArray(col0, row0, w, h, band_list=[b + 1 for b in group])
        if raw is None:
            raise InputImageError(
                f"Reading bands {group[0] + 1}–{group[-1] + 1}, rows {row0}–{row0 + h - 1} of '{info.path}' "
                f"failed ({gdal.GetLastErrorMsg()})",
                "Check that the file is complete and readable",
            )
        raw = raw.reshape(len(group), h, w)
        for j, b in enumerate(group):
            nd = _nodata_match(raw[j], info.nodata[b])
            if nd is not None:
                valid &= ~nd
            out = data[g0 + j]
            np.multiply(raw[j], info.scales[b], out=out, casting="unsafe")
            if info.offsets[b]:
                out += np.float32(info.offsets[b])
            valid &= np.isfinite(out)
        del raw
    data[:, ~valid] = 0.0  # keep NaN/inf and nodata out of the solvers
    return data, valid


def _check_window(info: ImageInfo, col0: int, row0: int, w: int, h: int) -> None:
    if w <= 0 or h <= 0 or col0 < 0 or row0 < 0 or col0 + w > info.width or row0 + h > info.height:
        raise InputImageError(
            f"Window (col {col0}, row {row0}, {w}x{h}) is not inside the {info.width}x{info.height} image",
            "Choose an extent that overlaps the image",
        )


def read_window(info: ImageInfo, bands: Optional[Sequence[int]], col0: int, row0: int, width: int,
                height: int) -> tuple:
    """Read a window: ``(data (nb, h, w) float32 scaled, valid (h, w) bool)``.

    ``bands`` are 0-based (None = all). Invalid pixels (any band nodata or not finite)
    hold 0 in ``data``.
    """
    bl = _bands_list(info, bands)
    _check_window(info, col0, row0, width, height)
    ds = _open_dataset(info.path)
    try:
        return _read(ds, info, bl, col0, row0, width, height)
    finally:
        ds = None


def rows_per_block(info: ImageInfo, n_bands: int, memory_mb: float = 512, width: Optional[int] = None) -> int:
    """Rows per block so one block (raw + float32 data + masks) fits ``memory_mb`` MB."""
    W = info.width if width is None else width
    item = max(1, gdal.GetDataTypeSize(gdal.GetDataTypeByName(info.dtype_name)) // 8) if info.dtype_name else 8
    # float32 cube + one raw band group + temporaries + masks
    per_row = W * (n_bands * 4 + min(n_bands, _BAND_GROUP) * item + 8 + 3)
    return max(1, int(memory_mb * 2**20 // per_row))


def iter_row_blocks(info: ImageInfo, bands: Optional[Sequence[int]] = None, memory_mb: float = 512,
                    window: Optional[Sequence[int]] = None, require_valid: bool = True) -> Iterator[RowBlock]:
    """Iterate over blocks of full-width rows whose data fits ``memory_mb`` MB.

    ``bands`` 0-based (None = all). With ``window=(col0, row0, w, h)`` only that part is
    read and ``RowBlock.row0`` counts from the window's first row. When
    ``require_valid`` (default) and no block held a valid pixel, raises
    :class:`InputImageError` after the last block (so nothing can be committed).
    """
    bl = _bands_list(info, bands)
    c0, r0, W, H = (0, 0, info.width, info.height) if window is None else (int(v) for v in window)
    _check_window(info, c0, r0, W, H)
    step = rows_per_block(info, len(bl), memory_mb, W)
    ds = _open_dataset(info.path)
    # whole tile/strip rows per block, so each file block is decoded once
    bh = ds.GetRasterBand(bl[0] + 1).GetBlockSize()[1]
    if 1 < bh <= step:
        step -= step % bh
    seen = False
    try:
        for r in range(0, H, step):
            h = min(step, H - r)
            data, valid = _read(ds, info, bl, c0, r0 + r, W, h)
            # drop this dataset's cached raw blocks: they are not read again, and a
            # scene larger than RAM must not pile up in GDAL's block cache
            ds.FlushCache()
            seen = seen or bool(valid.any())
            yield RowBlock(r, data, valid)
    finally:
        ds = None
    if require_valid and not seen:
        raise_no_valid_pixels(info)


def raise_no_valid_pixels(info: ImageInfo) -> None:
    """Raise the "all pixels are nodata" :class:`InputImageError` for ``info``."""
    nd = sorted({str(v) for v in info.nodata if v is not None})
    raise InputImageError(
        f"Every pixel of '{info.path}' (in the area read) is nodata or not finite"
        + (f" (nodata = {', '.join(nd)})" if nd else ""),
        "Check the image's nodata value, choose an extent with data, or use fewer bands",
    )


def sample_pixels(info: ImageInfo, bands: Optional[Sequence[int]] = None, n: int = 10000, seed: int = 0,
                  memory_mb: float = 256) -> np.ndarray:
    """Up to ``n`` valid pixels drawn at random: (nb, n') float32.

    For quick checks (:func:`~urdm_plugin.core.spectra.check_reflectance_scale`, noise
    estimates). Reads the image once block-wise; raises :class:`InputImageError` when no
    pixel is valid.
    """
    rng = np.random.default_rng(seed)
    total = info.width * info.height
    p = min(1.0, 4.0 * n / max(total, 1))
    chunks = []
    for blk in iter_row_blocks(info, bands, memory_mb):
        sel = blk.valid & (rng.random(blk.valid.shape) < p)
        if sel.any():
            chunks.append(blk.data[:, sel])
    Y = np.concatenate(chunks, axis=1) if chunks else np.empty((len(_bands_list(info, bands)), 0), np.float32)
    if Y.shape[1] == 0:  # valid pixels exist (iteration did not raise) but none drawn
        for blk in iter_row_blocks(info, bands, memory_mb):
            if blk.valid.any():
                Y = blk.data[:, blk.valid]
                break
    if Y.shape[1] > n:
        Y = Y[:, rng.choice(Y.shape[1], n, replace=False)]
    return Y


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def safe_filename(name: str, max_len: int = 100) -> str:
    """A file-system-safe stem for ``name``: letters, digits, ``_ - .`` only; never empty,
    never a path, never hidden, never a Windows device name (CON, NUL, ...)."""
    t = unicodedata.normalize("NFKC", str(name))
    t = re.sub(r"[^\w.-]+", "_", t, flags=re.UNICODE)
    t = re.sub(r"_+", "_", t).strip("._- ")
    t = t[:max_len].rstrip("._- ")
    if not t:
        t = "endmember"
    head, dot, tail = t.partition(".")
    if head.lower() in _WINDOWS_RESERVED:  # Windows reserves "nul" and "nul.txt" alike
        t = head + "_" + dot + tail
    return t


def shifted_geotransform(gt: Sequence[float], col0: int, row0: int) -> tuple:
    """Geotransform of a sub-grid whose pixel (0, 0) is pixel (col0, row0) of ``gt``
    (works for rotated geotransforms)."""
    g = [float(v) for v in gt]
    return (g[0] + col0 * g[1] + row0 * g[2], g[1], g[2], g[3] + col0 * g[4] + row0 * g[5], g[4], g[5])


def _is_nonempty_dir(p: Path) -> bool:
    try:
        return p.is_dir() and any(p.iterdir())
    except OSError:
        return True


class OutputWriter:
    """Writes one run's rasters and files, all or nothing.

    Usage::

        with OutputWriter(out_dir, info, overwrite=False, window=None) as w:
            w.add_raster("Tree", "Tree", "abundance")
            w.add_raster(RESIDUAL_KEY, RESIDUAL_KEY, "residual RMSE")
            for blk in ...: w.write("Tree", A_rows, blk.row0, 0)
            w.write_library_csv(matched.as_library())
            w.commit(build_manifest(...))

    Files go into a temporary sibling folder ``.<name>.tmp-*`` on the same file system;
    :meth:`commit` computes statistics, closes the rasters, writes ``run.json`` and renames
    the folder into place (replacing an old one only then, with ``overwrite=True``).
    Leaving the ``with`` block by an exception, or :meth:`abort`, removes the temporary
    folder and leaves any existing output untouched.

    ``window=(col0, row0, w, h)`` (image pixels) writes a sub-extent: the output grid is
    w x h with the shifted geotransform, and ``write`` takes output-grid coordinates.
    Raises :class:`OutputError` when the folder is refused or cannot be written.
    """

    def __init__(self, out_dir: Union[str, os.PathLike], info: ImageInfo, overwrite: bool = False,
                 window: Optional[Sequence[int]] = None):
        self.out_dir = Path(out_dir).absolute()
        self.info = info
        self.overwrite = bool(overwrite)
        if window is None:
            self.col0, self.row0, self.width, self.height = 0, 0, info.width, info.height
        else:
            c0, r0, w, h = (int(v) for v in window)
            try:
                _check_window(info, c0, r0, w, h)
            except InputImageError as exc:
                raise OutputError(exc.problem, exc.fix) from None
            self.col0, self.row0, self.width, self.height = c0, r0, w, h
        self.geotransform = shifted_geotransform(info.geotransform, self.col0, self.row0)
        self._check_target()
        parent = self.out_dir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.tmp_dir = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.tmp-", dir=parent))
        except OSError as exc:
            raise OutputError(f"Cannot create the output folder in '{parent}' ({exc.strerror or exc})",
                              "Choose a folder you can write to") from None
        self._datasets: dict = {}
        self._files: dict = {}  # key -> (name, filename)
        self._used = {RESIDUAL_KEY.lower()}
        self._text_files: list = []
        self._done = False

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None or not self._done:
            self.abort()
        return False

    def _check_target(self) -> None:
        p = self.out_dir
        if p.exists() and not p.is_dir():
            raise OutputError(f"The output path '{p}' is a file, not a folder", "Choose a folder name")
        if _is_nonempty_dir(p) and not self.overwrite:
            raise OutputError(f"The output folder '{p}' already exists and is not empty",
                              "Choose a new or empty folder, or allow overwriting (overwrite=True)")

    # -- rasters ---------------------------------------------------------------------------
    def _unique_stem(self, name: str) -> str:
        stem = safe_filename(name)
        cand, k = stem, 2
        while cand.lower() in self._used or cand.lower() in {"run", "endmembers_used"}:
            cand = f"{stem}_{k}"
            k += 1
        self._used.add(cand.lower())
        return cand

    def add_raster(self, key: str, name: str, description: str = "") -> str:
        """Create a float32 GeoTIFF for ``key`` (filled with :data:`NODATA`) and return its path.

        The file is named after ``name`` (made safe and unique); the band description is
        ``name``; ``description`` is stored as the band's metadata ``DESCRIPTION``. The key
        :data:`RESIDUAL_KEY` gets ``residual_rmse.tif``; no other key can take that name.
        """
        self._require_open()
        if key in self._files:
            raise ValueError(f"raster key {key!r} added twice")
        stem = RESIDUAL_KEY if key == RESIDUAL_KEY else self._unique_stem(name)
        fname = stem + ".tif"
        path = self.tmp_dir / fname
        drv = gdal.GetDriverByName("GTiff")
        opts = ["TILED=YES", "COMPRESS=DEFLATE", "PREDICTOR=3", "BIGTIFF=IF_SAFER"]
        with _QuietGdal() as q:
            ds = drv.Create(str(path), self.width, self.height, 1, gdal.GDT_Float32, options=opts)
        if ds is None:
            raise OutputError(f"Cannot create '{path}' ({q.last})", "Check free disk space and folder permissions")
        ds.SetGeoTransform(self.geotransform)
        if self.info.crs_wkt:
            ds.SetProjection(self.info.crs_wkt)
        band = ds.GetRasterBand(1)
        # blocks never written are filled with the nodata value when the file is closed
        band.SetNoDataValue(NODATA)
        band.SetDescription(str(name))
        if description:
            band.SetMetadataItem("DESCRIPTION", str(description))
        self._datasets[key] = ds
        self._files[key] = (str(name), fname)
        return str(path)

    def write(self, key: str, array2d: np.ndarray, row0: int, col0: int = 0,
              valid: Optional[np.ndarray] = None) -> None:
        """Write ``array2d`` (h, w) at output-grid pixel (col0, row0).

        Non-finite values, and pixels where ``valid`` (h, w) is False, become
        :data:`NODATA`.
        """
        self._require_open()
        ds = self._datasets[key]
        a = np.array(array2d, dtype=np.float32, copy=True)
        if a.ndim != 2:
            raise ValueError(f"write() needs a 2-D array, got shape {a.shape}")
        h, w = a.shape
        if row0 < 0 or col0 < 0 or row0 + h > self.height or col0 + w > self.width:
            raise ValueError(f"block {w}x{h} at ({col0},{row0}) outside the {self.width}x{self.height} output")
        bad = ~np.isfinite(a)
        if valid is not None:
            bad |= ~np.asarray(valid, dtype=bool)
        a[bad] = NODATA
        err = ds.GetRasterBand(1).WriteArray(a, int(col0), int(row0))
        if err != 0:
            raise OutputError(f"Writing to '{self._files[key][1]}' failed ({gdal.GetLastErrorMsg()})",
                              "Check free disk space")

    def write_text(self, filename: str, text: str) -> str:
        """Write a text file (UTF-8) into the output folder; ``filename`` must be a plain
        file name (no folders). Returns its temporary path."""
        self._require_open()
        if filename != os.path.basename(filename) or filename in ("", ".", "..") or "\\" in filename:
            raise ValueError(f"write_text needs a plain file name, got {filename!r}")
        path = self.tmp_dir / filename
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"Cannot write '{path}' ({exc.strerror or exc})", "Check free disk space") from None
        self._text_files.append(filename)
        return str(path)

    def write_library_csv(self, lib, filename: str = "endmembers_used.csv") -> str:
        """Write the endmembers actually used (e.g. ``MatchedBands.as_library()``) as CSV."""
        from .library_io import write_library_csv

        self._require_open()
        if filename != os.path.basename(filename):
            raise ValueError(f"plain file name needed, got {filename!r}")
        path = write_library_csv(self.tmp_dir / filename, lib)
        self._text_files.append(filename)
        return path

    # -- bookkeeping -----------------------------------------------------------------------
    def filename(self, key: str) -> str:
        """File name (no folder) of raster ``key``."""
        return self._files[key][1]

    def endmember_entries(self) -> list:
        """``[{"name", "file"}]`` for every raster except the residual, in creation order."""
        return [{"name": n, "file": f} for k, (n, f) in self._files.items() if k != RESIDUAL_KEY]

    def residual_file(self) -> Optional[str]:
        return self._files[RESIDUAL_KEY][1] if RESIDUAL_KEY in self._files else None

    def _require_open(self) -> None:
        if self._done:
            raise RuntimeError("OutputWriter already committed or aborted")

    def _close_all(self, stats: bool) -> None:
        for key, ds in list(self._datasets.items()):
            if stats:
                band = ds.GetRasterBand(1)
                with _QuietGdal():
                    # all-nodata rasters have no statistics; GDAL reports an error we ignore
                    band.ComputeStatistics(False)
            ds.FlushCache()
            self._datasets[key] = None
        self._datasets.clear()

    def abort(self) -> None:
        """Drop everything written so far (idempotent)."""
        if self._done:
            return
        self._done = True
        try:
            self._close_all(stats=False)
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def commit(self, manifest: dict) -> str:
        """Finish: statistics, ``run.json`` (``manifest`` as JSON), rename into place.

        Returns the final folder path. Raises :class:`OutputError` when the target
        appeared meanwhile (without overwrite) or the rename fails; the temporary
        folder is removed then and existing outputs are untouched.
        """
        self._require_open()
        try:
            self._close_all(stats=True)
            text = json.dumps(manifest, indent=2, ensure_ascii=False, default=_json_default)
            (self.tmp_dir / "run.json").write_text(text + "\n", encoding="utf-8")
            self._check_target()
            self._move_into_place()
        except OSError as exc:
            self.abort()
            raise OutputError(f"Cannot finish the output folder '{self.out_dir}' ({exc.strerror or exc})",
                              "Check permissions and free disk space") from None
        except BaseException:
            self.abort()
            raise
        self._done = True
        return str(self.out_dir)

    def _move_into_place(self) -> None:
        target = self.out_dir
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if not target.exists():
            os.rename(self.tmp_dir, target)
            return
        # overwrite=True and a non-empty folder: swap, then delete the old one
        backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, backup)
        try:
            os.rename(self.tmp_dir, target)
        except OSError:
            os.rename(backup, target)
            raise
        shutil.rmtree(backup, ignore_errors=True)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


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
    its wavelengths in. ``matched`` is a :class:`~urdm_plugin.core.spectra.MatchedBands`
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


__all__ = [
    "NODATA",
    "RESIDUAL_KEY",
    "ImageInfo",
    "RowBlock",
    "OutputWriter",
    "open_image",
    "read_window",
    "iter_row_blocks",
    "rows_per_block",
    "sample_pixels",
    "raise_no_valid_pixels",
    "safe_filename",
    "shifted_geotransform",
    "build_manifest",
]
