"""A finished run's rasters checked before anything is drawn or derived from them (no QGIS).

A run.json can be edited, and a run folder's files replaced (a map re-projected by hand, a
0–255 PNG put in a map's place). The map sheet and the dominant-material map trust the files
only after :func:`check_run_rasters`: every abundance, residual and uncertainty raster named
in run.json is a single-band float32 GeoTIFF on the grid of the first abundance map (size,
geotransform, CRS). Otherwise one :class:`OutputError` names the file and the difference.
"""

from __future__ import annotations

import os

from ..errors import OutputError
from .gdal_quiet import QuietGdal

_FIX = "Run the unmixing again, or put the run's own files back"


def _listed(manifest: dict) -> list:
    """[(what, file name)] of the float rasters run.json names, abundance maps first."""
    out = [("abundance map", e.get("file")) for e in manifest.get("endmembers") or []]
    if manifest.get("residual_file"):
        out.append(("residual map", manifest["residual_file"]))
    for s in (manifest.get("extra_files") or {}).get("std") or []:
        if isinstance(s, dict):
            out.append(("uncertainty map", s.get("file")))
    return out


def _grid(path: str, what: str, name: str) -> tuple:
    from osgeo import gdal, osr

    with QuietGdal():
        ds = gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_READONLY)
    if ds is None:
        raise OutputError(f"The {what} '{name}' named in run.json cannot be opened as a raster", _FIX)
    driver = ds.GetDriver().ShortName
    band = ds.GetRasterBand(1)
    if driver != "GTiff" or ds.RasterCount != 1 or band.DataType != gdal.GDT_Float32:
        kind = f"a {driver} file with {ds.RasterCount} band(s) of {gdal.GetDataTypeName(band.DataType)}"
        raise OutputError(f"The {what} '{name}' named in run.json is {kind}, not one of the run's float32 "
                          "GeoTIFFs", _FIX)
    srs = None
    if ds.GetProjection():
        srs = osr.SpatialReference()
        srs.ImportFromWkt(ds.GetProjection())
    return (ds.RasterXSize, ds.RasterYSize), tuple(round(v, 9) for v in ds.GetGeoTransform()), srs


def check_run_rasters(run_dir: str, manifest: dict) -> None:
    """Refuse (OutputError naming the file) a run whose rasters are not the run's own grid."""
    from .manifest import run_file_path

    first = None
    for what, name in _listed(manifest):
        path = run_file_path(run_dir, str(name))
        if not os.path.isfile(path):
            raise OutputError(f"The {what} '{name}' named in run.json is missing", _FIX)
        size, gt, srs = _grid(path, what, str(name))
        if first is None:
            first = (name, size, gt, srs)
            continue
        fname, fsize, fgt, fsrs = first
        if (srs is None) != (fsrs is None) or (srs is not None and not srs.IsSame(fsrs)):
            raise OutputError(f"The {what} '{name}' is in another coordinate reference system than '{fname}' "
                              "(re-projected?); the maps of one run share one", _FIX)
        if size != fsize or gt != fgt:
            raise OutputError(f"The {what} '{name}' is not on the grid of '{fname}' (size {size[0]}×{size[1]} "
                              f"vs {fsize[0]}×{fsize[1]}, or another origin or pixel size)", _FIX)
