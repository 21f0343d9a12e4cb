"""Processing masks: a raster on the image grid or polygons rasterised onto it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputImageError
from ..window import Window
from .gdal_quiet import QuietGdal, errors_as_values
from .image import shifted_geotransform

#: Geotransforms equal to this share of a pixel are the same grid.
GRID_TOLERANCE = 1e-6


@errors_as_values()
def load_mask(mask_path: str, info, extent: Window) -> np.ndarray:
    """Mask (h, w) bool over ``extent`` (a :class:`~urdm_plugin.core.window.Window`) of the image
    grid: True = process the pixel.

    A GDAL raster's first band non-zero (and not its nodata) marks pixels to process. On the
    image's grid (same size and geotransform, or either without georeferencing and the
    image's or the extent's size) it is read as it is; on another grid it is resampled onto
    the image grid by georeference (``gdal.Warp``, nearest), pixels it does not cover left
    out — and refused when it covers none of the extent. An OGR vector is rasterised
    (``gdal.Rasterize``, all touched = False) onto the image grid; pixels whose centre falls
    inside a polygon are processed. Raises :class:`InputImageError` if unusable.
    """
    from osgeo import gdal

    w, h = extent.width, extent.height
    path = str(mask_path)
    if not Path(path).exists():
        raise InputImageError(f"Mask file not found: {path}", "Check the path or leave the mask empty")
    with QuietGdal():
        ds = gdal.OpenEx(path, gdal.OF_RASTER)
    if ds is not None and ds.RasterCount >= 1:
        band = ds.GetRasterBand(1)
        size = (ds.RasterXSize, ds.RasterYSize)
        mask_gt = ds.GetGeoTransform(can_return_null=True)
        image_gt = getattr(info, "georeferenced", True) and info.geotransform
        if mask_gt is not None and image_gt:
            if size == (info.width, info.height) and _same_grid(mask_gt, image_gt, ds.GetProjection(), info.crs_wkt):
                arr = band.ReadAsArray(*extent.xywh())
            else:
                return _warped(ds, path, info, extent)
        elif size == (info.width, info.height):
            arr = band.ReadAsArray(*extent.xywh())
        elif size == (w, h):
            arr = band.ReadAsArray()
        else:
            which = "the mask has" if mask_gt is None else "the image has"
            raise InputImageError(
                f"Mask raster {path} is {size[0]}×{size[1]} pixels but the image is {info.width}×{info.height}, "
                f"and {which} no georeferencing to place it by",
                "Use a mask on the image's pixel grid, a georeferenced mask, or a vector (polygon) mask")
        if arr is None:
            raise InputImageError(f"Cannot read mask raster {path}", "Check that the file is a valid raster")
        m = arr != 0
        nd = band.GetNoDataValue()
        if nd is not None:
            m &= arr != nd
        return m
    vds = gdal.OpenEx(path, gdal.OF_VECTOR)
    if vds is None or vds.GetLayerCount() < 1:
        raise InputImageError(f"Mask {path} is neither a readable raster nor a vector file",
                              "Give a GeoTIFF mask or a polygon file (GeoPackage, Shapefile, GeoJSON)")
    gt = info.geotransform
    sub_gt = shifted_geotransform(gt, extent)
    mem = gdal.GetDriverByName("MEM").Create("", w, h, 1, gdal.GDT_Byte)
    mem.SetGeoTransform(sub_gt)
    if info.crs_wkt:
        mem.SetProjection(info.crs_wkt)
    mem.GetRasterBand(1).Fill(0)
    ok = gdal.Rasterize(mem, vds, burnValues=[1])  # 1 on success, 0 on failure
    if not ok:
        raise InputImageError(f"Cannot rasterise the vector mask {path}",
                              "Check that it holds polygons in a known coordinate system")
    return mem.GetRasterBand(1).ReadAsArray() != 0


def _same_grid(gt_a, gt_b, wkt_a: str, wkt_b: str) -> bool:
    """Same pixel grid: geotransforms equal to :data:`GRID_TOLERANCE` of a pixel and the
    same CRS (or one of them without a CRS)."""
    from osgeo import osr

    px = max(abs(gt_b[1]), abs(gt_b[5]), abs(gt_b[2]), abs(gt_b[4]), 1e-12)
    if any(abs(float(a) - float(b)) > GRID_TOLERANCE * px for a, b in zip(gt_a, gt_b)):
        return False
    if not wkt_a or not wkt_b:
        return True
    a, b = osr.SpatialReference(), osr.SpatialReference()
    a.ImportFromWkt(wkt_a)
    b.ImportFromWkt(wkt_b)
    return bool(a.IsSame(b))


def _warped(ds, path: str, info, extent) -> np.ndarray:
    """The mask raster ``ds`` resampled (nearest) onto ``extent`` of the image grid: True
    where it covers a pixel with a non-zero value that is not its nodata."""
    from osgeo import gdal

    dst = gdal.GetDriverByName("MEM").Create("", extent.width, extent.height, 1, gdal.GDT_Float64)
    dst.SetGeoTransform(shifted_geotransform(info.geotransform, extent))
    src_wkt = ds.GetProjection() or info.crs_wkt
    if info.crs_wkt:
        dst.SetProjection(info.crs_wkt)
    dst.GetRasterBand(1).SetNoDataValue(float("nan"))
    dst.GetRasterBand(1).Fill(float("nan"))  # NaN stays where the mask covers no pixel
    nd = ds.GetRasterBand(1).GetNoDataValue()
    with QuietGdal() as q:
        first = gdal.Translate("", ds, format="VRT", bandList=[1])  # the mask is its first band
        ok = first is not None and gdal.Warp(dst, first, resampleAlg="near", dstNodata=float("nan"),
                       srcNodata=nd, srcSRS=src_wkt or None, dstSRS=info.crs_wkt or src_wkt or None)
    if not ok:
        raise InputImageError(f"Cannot place the mask {path} on the image grid ({q.last or 'GDAL warp failed'})",
                              "Give the mask a coordinate system, or a mask on the image's pixel grid")
    arr = dst.GetRasterBand(1).ReadAsArray()
    covered = np.isfinite(arr)
    if not covered.any():
        raise InputImageError(f"The mask {path} does not overlap the image"
                              + (" window" if (extent.width, extent.height) != (info.width, info.height) else "")
                              + " (its georeferenced extent lies elsewhere)",
                              "Give a mask that covers the image (same coordinate system and area)")
    return covered & (np.nan_to_num(arr) != 0)
