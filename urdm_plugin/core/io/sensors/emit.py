"""EMIT L2A surface reflectance granules (``EMIT_L2A_RFL_*.nc``, netCDF-4).

Read through GDAL's multidimensional netCDF API: root ``reflectance`` (downtrack ×
crosstrack × bands, float32, ``_FillValue`` −9999), group ``sensor_band_parameters``
with ``wavelengths`` and ``fwhm`` (nm) and ``good_wavelengths`` (1 = good → ``bbl``),
group ``location`` with ``glt_x``/``glt_y`` (ortho rows × ortho cols, 1-based
crosstrack/downtrack indices, 0 = no data) and the root attributes ``geotransform``
(GDAL 6-tuple of the GLT grid) and ``spatial_ref`` (WKT).

The swath is orthorectified through the GLT onto that grid — ortho pixel (r, c) takes
swath pixel (glt_y[r, c] − 1, glt_x[r, c] − 1) — into a cached float32 GeoTIFF (tiled,
band-interleaved, nodata −9999), written in band groups so memory stays within
~:data:`MEMORY_MB` (a real 1280 × 1242 × 285 scene: ~30 bands a group).

The companion ``EMIT_L2A_MASK_*.nc`` of the same acquisition, when it lies beside the
granule, becomes the quality mask (:func:`mask_companion`, :data:`MASK_FLAG_WORDS`),
orthorectified through the same GLT.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
from osgeo import gdal

from ...errors import InputImageError
from ..gdal_quiet import QuietGdal
from . import Product
from .cache import (
    atomic_path,
    cached_product,
    envi_metadata,
    extract_member,
    open_main_group,
    write_done,
)
from .detect import Location

FILL = -9999.0
MEMORY_MB = 384
#: Flags of the companion EMIT_L2A_MASK granule that make a pixel unusable, matched in its
#: ``sensor_band_parameters/mask_bands`` names: cloud, cirrus, spacecraft interference and
#: the dilated (buffered) cloud. Not the water flag — water is a material to unmix — nor
#: the aggregate flag (it folds water in) or the AOD / water-vapour data bands.
MASK_FLAG_WORDS = ("cloud", "cirrus", "spacecraft")
MASK_FLAG_FALLBACK = (0, 1, 3, 4)  # their positions when the file names no bands


def mask_companion(loc: Location) -> str:
    """The EMIT_L2A_MASK granule beside an unzipped RFL granule (same acquisition), or ""."""
    name = re.sub(r"_L2A_RFL_", "_L2A_MASK_", loc.main, flags=re.IGNORECASE)
    if loc.zip_path or name == loc.main:
        return ""
    path = os.path.join(loc.folder, name)
    return path if os.path.isfile(path) else ""


def zipped_mask_member(loc: Location) -> str:
    """The EMIT_L2A_MASK granule's member name when it sits in the same .zip as the RFL
    granule, or ""."""
    if not loc.zip_path:
        return ""
    name = re.sub(r"_L2A_RFL_", "_L2A_MASK_", loc.main, flags=re.IGNORECASE)
    if name == loc.main or name not in loc.names:
        return ""
    return loc.member[: len(loc.member) - len(loc.main)] + name


def _ortho_quality_mask(mask_path: str, shape: tuple, valid, iy, ix, gt, wkt: str, out: Path) -> None:
    """``out``: uint8 on the GLT grid, 1 = use, 0 = flagged (see :data:`MASK_FLAG_WORDS`) or
    outside the swath."""
    D, C = shape
    with QuietGdal() as q:
        ds = gdal.OpenEx(mask_path, gdal.OF_MULTIDIM_RASTER)
        rg = ds.GetRootGroup() if ds is not None else None
        m = rg.OpenMDArray("mask") if rg is not None else None
        sbp = rg.OpenGroup("sensor_band_parameters") if rg is not None else None
        names_a = sbp.OpenMDArray("mask_bands") if sbp is not None else None
        names = [str(n) for n in (names_a.Read() or [])] if names_a is not None else []
    if m is None:
        raise InputImageError(f"The EMIT mask file '{mask_path}' has no variable 'mask' ({q.last or 'not netCDF-4'})",
                              "Download the EMIT_L2A_MASK granule again, or move it away to run without it")
    dims = [d.GetSize() for d in m.GetDimensions()]
    if len(dims) != 3 or tuple(dims[:2]) != (D, C):
        raise InputImageError(f"The EMIT mask file '{mask_path}' is {dims}, not the reflectance swath {D}×{C}",
                              "Give the EMIT_L2A_MASK granule of the same acquisition")
    flags = [k for k, n in enumerate(names) if any(w in n.lower() for w in MASK_FLAG_WORDS)] if names else \
        [k for k in MASK_FLAG_FALLBACK if k < dims[2]]
    flagged = np.zeros((D, C), dtype=bool)
    for k in flags:
        with QuietGdal() as q:
            band = m.ReadAsArray(array_start_idx=[0, 0, k], count=[D, C, 1])
        if band is None:
            raise InputImageError(f"Reading flag {k + 1} of '{mask_path}' failed ({q.last})",
                                  "Download the EMIT_L2A_MASK granule again")
        flagged |= band[:, :, 0] > 0  # 1 = flagged; the fill (−9999) is nodata in the reflectance already
    grid = np.zeros(valid.shape, dtype=np.uint8)
    grid[valid] = ~flagged[iy, ix]
    with atomic_path(out) as tmp:
        dst = gdal.GetDriverByName("GTiff").Create(tmp, grid.shape[1], grid.shape[0], 1, gdal.GDT_Byte,
                                                   ["COMPRESS=DEFLATE", "TILED=YES"])
        dst.SetGeoTransform(gt)
        if wkt:
            dst.SetProjection(wkt)
        dst.GetRasterBand(1).WriteArray(grid)
        dst.GetRasterBand(1).SetDescription("1 = use, 0 = cloud, cirrus, spacecraft or dilated-cloud flag")
        dst = None


def _missing(path: str, what: str) -> InputImageError:
    return InputImageError(f"The EMIT file '{path}' has no {what}",
                           "Give an EMIT L2A reflectance granule (EMIT_L2A_RFL_*.nc) as delivered, not a subset")


def _array(group, name: str, path: str, where: str = ""):
    a = group.OpenMDArray(name) if group is not None else None
    if a is None:
        raise _missing(path, f"variable '{where}{name}'")
    return a


def _group(rg, name: str, path: str):
    g = rg.OpenGroup(name)
    if g is None:
        raise _missing(path, f"group '{name}'")
    return g


class _Granule(NamedTuple):
    """What one EMIT RFL granule holds: its reflectance array and its band and grid metadata."""

    refl: object  # gdal.MDArray (downtrack D × crosstrack C × bands B), float32
    shape: tuple  # (D, C, B)
    wl: np.ndarray  # (B,) nm
    fw: np.ndarray | None  # (B,) nm
    good: np.ndarray | None  # (B,) bool
    gx: np.ndarray  # (Oy, Ox) 1-based crosstrack index, 0 = no data
    gy: np.ndarray  # (Oy, Ox) 1-based downtrack index, 0 = no data
    gt: tuple  # GDAL geotransform of the GLT grid
    wkt: str
    fill: float


def _read_granule(rg, path: str) -> _Granule:
    """The reflectance array, band parameters (nm), GLT and georeferencing of an open granule."""
    with QuietGdal() as q:
        refl = _array(rg, "reflectance", path)
        dims = [d.GetSize() for d in refl.GetDimensions()]
        if len(dims) != 3:
            raise _missing(path, "3-D 'reflectance' (downtrack × crosstrack × bands)")
        D, C, B = dims
        sbp = _group(rg, "sensor_band_parameters", path)
        wl = np.asarray(_array(sbp, "wavelengths", path, "sensor_band_parameters/").ReadAsArray(), np.float64)
        fw_a = sbp.OpenMDArray("fwhm")
        fw = None if fw_a is None else np.asarray(fw_a.ReadAsArray(), np.float64)
        good_a = sbp.OpenMDArray("good_wavelengths")
        good = None if good_a is None else np.asarray(good_a.ReadAsArray()) != 0
        locg = _group(rg, "location", path)
        gx = _array(locg, "glt_x", path, "location/").ReadAsArray()
        gy = _array(locg, "glt_y", path, "location/").ReadAsArray()
        gt_attr, srs_attr = rg.GetAttribute("geotransform"), rg.GetAttribute("spatial_ref")
        if gt_attr is None or srs_attr is None:
            raise _missing(path, "root attributes 'geotransform' and 'spatial_ref'")
        gt = tuple(float(v) for v in gt_attr.ReadAsDoubleArray())
        wkt = srs_attr.ReadAsString() or ""
        fill = refl.GetNoDataValueAsDouble()
    if gx is None or gy is None or wl is None:
        raise InputImageError(f"Reading the GLT or wavelengths of '{path}' failed ({q.last})",
                              "Download the granule again (the file is incomplete)")
    if wl.size != B or (fw is not None and fw.size != B) or (good is not None and good.size != B):
        raise InputImageError(f"The band parameters of '{path}' do not have one value per band ({B})",
                              "Give an EMIT L2A reflectance granule as delivered")
    if gx.shape != gy.shape or gx.ndim != 2 or len(gt) != 6:
        raise InputImageError(f"The GLT (location/glt_x, glt_y) or geotransform of '{path}' is malformed",
                              "Give an EMIT L2A reflectance granule as delivered")
    fill = FILL if fill is None or not np.isfinite(fill) else float(fill)
    return _Granule(refl, (D, C, B), wl, fw, good, gx, gy, gt, wkt, fill)


def _glt_pixels(gx: np.ndarray, gy: np.ndarray, D: int, C: int) -> tuple:
    """(valid, iy, ix): the (Oy, Ox) bool of ortho pixels inside the swath and, for those, the
    0-based swath downtrack / crosstrack indices (n valid,) each."""
    valid = (gx > 0) & (gy > 0) & (gx <= C) & (gy <= D)
    return valid, gy[valid].astype(np.int64) - 1, gx[valid].astype(np.int64) - 1


def _wavelength_order(wl: np.ndarray) -> tuple:
    """(order, pos): the band indices sorted by wavelength, and each band's 0-based output position."""
    order = np.argsort(wl, kind="stable")
    pos = np.empty(wl.size, dtype=np.int64)
    pos[order] = np.arange(wl.size)
    return order, pos


def _bands_per_group(D: int, C: int, Oy: int, Ox: int, n_valid: int, B: int) -> int:
    """Bands read at once so the swath slab (D·C) and the picked pixels stay within ~MEMORY_MB."""
    # per band of a group: the swath slab (D·C) and the picked valid pixels (≤ Oy·Ox), float32
    return max(1, min(B, int((MEMORY_MB * 2**20 - 8 * Oy * Ox) // (4 * (D * C + n_valid)))))


def _write_ortho_reflectance(g: _Granule, valid, iy, ix, path: str, out: Path) -> None:
    """``out``: float32 GeoTIFF (Oy × Ox × B, increasing wavelength, nodata ``g.fill``) of the swath
    put through the GLT, read and written a band group at a time."""
    D, C, B = g.shape
    Oy, Ox = g.gx.shape
    order, pos = _wavelength_order(g.wl)
    group = _bands_per_group(D, C, Oy, Ox, int(valid.sum()), B)
    with atomic_path(out) as tmp:
        dst = gdal.GetDriverByName("GTiff").Create(
            tmp, Ox, Oy, B, gdal.GDT_Float32, ["TILED=YES", "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"])
        if dst is None:
            raise InputImageError(f"Cannot write '{out}'", "Set URDM_CACHE_DIR to a writable folder with space")
        dst.SetGeoTransform(g.gt)
        if g.wkt:
            dst.SetProjection(g.wkt)
        buf = np.empty((Oy, Ox), dtype=np.float32)
        for b0 in range(0, B, group):
            n = min(group, B - b0)
            with QuietGdal() as q:
                sub = g.refl.ReadAsArray(array_start_idx=[0, 0, b0], count=[D, C, n])
            if sub is None:
                raise InputImageError(f"Reading bands {b0 + 1}–{b0 + n} of '{path}' failed ({q.last})",
                                      "Download the granule again (the file is incomplete)")
            picked = sub[iy, ix, :]  # (n valid, n)
            del sub
            for j in range(n):
                buf.fill(g.fill)
                buf[valid] = picked[:, j]
                band = dst.GetRasterBand(int(pos[b0 + j]) + 1)
                band.WriteArray(buf)
                band.SetNoDataValue(g.fill)
                band.SetDescription(f"{g.wl[b0 + j]:.2f} nm")
            del picked
        dst.SetMetadata(envi_metadata(g.wl[order], None if g.fw is None else g.fw[order],
                                      None if g.good is None else g.good[order]), "ENVI")
        dst = None


def _description(loc: Location, g: _Granule, companion: str) -> str:
    """The one-line description of the derived product (bands, nm range, swath and grid sizes)."""
    D, C, B = g.shape
    Oy, Ox = g.gx.shape
    n_bad = 0 if g.good is None else int((~g.good).sum())
    return (f"EMIT L2A RFL '{loc.main}': {B} bands {g.wl.min():.0f}–{g.wl.max():.0f} nm ({n_bad} flagged bad by "
            f"good_wavelengths), {D}×{C} swath orthorectified through the GLT onto {Ox}×{Oy} pixels"
            + (f"; cloud/cirrus/spacecraft flags from '{os.path.basename(companion)}'" if companion else ""))


def build_emit(loc: Location, source: str) -> Product:
    """The :class:`Product` of an EMIT L2A RFL granule (orthorectified GeoTIFF in the cache)."""
    companion = mask_companion(loc)
    folder, done = cached_product(loc.key_files + ([companion] if companion else []), "emit", source)
    if done is not None:
        return done
    path, ds, rg = open_main_group(loc, folder, "EMIT", "netCDF-4",
                                   "Download the granule again (the file is incomplete or not netCDF)")
    member = zipped_mask_member(loc)
    if member:  # the zip holds the mask granule too: unpacked beside the main file, removed after
        companion = extract_member(loc.zip_path, member, folder)
    g = _read_granule(rg, path)
    D, C, _ = g.shape
    valid, iy, ix = _glt_pixels(g.gx, g.gy, D, C)
    out = folder / "reflectance_ortho.tif"
    _write_ortho_reflectance(g, valid, iy, ix, path, out)
    qmask = ""
    if companion:
        _ortho_quality_mask(companion, (D, C), valid, iy, ix, g.gt, g.wkt, folder / "quality_mask.tif")
        qmask = "quality_mask.tif"
    desc = _description(loc, g, companion)
    write_done(folder, {"sensor": "EMIT L2A RFL", "path": out.name, "quality_mask_path": qmask,
                        "description": desc, "source": source})
    if loc.zip_path:  # the unpacked copies served only to build the derived files
        del ds, rg, g  # close the file before removing it
        for unpacked in [path] + ([companion] if member else []):
            with contextlib.suppress(OSError):
                Path(unpacked).unlink()
    return Product("EMIT L2A RFL", source, str(out), str(folder / qmask) if qmask else "", desc)
