"""Block-wise GDAL reading of hyperspectral images: metadata (wavelengths, scale, nodata) and pixels.

Size note: ~420 lines, metadata (four places wavelengths may live) and block-wise reading of
the same :class:`ImageInfo`; the wavelength lookup is the larger half.

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

"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import numpy as np
from osgeo import gdal

from ..errors import InputImageError, WavelengthError
from ..limits import MAX_MAGNITUDE
from .gdal_quiet import QuietGdal, errors_as_values
from .units import (
    infer_unit_factor,
    is_index_unit,
    parse_number_list,
    parse_unit,
    unit_label,
    wavelength_from_text,
)

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
    #: sensor product behind the image (:mod:`.sensors`): its sensor ("EnMAP L2A", ...,
    #: "" for an ordinary raster), what the user gave (``path`` is then the derived file),
    #: its quality mask raster (1 = use, 0 = flagged; "" when none) and a one-line
    #: description of what was read
    product: str = ""
    source_path: str = ""
    quality_mask_path: str = ""
    product_description: str = ""


@errors_as_values()
def _open_dataset(path: str):
    with QuietGdal() as q:
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
    unreadable = None  # (band, text) of wavelength metadata that is not a number
    if all("wavelength" in m for m in per):
        try:
            raw = np.array([float(m["wavelength"]) for m in per])
        except ValueError:
            raw = None
            unreadable = next((i + 1, m["wavelength"]) for i, m in enumerate(per) if not _is_number(m["wavelength"]))
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
    if unreadable is not None:  # never fall back to matching by band order behind the user's back
        band, text = unreadable
        raise WavelengthError(f"Band {band} of '{path}' has the wavelength '{str(text)[:40]}', which is not a number",
                              "Correct the band's wavelength metadata (a number, e.g. 552.3), or remove it "
                              "from every band to match the library by band order")
    return None, None, bbl, "", ""


def _is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


@errors_as_values()
def open_image(path: Union[str, os.PathLike]) -> ImageInfo:
    """Read an image's size, georeferencing, wavelengths, scales and nodata.

    Raises :class:`InputImageError` (missing/unreadable file, no bands) or
    :class:`WavelengthError` (unknown unit in the metadata). An EnMAP L2A, EMIT L2A or
    PRISMA L2D product (folder, .zip, main file; see :mod:`.sensors`) is opened through
    its derived file: ``path`` is that file, ``source_path`` what was given.
    """
    p = str(path)
    from .sensors import resolve_product

    product = resolve_product(p)
    if product is not None:
        info = open_image(product.path)
        info.product, info.source_path, info.quality_mask_path = product.sensor, p, product.quality_mask_path
        info.product_description = product.description
        return info
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
_BAND_GROUP = 64


@errors_as_values()
def _read(ds, info: ImageInfo, bands: list, col0: int, row0: int, w: int, h: int,
          max_magnitude: Optional[float] = MAX_MAGNITUDE) -> tuple:
    data = np.empty((len(bands), h, w), dtype=np.float32)
    valid = np.ones((h, w), dtype=bool)
    for g0 in range(0, len(bands), _BAND_GROUP):
        group = bands[g0:g0 + _BAND_GROUP]
        with QuietGdal() as q:  # a damaged file's GDAL errors go into our one line, not stderr
            raw = ds.ReadAsArray(col0, row0, w, h, band_list=[b + 1 for b in group])
        if raw is None:
            raise InputImageError(
                f"Reading bands {group[0] + 1}–{group[-1] + 1}, rows {row0}–{row0 + h - 1} of '{info.path}' "
                f"failed ({q.last or 'no reason given'})",
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
            if max_magnitude is not None:  # NaN and ±inf fail the comparison too
                valid &= np.abs(out) <= max_magnitude
            elif raw.dtype.kind == "f" or info.scales[b] > 3e38:  # integers scaled normally stay finite
                valid &= np.isfinite(out)
        del raw
    if not valid.all():
        data[:, ~valid] = 0.0  # keep NaN/inf and nodata out of the solvers
    return data, valid


def check_window(info: ImageInfo, col0: int, row0: int, w: int, h: int) -> None:
    if w <= 0 or h <= 0 or col0 < 0 or row0 < 0 or col0 + w > info.width or row0 + h > info.height:
        raise InputImageError(
            f"Window (col {col0}, row {row0}, {w}x{h}) is not inside the {info.width}x{info.height} image",
            "Choose an extent that overlaps the image",
        )


@errors_as_values()
def read_window(info: ImageInfo, bands: Optional[Sequence[int]], col0: int, row0: int, width: int,
                height: int, max_magnitude: Optional[float] = MAX_MAGNITUDE) -> tuple:
    """Read a window: ``(data (nb, h, w) float32 scaled, valid (h, w) bool)``.

    ``bands`` are 0-based (None = all). Invalid pixels (any band nodata, not finite, or
    beyond ±``max_magnitude`` — :data:`core.limits.MAX_MAGNITUDE`; None: no limit, only
    finiteness) hold 0 in ``data``.
    """
    bl = _bands_list(info, bands)
    check_window(info, col0, row0, width, height)
    ds = _open_dataset(info.path)
    try:
        return _read(ds, info, bl, col0, row0, width, height, max_magnitude)
    finally:
        ds = None


@errors_as_values()
def read_image(path: Union[str, os.PathLike], bands: Optional[Sequence[int]] = None) -> tuple:
    """A whole (small) image at once: ``(data (nb, H, W) float32 scaled, valid (H, W) bool)``
    — :func:`open_image` then :func:`read_window` over every pixel (scale, offset and
    nodata applied the same way)."""
    info = open_image(path)
    return read_window(info, bands, 0, 0, info.width, info.height)


def block_height(info: ImageInfo) -> int:
    """Rows of one storage block (strip or tile row) of the image: reading any row costs
    decoding that many rows."""
    ds = _open_dataset(info.path)
    try:
        return max(1, int(ds.GetRasterBand(1).GetBlockSize()[1]))
    finally:
        ds = None


#: Share of the memory budget one row block (raw + float32 data + masks) may take: the rest
#: is GDAL's block cache (a quarter, core.io.gdal_quiet.BudgetedGdalCache) and the solver's
#: temporaries, so a run's peak stays near 1.3 × the budget above its fixed base.
BLOCK_SHARE = 0.7


def rows_per_block(info: ImageInfo, n_bands: int, memory_mb: float = 512, width: Optional[int] = None) -> int:
    """Rows per block so one block (raw + float32 data + masks) fits :data:`BLOCK_SHARE` of
    ``memory_mb`` MB."""
    W = info.width if width is None else width
    item = max(1, gdal.GetDataTypeSize(gdal.GetDataTypeByName(info.dtype_name)) // 8) if info.dtype_name else 8
    # float32 cube + one raw band group + temporaries + masks
    per_row = W * (n_bands * 4 + min(n_bands, _BAND_GROUP) * item + 8 + 3)
    return max(1, int(BLOCK_SHARE * memory_mb * 2**20 // per_row))


def row_blocks(info: ImageInfo, bands: Optional[Sequence[int]] = None, memory_mb: float = 512,
               window: Optional[Sequence[int]] = None) -> list:
    """``[(row0, rows)]``: the full-width row blocks :func:`iter_row_blocks` reads, with
    ``row0`` counted from the window's first row — whole storage-block rows per block
    (each file block decoded once), each block's data within ``memory_mb`` MB."""
    bl = _bands_list(info, bands)
    c0, r0, W, H = (0, 0, info.width, info.height) if window is None else (int(v) for v in window)
    check_window(info, c0, r0, W, H)
    step = rows_per_block(info, len(bl), memory_mb, W)
    ds = _open_dataset(info.path)
    try:
        bh = ds.GetRasterBand(bl[0] + 1).GetBlockSize()[1]
    finally:
        ds = None
    if 1 < bh <= step:
        step -= step % bh
    return [(r, min(step, H - r)) for r in range(0, H, step)]


def iter_row_blocks(info: ImageInfo, bands: Optional[Sequence[int]] = None, memory_mb: float = 512,
                    window: Optional[Sequence[int]] = None, require_valid: bool = True) -> Iterator[RowBlock]:
    """Iterate over blocks of full-width rows whose data fits ``memory_mb`` MB
    (the blocks of :func:`row_blocks`).

    ``bands`` 0-based (None = all). With ``window=(col0, row0, w, h)`` only that part is
    read and ``RowBlock.row0`` counts from the window's first row. When
    ``require_valid`` (default) and no block held a valid pixel, raises
    :class:`InputImageError` after the last block (so nothing can be committed).
    """
    bl = _bands_list(info, bands)
    c0, r0, W, H = (0, 0, info.width, info.height) if window is None else (int(v) for v in window)
    blocks = row_blocks(info, bands, memory_mb, (c0, r0, W, H))
    ds = _open_dataset(info.path)
    seen = False
    try:
        for r, h in blocks:
            data, valid = _read(ds, info, bl, c0, r0 + r, W, h)
            # drop this dataset's cached raw blocks: they are not read again, and a
            # scene larger than RAM must not pile up in GDAL's block cache
            ds.FlushCache()
            seen = seen or bool(valid.any())
            yield RowBlock(r, data, valid)
            del data, valid  # not held while the next block is read: one block in memory, not two
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


@errors_as_values()
def dead_bands(info: ImageInfo, bands: Sequence[int], window: Sequence[int], rows: int = 64) -> list:
    """The bands of ``bands`` (0-based) that hold no usable value (nodata, not finite or beyond
    the magnitude limit) anywhere in ``rows`` central rows of ``window`` (col0, row0, w, h)
    where the other bands do: one dead band leaves every pixel nodata. Read band by band."""
    c0, r0, W, H = (int(v) for v in window)
    n = min(int(rows), H)
    top = r0 + (H - n) // 2
    ok = [read_window(info, [b], c0, top, W, n)[1] for b in bands]
    dead = [b for b, v in zip(bands, ok) if not v.any()]
    alive = [v for v in ok if v.any()]
    if not dead or not alive or not np.logical_and.reduce(alive).any():
        return []
    return dead


@errors_as_values()
def sample_pixels(info: ImageInfo, bands: Optional[Sequence[int]] = None, n: int = 10000, seed: int = 0,
                  memory_mb: float = 256) -> np.ndarray:
    """Up to ``n`` valid pixels drawn at random: (nb, n') float32.

    For quick checks (:func:`~urdm_plugin.core.bands.check_reflectance_scale`, noise
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


def shifted_geotransform(gt: Sequence[float], col0: int, row0: int) -> tuple:
    """Geotransform of a sub-grid whose pixel (0, 0) is pixel (col0, row0) of ``gt``
    (works for rotated geotransforms)."""
    g = [float(v) for v in gt]
    return (g[0] + col0 * g[1] + row0 * g[2], g[1], g[2], g[3] + col0 * g[4] + row0 * g[5], g[4], g[5])
