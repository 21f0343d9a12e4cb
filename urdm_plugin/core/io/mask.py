"""Processing masks: a raster on the image grid or polygons rasterised onto it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputImageError
from .gdal_quiet import errors_as_values
from .image import shifted_geotransform


@errors_as_values()
def load_mask(mask_path: str, info, extent: tuple[int, int, int, int]) -> np.ndarray:
    """Mask (h, w) bool over ``extent`` of the image grid: True = process the pixel.

    A GDAL raster must have the image's size (or exactly the extent's size); its first band
    non-zero (and not its nodata) marks pixels to process. An OGR vector is rasterised
    (``gdal.Rasterize``, all touched = False) onto the image grid; pixels whose centre falls
    inside a polygon are processed. Raises :class:`InputImageError` if unusable.
    """
    from osgeo import gdal

    c0, r0, w, h = extent
    path = str(mask_path)
    if not Path(path).exists():
        raise InputImageError(f"Mask file not found: {path}", "Check the path or leave the mask empty")
    ds = gdal.OpenEx(path, gdal.OF_RASTER)
    if ds is not None and ds.RasterCount >= 1:
        band = ds.GetRasterBand(1)
        if (ds.RasterXSize, ds.RasterYSize) == (info.width, info.height):
            arr = band.ReadAsArray(c0, r0, w, h)
        elif (ds.RasterXSize, ds.RasterYSize) == (w, h):
            arr = band.ReadAsArray()
        else:
            raise InputImageError(
                f"Mask raster {path} is {ds.RasterXSize}×{ds.RasterYSize} pixels but the image is "
                f"{info.width}×{info.height}",
                "Use a mask on the image's pixel grid, or a vector (polygon) mask")
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
    sub_gt = shifted_geotransform(gt, c0, r0)
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
