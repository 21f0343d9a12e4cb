"""Block-wise GDAL reading of hyperspectral images: metadata (wavelengths, scale, nodata) and pixels.

Size note: ~710 lines, metadata (four places wavelengths may live), GDAL mask bands and
block-wise reading of the same :class:`ImageInfo`; the wavelength lookup is the larger half.

Reading (:func:`open_image`, :func:`iter_row_blocks`, :func:`read_window`) works for any
format GDAL reads (GeoTIFF, ENVI, VRT, ...). Values come back as float32 with each
band's scale/offset applied; a pixel is invalid when any band read is nodata or not
finite, or a GDAL mask band (a GeoTIFF's internal mask, an alpha band) marks it. Wavelengths are converted to nm, looked up in this order:

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
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

import numpy as np
from osgeo import gdal

from ..errors import InputImageError, WavelengthError
from ..limits import MAX_MAGNITUDE
from ..window import Window
from .gdal_quiet import QuietGdal, errors_as_values
from .parallel_read import Layout, WindowReader, decode_threads, layout_of
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
    #: per band, the GDAL mask that marks its invalid pixels beyond nodata: "dataset" (one
    #: mask for all bands: a GeoTIFF's internal mask, an alpha band), "band" (its own) or ""
    #: (none); None when not looked at (an ImageInfo made by hand)
    mask_bands: Optional[list] = None
    #: False when the file has no geotransform (``geotransform`` is then GDAL's pixel-grid
    #: default, used for pixel arithmetic only and never written to outputs); ``gcps``
    #: ((pixel, line, x, y, z), ...) with ``gcp_wkt`` and ``rpc`` (the RPC metadata domain,
    #: {} when none) are the georeferencing outputs copy when the image has them
    georeferenced: bool = True
    gcps: tuple = ()
    gcp_wkt: str = ""
    rpc: dict = field(default_factory=dict)


#: "NETCDF:", "HDF5:", "GPKG:" ...: a GDAL driver prefix, not a Windows drive letter ("C:")
_DRIVER_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:")


def is_plain_path(path: Union[str, os.PathLike]) -> bool:
    """False for what GDAL opens that is no file of that name: virtual file systems
    (``/vsizip/…``, ``/vsigzip/…``, ``/vsicurl/…``), URLs and driver-prefixed subdatasets
    (``NETCDF:"file.nc":var``, ``HDF5:…``). Only plain paths can be said "not found"."""
    p = str(path)
    return not (p.startswith("/vsi") or "://" in p or _DRIVER_PREFIX.match(p))


@errors_as_values()
def _open_dataset(path: str):
    with QuietGdal() as q:
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    if ds is None:
        if is_plain_path(path) and not os.path.exists(str(path)):
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


def _envi_bad_bands(envi: dict, B: int, path: str) -> Optional[np.ndarray]:
    """The ENVI ``bbl`` as a (B,) bool (True = good band), or None when the header has none."""
    if "bbl" not in envi:
        return None
    vals = parse_number_list(envi["bbl"], f"ENVI bad-band list (bbl) of '{path}'")
    if vals.size != B:
        raise InputImageError(f"The ENVI bad-band list (bbl) of '{path}' has {vals.size} entries for {B} bands",
                              "Fix 'bbl' in the .hdr (one 0/1 per band) or remove it")
    return vals != 0


def _envi_wavelengths(envi: dict, default: dict, B: int, path: str) -> Optional[tuple]:
    """Step 1, the ENVI domain: (wavelengths nm (B,), fwhm nm (B,) | None, unit label), or None."""
    if "wavelength" not in envi:
        return None
    unit = envi.get("wavelength_units", default.get("wavelength_units"))
    if is_index_unit(unit):
        return None
    raw = parse_number_list(envi["wavelength"], f"ENVI wavelength list of '{path}'")
    if raw.size != B:
        return None
    wl, label = _convert(raw, unit, path, "ENVI wavelengths")
    fwhm = None
    if "fwhm" in envi:
        f = parse_number_list(envi["fwhm"], f"ENVI fwhm list of '{path}'")
        if f.size == B and np.all(np.isfinite(f)) and np.all(f > 0):
            fwhm = f * (wl[0] / raw[0])
    return wl, fwhm, label


def _band_md_wavelengths(per: list, default: dict, path: str) -> tuple:
    """Step 2, per-band metadata: ((wavelengths nm, fwhm nm | None, unit label) | None, unreadable),
    ``unreadable`` the (band, text) of a wavelength that is not a number, else None."""
    if not all("wavelength" in m for m in per):
        return None, None
    try:
        raw = np.array([float(m["wavelength"]) for m in per])
    except ValueError:
        return None, next((i + 1, m["wavelength"]) for i, m in enumerate(per) if not _is_number(m["wavelength"]))
    units = {m.get("wavelength_units", default.get("wavelength_units")) for m in per}
    if len(units) > 1:
        raise WavelengthError(f"The bands of '{path}' give different wavelength units ({sorted(map(str, units))})",
                              "Give every band the same wavelength_units")
    unit = units.pop()
    if is_index_unit(unit):
        return None, None
    wl, label = _convert(raw, unit, path, "band wavelengths")
    fwhm = None
    if all("fwhm" in m for m in per):
        try:
            f = np.array([float(m["fwhm"]) for m in per])
            if np.all(np.isfinite(f)) and np.all(f > 0):
                fwhm = f * (wl[0] / raw[0])
        except ValueError:
            pass
    return (wl, fwhm, label), None


def _imagery_wavelengths(bands: list, path: str) -> Optional[tuple]:
    """Step 3, the IMAGERY domain (always µm): (wavelengths nm, fwhm nm | None, unit label), or None."""
    imag = [_norm_md(b.GetMetadata("IMAGERY")) for b in bands]
    if not all("central_wavelength_um" in m for m in imag):
        return None
    try:
        raw = np.array([float(m["central_wavelength_um"]) for m in imag])
        wl, label = _convert(raw, "um", path, "IMAGERY wavelengths")
        fwhm = None
        if all("fwhm_um" in m for m in imag):
            f = np.array([float(m["fwhm_um"]) for m in imag]) * 1000.0
            if np.all(np.isfinite(f)) and np.all(f > 0):
                fwhm = f
        return wl, fwhm, label
    except ValueError:
        return None


def _description_wavelengths(bands: list) -> Optional[tuple]:
    """Step 4, band descriptions ("401.00 nm"): (wavelengths nm, unit label), or None."""
    parsed = [wavelength_from_text(b.GetDescription()) for b in bands]
    if not (bands and all(v is not None for v, _ in parsed)):
        return None
    raw = np.array([v for v, _ in parsed])
    factors = {f for _, f in parsed}
    if len(factors) == 1:
        factor = factors.pop()
        if factor is None:
            factor = infer_unit_factor(raw)
            return raw * factor, unit_label(factor) + " (inferred)"
        return raw * factor, unit_label(factor)
    if None not in factors:  # mixed explicit units: each converted by its own
        return np.array([v * f for v, f in parsed]), "mixed"
    return None


def _refuse_band_order_fallback(per: list, B: int, path: str, unreadable: Optional[tuple]) -> None:
    """Raise when no wavelength source covers every band but some bands state one (or an
    unreadable one): matching by band order then would silently ignore them."""
    have = [i for i, m in enumerate(per) if "wavelength" in m]
    if 0 < len(have) < B:  # never match by band order while some bands say where they are
        missing = [i + 1 for i in range(B) if i not in set(have)]
        raise WavelengthError(f"{len(missing)} of the {B} bands of '{path}' have no wavelength (band "
                              f"{', '.join(map(str, missing[:5]))}{' …' if len(missing) > 5 else ''}) while the "
                              "others have one",
                              "Give every band its wavelength (band metadata 'wavelength'), or none of them to "
                              "match the library by band order")
    if unreadable is not None:  # never fall back to matching by band order behind the user's back
        band, text = unreadable
        raise WavelengthError(f"Band {band} of '{path}' has the wavelength '{str(text)[:40]}', which is not a number",
                              "Correct the band's wavelength metadata (a number, e.g. 552.3), or remove it "
                              "from every band to match the library by band order")


def _read_wavelengths(ds, path: str) -> tuple:
    """-> (wavelengths_nm | None, fwhm_nm | None, bbl | None, source, unit label), from the first of
    the four sources (module docstring) that covers every band."""
    B = ds.RasterCount
    envi = _norm_md(ds.GetMetadata("ENVI"))
    default = _norm_md(ds.GetMetadata())
    bbl = _envi_bad_bands(envi, B, path)
    found = _envi_wavelengths(envi, default, B, path)
    if found is not None:
        wl, fwhm, label = found
        return wl, fwhm, bbl, "ENVI metadata", label
    bands = [ds.GetRasterBand(i + 1) for i in range(B)]
    per = [_norm_md(b.GetMetadata()) for b in bands]
    found, unreadable = _band_md_wavelengths(per, default, path)
    if found is not None:
        wl, fwhm, label = found
        return wl, fwhm, bbl, "band metadata", label
    found = _imagery_wavelengths(bands, path)
    if found is not None:
        wl, fwhm, label = found
        return wl, fwhm, bbl, "IMAGERY metadata", label
    found = _description_wavelengths(bands)
    if found is not None:
        wl, label = found
        return wl, None, bbl, "band descriptions", label
    _refuse_band_order_fallback(per, B, path, unreadable)
    return None, None, bbl, "", ""


def _mask_kind(band) -> str:
    """"dataset", "band" or "": the kind of GDAL mask ``band`` has beyond its nodata value
    (GMF_ALL_VALID: none; GMF_NODATA: the nodata value, applied separately)."""
    flags = band.GetMaskFlags()
    if flags & (gdal.GMF_ALL_VALID | gdal.GMF_NODATA):
        return ""
    return "dataset" if flags & gdal.GMF_PER_DATASET else "band"


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
        complex_bands = [i + 1 for i in range(B) if gdal.DataTypeIsComplex(ds.GetRasterBand(i + 1).DataType)]
        if complex_bands:
            kind = gdal.GetDataTypeName(ds.GetRasterBand(complex_bands[0]).DataType)
            raise InputImageError(f"'{p}' is complex-valued ({kind}, band {complex_bands[0]}"
                                  f"{' and others' if len(complex_bands) > 1 else ''}); unmixing needs real reflectance",
                                  "Convert it to real reflectance first (e.g. its magnitude: gdal_calc.py "
                                  "--calc 'abs(A)' --type Float32 --allBands A)")
        native = ds.GetGeoTransform(can_return_null=True)
        gt = tuple(float(v) for v in (native or (0, 1, 0, 0, 0, 1)))
        gcps = tuple((g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY, g.GCPZ) for g in (ds.GetGCPs() or ()))
        wkt = ds.GetProjection() or ""
        wl, fwhm, bbl, source, unit = _read_wavelengths(ds, p)
        scales, offsets, nodata, names, masks = [], [], [], [], []
        for i in range(B):
            b = ds.GetRasterBand(i + 1)
            s, o = b.GetScale(), b.GetOffset()
            scales.append(1.0 if s is None or s == 0 or not math.isfinite(s) else float(s))
            offsets.append(0.0 if o is None or not math.isfinite(o) else float(o))
            nodata.append(b.GetNoDataValue())
            masks.append(_mask_kind(b))
            names.append(b.GetDescription() or f"Band {i + 1}")
        drv = ds.GetDriver()
        return ImageInfo(
            path=p, width=ds.RasterXSize, height=ds.RasterYSize, band_count=B, geotransform=gt,
            crs_wkt=wkt, wavelengths_nm=wl, fwhm_nm=fwhm, scales=np.array(scales), offsets=np.array(offsets),
            nodata=nodata, usable=np.ones(B, dtype=bool) if bbl is None else bbl, band_names=names,
            dtype_name=gdal.GetDataTypeName(ds.GetRasterBand(1).DataType), wavelength_source=source,
            wavelength_unit=unit, driver=drv.ShortName if drv is not None else "",
            mask_bands=masks, georeferenced=native is not None, gcps=gcps,
            gcp_wkt=(ds.GetGCPProjection() or "") if gcps else "", rpc=dict(ds.GetMetadata("RPC") or {}),
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
def _read(ds, info: ImageInfo, bands: list, window: Window,
          max_magnitude: Optional[float] = MAX_MAGNITUDE, out: Optional[tuple] = None,
          bands_per_read: Optional[int] = None) -> tuple:
    """``(data (nb, h, w), valid (h, w))`` of one :class:`Window`, ``bands_per_read`` per GDAL
    request (default :data:`_BAND_GROUP`); ``out``: views to fill instead (a piece of a larger
    window, :mod:`.parallel_read`)."""
    row0, h, w = window.row0, window.height, window.width
    group_size = bands_per_read or _BAND_GROUP
    if out is None:
        data, valid = np.empty((len(bands), h, w), dtype=np.float32), np.ones((h, w), dtype=bool)
    else:
        data, valid = out
        valid[...] = True
    for g0 in range(0, len(bands), group_size):
        group = bands[g0:g0 + group_size]
        with QuietGdal() as q:  # a damaged file's GDAL errors go into our one line, not stderr
            raw = ds.ReadAsArray(*window.xywh(), band_list=[b + 1 for b in group])
        if raw is None:
            raise InputImageError(
                f"Reading bands {group[0] + 1}–{group[-1] + 1}, rows {row0}–{row0 + h - 1} of '{info.path}' "
                f"failed ({q.last or 'no reason given'})", _read_failure_fix(q.last))
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
    _apply_mask_bands(ds, info, bands, window, valid)
    if not valid.all():
        data[:, ~valid] = 0.0  # keep NaN/inf and nodata out of the solvers
    return data, valid


#: Words of GDAL's message when a read failed for want of memory, not because of the file.
_OUT_OF_MEMORY = ("cannot allocate", "out of memory", "bad_alloc")


def _read_failure_fix(gdal_message: Optional[str]) -> str:
    """The fix of a failed read: more memory when GDAL could not allocate (under ``ulimit -v``
    the file is fine), else the file's state."""
    if any(w in (gdal_message or "").lower() for w in _OUT_OF_MEMORY):
        return ("GDAL ran out of memory, the file is not at fault: give the process more memory (a higher "
                "'ulimit -v', fewer other programs) or use a smaller memory budget (--memory-mb)")
    return "Check that the file is complete and readable"


def _apply_mask_bands(ds, info: ImageInfo, bands: list, window: Window, valid: np.ndarray) -> None:
    """Clear ``valid`` where the GDAL mask of a band read (:attr:`ImageInfo.mask_bands`:
    a GeoTIFF's internal mask, an alpha band, a per-band mask) is 0; a per-dataset mask is
    read once."""
    kinds = info.mask_bands or []
    done_dataset = False
    for b in bands:
        kind = kinds[b] if b < len(kinds) else ""
        if not kind or (kind == "dataset" and done_dataset):
            continue
        with QuietGdal() as q:
            m = ds.GetRasterBand(b + 1).GetMaskBand().ReadAsArray(*window.xywh())
        if m is None:
            raise InputImageError(f"Reading the mask of band {b + 1} of '{info.path}' failed ({q.last or 'no reason'})",
                                  "Check that the file is complete and readable")
        valid &= m != 0
        done_dataset = done_dataset or kind == "dataset"


def check_window(info: ImageInfo, window: Window) -> None:
    """Raise :class:`InputImageError` unless ``window`` is a non-empty part of the image."""
    if not window.within(info.height, info.width):
        raise InputImageError(
            f"Window (col {window.col0}, row {window.row0}, {window.width}x{window.height}) is not inside the "
            f"{info.width}x{info.height} image",
            "Choose an extent that overlaps the image",
        )


@errors_as_values()
def read_window(info: ImageInfo, bands: Optional[Sequence[int]], window: Window,
                max_magnitude: Optional[float] = MAX_MAGNITUDE) -> tuple:
    """Read a :class:`~urdm_plugin.core.window.Window` (image pixels):
    ``(data (nb, h, w) float32 scaled, valid (h, w) bool)``.

    ``bands`` are 0-based (None = all). Invalid pixels (any band nodata, not finite, or
    beyond ±``max_magnitude`` — :data:`core.limits.MAX_MAGNITUDE`; None: no limit, only
    finiteness) hold 0 in ``data``.
    """
    bl = _bands_list(info, bands)
    check_window(info, window)
    if len(bl) * window.size >= PARALLEL_READ_ABOVE:  # decoded on every core
        with window_reader(info) as reader:
            return reader.read(bl, window, max_magnitude)
    ds = _open_dataset(info.path)
    try:
        return _read(ds, info, bl, window, max_magnitude)
    finally:
        ds = None


#: Values (bands × pixels) from which a window is read on several threads (below, starting
#: them costs more than it saves).
PARALLEL_READ_ABOVE = 2 ** 20


def window_reader(info: ImageInfo, flush: bool = False, threads: Optional[int] = None) -> WindowReader:
    """A :class:`.parallel_read.WindowReader` of ``info`` reading through this module (scale,
    offset, nodata as :func:`read_window`); ``flush``: drop each handle's cached raw blocks
    after every piece (a pass over the whole image); ``threads``: default all cores."""
    return WindowReader(info, _open_dataset, _read, threads=threads, flush=flush)


#: Share of the memory budget the tiles being decoded at once may take: a pixel-interleaved
#: tile decodes every band (256² × 200 float32: 52 MB), so fewer threads on a small budget.
DECODE_SHARE = 0.25


def budget_threads(info: ImageInfo, layout: Layout, memory_mb: float) -> int:
    """Threads a pass within ``memory_mb`` MB reads with: all cores, fewer when the
    pixel-interleaved tiles decoded side by side would exceed :data:`DECODE_SHARE` of it."""
    n = decode_threads()
    if layout.pixel_interleaved:
        item = max(1, gdal.GetDataTypeSize(gdal.GetDataTypeByName(info.dtype_name)) // 8) if info.dtype_name else 8
        tile = layout.block_w * layout.block_h * info.band_count * item
        n = max(1, min(n, int(DECODE_SHARE * float(memory_mb) * 2 ** 20 // tile)))
    return n


def file_layout(info: ImageInfo) -> Layout:
    """Block size and interleave of the image's file (:class:`.parallel_read.Layout`)."""
    ds = _open_dataset(info.path)
    try:
        return layout_of(ds)
    finally:
        ds = None


@errors_as_values()
def read_image(path: Union[str, os.PathLike], bands: Optional[Sequence[int]] = None) -> tuple:
    """A whole (small) image at once: ``(data (nb, H, W) float32 scaled, valid (H, W) bool)``
    — :func:`open_image` then :func:`read_window` over every pixel (scale, offset and
    nodata applied the same way)."""
    info = open_image(path)
    return read_window(info, bands, Window.whole(info.height, info.width))


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


def rows_per_block(info: ImageInfo, n_bands: int, memory_mb: float = 512, width: Optional[int] = None,
                   bands_per_read: Optional[int] = None, raw_width: Optional[int] = None) -> int:
    """Rows per block so one block (raw + float32 data + masks) fits :data:`BLOCK_SHARE` of
    ``memory_mb`` MB, reading ``bands_per_read`` bands (default :data:`_BAND_GROUP`) of
    ``raw_width`` columns (default all) at a time."""
    W = info.width if width is None else width
    item = max(1, gdal.GetDataTypeSize(gdal.GetDataTypeByName(info.dtype_name)) // 8) if info.dtype_name else 8
    raw = min(n_bands, bands_per_read or _BAND_GROUP) * item * min(W, raw_width or W)
    # float32 cube + one raw band group + temporaries + masks
    per_row = W * (n_bands * 4 + 8 + 3) + raw
    return max(1, int(BLOCK_SHARE * memory_mb * 2**20 // per_row))


def row_blocks(info: ImageInfo, bands: Optional[Sequence[int]] = None, memory_mb: float = 512,
               window: Optional[Window] = None) -> list:
    """``[(row0, rows)]``: the full-width row blocks :func:`iter_row_blocks` reads, with
    ``row0`` counted from the window's first row — whole storage-block rows per block
    (each file block decoded once: blocks end on the file's block boundaries, counted from
    the image's first row, also when the window starts between them), each block's data
    within ``memory_mb`` MB."""
    bl = _bands_list(info, bands)
    window = Window.whole(info.height, info.width) if window is None else window
    check_window(info, window)
    r0, W, H = window.row0, window.width, window.height
    layout = file_layout(info)
    if layout.pixel_interleaved:  # all bands per request, one block column per thread at a time
        step = rows_per_block(info, len(bl), memory_mb, W, len(bl),
                              budget_threads(info, layout, memory_mb) * layout.block_w)
    else:
        step = rows_per_block(info, len(bl), memory_mb, W)
    bh = layout.block_h
    aligned = 1 < bh <= step
    if aligned:
        step -= step % bh
    out, start = [], r0
    while start < r0 + H:  # image rows; an unaligned first block ends on a block boundary
        end = min(r0 + H, (start // bh * bh if aligned else start) + step)
        out.append((start - r0, end - start))
        start = end
    return out


def iter_row_blocks(info: ImageInfo, bands: Optional[Sequence[int]] = None, memory_mb: float = 512,
                    window: Optional[Window] = None, require_valid: bool = True,
                    held=None) -> Iterator[RowBlock]:
    """Iterate over blocks of full-width rows whose data fits ``memory_mb`` MB
    (the blocks of :func:`row_blocks`), each decoded on every core
    (:class:`.parallel_read.WindowReader`).

    ``bands`` 0-based (None = all). With a ``window`` (:class:`Window`) only that part is
    read and ``RowBlock.row0`` counts from the window's first row. ``held``: a
    :class:`.parallel_read.DecodedBlocks` whose windows are pasted instead of read again
    (and released as the blocks pass them). When ``require_valid`` (default) and no block
    held a valid pixel, raises :class:`InputImageError` after the last block (so nothing can
    be committed).
    """
    bl = _bands_list(info, bands)
    window = Window.whole(info.height, info.width) if window is None else window
    blocks = row_blocks(info, bands, memory_mb, window)
    seen = False
    # flush: each handle drops its cached raw blocks after its piece; they are not read
    # again, and a scene larger than RAM must not pile up in GDAL's block cache
    with window_reader(info, flush=True, threads=budget_threads(info, file_layout(info), memory_mb)) as reader:
        for r, h in blocks:
            data, valid = reader.read(bl, Window(window.row0 + r, window.col0, h, window.width), held=held)
            seen = seen or bool(valid.any())
            yield RowBlock(r, data, valid)
            del data, valid  # not held while the next block is read: one block in memory, not two
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
def dead_bands(info: ImageInfo, bands: Sequence[int], window: Window, rows: int = 64) -> list:
    """The bands of ``bands`` (0-based) that hold no usable value (nodata, not finite or beyond
    the magnitude limit) anywhere in ``window`` (a :class:`Window`) while the other bands do:
    one such band leaves every pixel nodata. Candidates come from ``rows`` central rows (read
    band by band, one dataset open); each is then confirmed over the whole window (a band
    that holds a value anywhere is not dead). [] when no band, or every band, is dead there."""
    c0, r0, W, H = window.col0, window.row0, window.width, window.height
    n = min(int(rows), H)
    central = Window(r0 + (H - n) // 2, c0, n, W)
    ds = _open_dataset(info.path)
    try:
        ok = [_read(ds, info, [b], central)[1] for b in bands]
        dead = [b for b, v in zip(bands, ok) if not v.any()]
        alive = [v for v in ok if v.any()]
        if not dead or not alive or not np.logical_and.reduce(alive).any():
            return []
        step = rows_per_block(info, 1, 64, W)
        return [b for b in dead
                if not any(_read(ds, info, [b], Window(r, c0, min(step, r0 + H - r), W))[1].any()
                           for r in range(r0, r0 + H, step))]
    finally:
        ds = None


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


def shifted_geotransform(gt: Sequence[float], window: Window) -> tuple:
    """Geotransform of the sub-grid ``window`` of the grid of ``gt``: its pixel (0, 0) is the
    window's top left pixel (works for rotated geotransforms)."""
    col0, row0 = window.col0, window.row0
    g = [float(v) for v in gt]
    return (g[0] + col0 * g[1] + row0 * g[2], g[1], g[2], g[3] + col0 * g[4] + row0 * g[5], g[4], g[5])
