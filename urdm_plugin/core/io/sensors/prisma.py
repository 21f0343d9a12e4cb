"""PRISMA L2D products (``PRS_L2D_*.he5``, HDF-EOS5), read with GDAL's HDF5 driver.

Cubes ``HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields/VNIR_Cube`` and ``SWIR_Cube`` are uint16
and ordered rows × bands × columns. Root attributes: centre wavelengths
``List_Cw_Vnir``/``List_Cw_Swir`` and ``List_Fwhm_Vnir``/``List_Fwhm_Swir`` (nm; VNIR
stored from long to short wavelength), flags ``List_Cw_Vnir_Flags``/``List_Cw_Swir_Flags``
(0 = bad band → ``bbl`` 0), the scale range ``L2ScaleVnirMin/Max``, ``L2ScaleSwirMin/Max``
(reflectance = Min + DN · (Max − Min) / 65535) and the geocoding ``Epsg_Code``,
``Product_ULcorner_easting/northing``, ``Product_LRcorner_easting/northing`` — taken as
the centres of the corner pixels.

The derived file is a cached float32 GeoTIFF with both cubes joined in increasing
wavelength order: bands with wavelength 0 (never acquired) are dropped, and where the
detectors overlap (~920–1010 nm) the SWIR bands at or below the last good VNIR band are
dropped (the SWIR detector's short end is the noisier; the usual PRISMA practice). A
pixel whose DN is 0 in every kept band is L2D padding outside the swath → −9999.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from osgeo import gdal, osr

from ...errors import InputImageError
from ..gdal_quiet import QuietGdal
from . import Product
from .cache import (
    atomic_path,
    cached_product,
    envi_metadata,
    open_main_group,
    write_done,
)
from .detect import Location

SWATH = "/HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields/"
FILL = -9999.0
DN_MAX = 65535.0
MEMORY_MB = 384


def _attr(rg, name: str, path: str, kind: str = "array"):
    a = rg.GetAttribute(name)
    if a is None:
        raise InputImageError(f"The PRISMA file '{path}' has no root attribute '{name}'",
                              "Give a PRISMA L2D product (PRS_L2D_*.he5) as delivered")
    if kind == "array":
        v = a.ReadAsDoubleArray()
        return np.atleast_1d(np.asarray(v if v is not None else [], dtype=np.float64))
    return float(a.ReadAsDouble())


def _cube(rg, name: str, path: str):
    a = rg.OpenMDArrayFromFullname(SWATH + name)
    if a is None:
        raise InputImageError(f"The PRISMA file '{path}' has no '{SWATH}{name}'",
                              "Give a PRISMA L2D product (PRS_L2D_*.he5) as delivered")
    dims = [d.GetSize() for d in a.GetDimensions()]
    if len(dims) != 3:
        raise InputImageError(f"'{SWATH}{name}' in '{path}' is not a 3-D cube (rows × bands × columns)",
                              "Give a PRISMA L2D product as delivered")
    return a, dims


def _geotransform(rg, path: str, W: int, H: int) -> tuple:
    ulx, uly = _attr(rg, "Product_ULcorner_easting", path, "scalar"), _attr(rg, "Product_ULcorner_northing", path, "scalar")
    lrx, lry = _attr(rg, "Product_LRcorner_easting", path, "scalar"), _attr(rg, "Product_LRcorner_northing", path, "scalar")
    px = (lrx - ulx) / (W - 1) if W > 1 else 30.0
    py = (uly - lry) / (H - 1) if H > 1 else 30.0
    if not (px > 0 and py > 0):
        raise InputImageError(f"The corner coordinates of '{path}' do not span the image "
                              f"(UL {ulx}, {uly}; LR {lrx}, {lry})", "Give a PRISMA L2D product as delivered")
    return (ulx - px / 2, px, 0.0, uly + py / 2, 0.0, -py)


def _bands(rg, path: str, det: str, n: int) -> tuple:
    """(kept indices into the cube's band axis, wavelengths, fwhm, good flags) of one detector."""
    cw = _attr(rg, f"List_Cw_{det}", path)
    fw = _attr(rg, f"List_Fwhm_{det}", path)
    fl = _attr(rg, f"List_Cw_{det}_Flags", path)
    if not cw.size == fw.size == fl.size == n:
        raise InputImageError(f"List_Cw_{det}, List_Fwhm_{det} and List_Cw_{det}_Flags of '{path}' do not have "
                              f"one value per band of the {det.upper()} cube ({n})", "Give a PRISMA L2D product as delivered")
    keep = np.flatnonzero(cw > 0)
    return keep, cw[keep], fw[keep], fl[keep] != 0


class _Detectors(NamedTuple):
    """The two cubes of a PRISMA L2D product and what it says about their bands."""

    vnir: object  # gdal.MDArray (H × Bv × W), uint16 DN
    swir: object  # gdal.MDArray (H × Bs × W), uint16 DN
    shape: tuple  # (H, W, Bv, Bs)
    vnir_bands: tuple  # (kept indices, wavelengths nm, fwhm nm, good flags)
    swir_bands: tuple  # same, SWIR bands ≤ the last good VNIR band already dropped
    scales: tuple  # (vmin, vmax, smin, smax): reflectance = min + DN · (max − min) / 65535
    top: float  # nm, the last good VNIR wavelength (SWIR bands at or below it are dropped)
    epsg: int
    gt: tuple


def _read_detectors(rg, path: str) -> _Detectors:
    """The VNIR and SWIR cubes, their kept bands (overlap resolved for VNIR), scales and geocoding."""
    with QuietGdal():
        vnir, (H, Bv, W) = _cube(rg, "VNIR_Cube", path)
        swir, (Hs, Bs, Ws) = _cube(rg, "SWIR_Cube", path)
        if (Hs, Ws) != (H, W):
            raise InputImageError(f"The VNIR ({H}×{W}) and SWIR ({Hs}×{Ws}) cubes of '{path}' differ in size",
                                  "Give a PRISMA L2D product as delivered")
        kv, wv, fv, gv = _bands(rg, path, "Vnir", Bv)
        ks, ws, fs, gs = _bands(rg, path, "Swir", Bs)
        vmin, vmax = _attr(rg, "L2ScaleVnirMin", path, "scalar"), _attr(rg, "L2ScaleVnirMax", path, "scalar")
        smin, smax = _attr(rg, "L2ScaleSwirMin", path, "scalar"), _attr(rg, "L2ScaleSwirMax", path, "scalar")
        epsg = int(_attr(rg, "Epsg_Code", path, "scalar"))
        gt = _geotransform(rg, path, W, H)
    top = wv[gv].max() if gv.any() else (wv.max() if wv.size else 0.0)
    s_keep = ws > top  # overlap: keep VNIR there
    ks, ws, fs, gs = ks[s_keep], ws[s_keep], fs[s_keep], gs[s_keep]
    return _Detectors(vnir, swir, (H, W, Bv, Bs), (kv, wv, fv, gv), (ks, ws, fs, gs),
                      (vmin, vmax, smin, smax), top, epsg, gt)


def _wavelength_order(wl: np.ndarray) -> tuple:
    """(order, pos): the band indices sorted by wavelength, and each band's 0-based output position."""
    order = np.argsort(wl, kind="stable")
    pos = np.empty(wl.size, dtype=np.int64)
    pos[order] = np.arange(wl.size)
    return order, pos


def _spatial_ref(epsg: int, path: str):
    """The osr.SpatialReference of the product's Epsg_Code."""
    srs = osr.SpatialReference()
    if srs.ImportFromEPSG(epsg) != 0:
        raise InputImageError(f"The Epsg_Code {epsg} of '{path}' is not a known EPSG code",
                              "Give a PRISMA L2D product as delivered")
    return srs


def _reflectance_rows(d: _Detectors, r0: int, h: int, path: str) -> np.ndarray:
    """Rows r0 … r0+h−1 of both cubes' kept bands as reflectance, (VNIR + SWIR bands, h, W) float32,
    −9999 where a pixel's DN is 0 in every kept band (padding outside the swath)."""
    W, Bv, Bs = d.shape[1:]
    vmin, vmax, smin, smax = d.scales
    parts = []
    pad = np.ones((h, W), dtype=bool)
    for arr, n, keep, lo, hi, det in ((d.vnir, Bv, d.vnir_bands[0], vmin, vmax, "VNIR"),
                                      (d.swir, Bs, d.swir_bands[0], smin, smax, "SWIR")):
        with QuietGdal() as q:
            raw = arr.ReadAsArray(array_start_idx=[r0, 0, 0], count=[h, n, W])
        if raw is None:
            raise InputImageError(f"Reading rows {r0}–{r0 + h - 1} of the {det} cube of '{path}' failed "
                                  f"({q.last})", "Download the product again (the file is incomplete)")
        dn = np.transpose(raw[:, keep, :], (1, 0, 2))  # (bands, h, W)
        del raw
        pad &= ~(dn != 0).any(axis=0)
        parts.append((lo + dn.astype(np.float32) * np.float32((hi - lo) / DN_MAX)).astype(np.float32))
    cube = np.concatenate(parts, axis=0)
    del parts
    cube[:, pad] = FILL
    return cube


def _write_reflectance(d: _Detectors, wl: np.ndarray, fw: np.ndarray, good: np.ndarray, path: str,
                       out: Path) -> None:
    """``out``: float32 GeoTIFF (H × W × kept bands, increasing wavelength in nm, nodata −9999),
    written a block of rows at a time so memory stays within ~MEMORY_MB."""
    H, W, Bv, Bs = d.shape
    order, pos = _wavelength_order(wl)
    srs = _spatial_ref(d.epsg, path)  # an unknown code fails before the output is opened
    rows = max(1, int(MEMORY_MB * 2**20 // (W * (Bv + Bs) * 10)))
    with atomic_path(out) as tmp:
        dst = gdal.GetDriverByName("GTiff").Create(tmp, W, H, int(wl.size), gdal.GDT_Float32,
                                                   ["TILED=YES", "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"])
        if dst is None:
            raise InputImageError(f"Cannot write '{out}'", "Set URDM_CACHE_DIR to a writable folder with space")
        dst.SetGeoTransform(d.gt)
        dst.SetProjection(srs.ExportToWkt())
        for r0 in range(0, H, rows):
            cube = _reflectance_rows(d, r0, min(rows, H - r0), path)
            for j in range(cube.shape[0]):
                dst.GetRasterBand(int(pos[j]) + 1).WriteArray(cube[j], 0, r0)
        for j in range(wl.size):
            b = dst.GetRasterBand(int(pos[j]) + 1)
            b.SetNoDataValue(FILL)
            b.SetDescription(f"{wl[j]:.2f} nm")
        dst.SetMetadata(envi_metadata(wl[order], fw[order] if np.all(fw > 0) else None, good[order]), "ENVI")
        dst = None


def build_prisma(loc: Location, source: str) -> Product:
    """The :class:`Product` of a PRISMA L2D .he5 (joined float32 GeoTIFF in the cache)."""
    if gdal.GetDriverByName("HDF5") is None:
        raise InputImageError("This GDAL has no HDF5 driver, which PRISMA .he5 files need",
                              "Install GDAL with HDF5 support (QGIS from OSGeo4W or a distribution's "
                              "gdal/libgdal-hdf5 package has it)")
    folder, done = cached_product(loc.key_files, "prisma", source)
    if done is not None:
        return done
    path, ds, rg = open_main_group(loc, folder, "PRISMA", "HDF5",
                                   "Download the product again (the file is incomplete or not HDF5)")
    d = _read_detectors(rg, path)
    (kv, wv, fv, gv), (ks, ws, fs, gs) = d.vnir_bands, d.swir_bands
    wl = np.concatenate([wv, ws])
    if wl.size == 0:
        raise InputImageError(f"'{path}' lists no band with a wavelength above 0", "Give a PRISMA L2D product as delivered")
    fw = np.concatenate([fv, fs])
    good = np.concatenate([gv, gs])
    out = folder / "reflectance.tif"
    _write_reflectance(d, wl, fw, good, path, out)
    desc = (f"PRISMA L2D '{loc.main}': {wl.size} bands {wl.min():.0f}–{wl.max():.0f} nm ({kv.size} VNIR + "
            f"{ks.size} SWIR; SWIR bands ≤ {d.top:.0f} nm dropped for the VNIR ones; {int((~good).sum())} flagged bad), "
            f"EPSG:{d.epsg}")
    write_done(folder, {"sensor": "PRISMA L2D", "path": out.name, "quality_mask_path": "", "description": desc,
                        "source": source})
    if loc.zip_path:  # the unpacked copy served only to build the derived file
        del ds, rg, d  # close the file before removing it
        with contextlib.suppress(OSError):
            Path(path).unlink()
    return Product("PRISMA L2D", source, str(out), "", desc)
