"""Background-safe preparation of a finished run for display (GDAL + numpy, no QGIS).

:func:`prepare_run` writes the dominant-material raster ``dominant.tif`` next to
``run.json`` (from the abundance files, block by block, via a temporary file) and records it
and the display ranges of the residual and uncertainty maps in run.json (rewritten
atomically through :class:`core.io.manifest.RunManifest`). It may run in a worker thread.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional

import numpy as np

from ..core.errors import Cancelled, OutputError
from .runs import read_manifest, resolve_run_file, write_manifest

DOMINANT_FILE = "dominant.tif"
DOMINANT_NODATA = 255


def raster_percentile(path: str, q: float = 98.0, max_values: int = 1_000_000) -> Optional[float]:
    """``q``-th percentile of a single-band float raster's valid values (strided sample)."""
    from osgeo import gdal

    ds = gdal.Open(path)
    if ds is None:
        return None
    band = ds.GetRasterBand(1)
    nd = band.GetNoDataValue()
    step = max(1, int(np.sqrt(ds.RasterXSize * ds.RasterYSize / max_values)))
    vals = []
    rows = max(1, 4_000_000 // max(1, ds.RasterXSize))
    for r0 in range(0, ds.RasterYSize, rows):
        arr = band.ReadAsArray(0, r0, ds.RasterXSize, min(rows, ds.RasterYSize - r0))
        if arr is None:
            return None
        arr = arr[(-r0) % step::step, ::step].ravel()
        ok = np.isfinite(arr)
        if nd is not None:
            ok &= arr != nd
        vals.append(arr[ok])
    v = np.concatenate(vals) if vals else np.empty(0)
    if v.size == 0:
        return None
    return float(np.percentile(v, q))


def display_upper(value: float) -> float:
    """``value`` rounded up to two significant digits (0.105234 → 0.11): a display maximum a
    legend can print as it is."""
    if not value or not np.isfinite(value) or value <= 0:
        return 1.0
    step = 10.0 ** (np.floor(np.log10(value)) - 1)
    return float(f"{np.ceil(value / step - 1e-9) * step:.12g}")


def _abundance_sources(run_dir: str, manifest: dict) -> tuple:
    """(endmembers of the manifest, their abundance rasters opened with GDAL), M < 255 of each."""
    from osgeo import gdal

    ems = manifest.get("endmembers") or []
    if not ems:
        raise OutputError(f"The run in {run_dir} lists no endmembers", "Run the unmixing again")
    if len(ems) >= DOMINANT_NODATA:
        raise OutputError(f"{len(ems)} endmembers are too many for a dominant-material map",
                          "Use fewer than 255 endmembers")
    srcs = []
    for em in ems:
        ds = gdal.Open(resolve_run_file(run_dir, em["file"]))
        if ds is None:
            raise OutputError(f"Cannot open the abundance raster {em['file']} in {run_dir}",
                              "Check that the run folder is complete")
        srcs.append(ds)
    return ems, srcs


def _refuse_foreign_dominant(run_dir: str, final: str) -> None:
    """Raise when ``dominant.tif`` or its .aux.xml exists in the run folder but this tool did not write it."""
    from ..core.io.output_policy import is_tool_file

    for p in (final, final + ".aux.xml"):
        if os.path.lexists(p) and not is_tool_file(p):
            raise OutputError(f"The run folder {run_dir} holds a file '{os.path.basename(p)}' that this tool did "
                              "not write; it is not replaced", "Move that file out of the run folder")


def _create_dominant(tmp: str, final: str, like, ems: list):
    """An empty uint8 GeoTIFF at ``tmp`` on the grid of ``like`` (W × H × 1, nodata 255) whose
    attribute table names class i after endmember i."""
    from osgeo import gdal

    from ..core.io.output_policy import GEOTIFF_MARK

    out = gdal.GetDriverByName("GTiff").Create(tmp, like.RasterXSize, like.RasterYSize, 1, gdal.GDT_Byte,
                                              ["COMPRESS=DEFLATE", "TILED=YES"])
    if out is None:
        raise OutputError(f"Cannot write {final} ({gdal.GetLastErrorMsg()})",
                          "Check that the output folder is writable and has free space")
    out.SetMetadataItem(GEOTIFF_MARK, "dominant")
    out.SetGeoTransform(like.GetGeoTransform())
    out.SetProjection(like.GetProjection())
    ob = out.GetRasterBand(1)
    ob.SetNoDataValue(DOMINANT_NODATA)
    ob.SetDescription("dominant material")
    rat = gdal.RasterAttributeTable()
    rat.CreateColumn("value", gdal.GFT_Integer, gdal.GFU_MinMax)
    rat.CreateColumn("name", gdal.GFT_String, gdal.GFU_Name)
    for i, em in enumerate(ems):
        rat.SetValueAsInt(i, 0, i)
        rat.SetValueAsString(i, 1, str(em["name"]))
    ob.SetDefaultRAT(rat)
    return out


def _dominant_block(srcs: list, r0: int, n: int, W: int) -> np.ndarray:
    """Rows r0 … r0+n−1: (n, W) uint8 index of the largest abundance, 255 where any is nodata or not finite."""
    stack = []
    valid = np.ones((n, W), bool)
    for ds in srcs:
        b = ds.GetRasterBand(1)
        a = b.ReadAsArray(0, r0, W, n)
        if a is None:
            raise OutputError(f"Reading {ds.GetDescription()} failed", "Check the run folder")
        nd = b.GetNoDataValue()
        valid &= np.isfinite(a)
        if nd is not None:
            valid &= a != nd
        stack.append(a)
    idx = np.argmax(np.stack(stack), axis=0).astype(np.uint8)
    idx[~valid] = DOMINANT_NODATA
    return idx


def _write_dominant_rows(ob, srcs: list, final: str, cancel) -> None:
    """Fill band ``ob`` block by block (~2 M abundance values a block) from the abundance rasters."""
    from osgeo import gdal

    W, H = srcs[0].RasterXSize, srcs[0].RasterYSize
    rows = max(1, 2_000_000 // max(1, W * len(srcs)))
    for r0 in range(0, H, rows):
        if cancel is not None and cancel():
            raise Cancelled()
        idx = _dominant_block(srcs, r0, min(rows, H - r0), W)
        if ob.WriteArray(idx, 0, r0) != 0:
            raise OutputError(f"Writing {final} failed ({gdal.GetLastErrorMsg()})",
                              "Check free disk space")
    ob.FlushCache()


def write_dominant(run_dir: str, manifest: dict, cancel=None) -> str:
    """Write ``dominant.tif`` (uint8: index of the largest abundance, 255 = nodata).

    Read block by block from the abundance files; written to a temporary file in the run
    folder and renamed into place, so a failure leaves nothing half-written. Returns the
    path. Raises :class:`core.errors.OutputError` when the abundance files are unreadable.
    """
    ems, srcs = _abundance_sources(run_dir, manifest)
    final = os.path.join(run_dir, DOMINANT_FILE)
    _refuse_foreign_dominant(run_dir, final)
    fd, tmp = tempfile.mkstemp(prefix=".dominant.", suffix=".tif", dir=run_dir)
    os.close(fd)
    out = None
    try:
        out = _create_dominant(tmp, final, srcs[0], ems)
        _write_dominant_rows(out.GetRasterBand(1), srcs, final, cancel)
        out = None  # close before renaming
        if os.path.exists(tmp + ".aux.xml"):  # the attribute table (names) lives in the .aux.xml
            os.replace(tmp + ".aux.xml", final + ".aux.xml")
        os.replace(tmp, final)
    except BaseException:
        out = None
        for p in (tmp, tmp + ".aux.xml"):
            try:
                os.unlink(p)
            except OSError:
                pass
        raise
    return final


def prepare_run(run_json: str, dominant: bool = True, cancel=None) -> dict:
    """Background-safe preparation before :func:`add_run_to_map`; returns the manifest.

    Writes the dominant-material raster (if missing and ``dominant``), computes the display
    maxima of the residual and uncertainty maps (their 98th percentiles, rounded up to two
    significant digits by :func:`display_upper`) and records both in
    run.json (``extra_files.dominant``, ``display``).
    """
    run_json = os.path.abspath(run_json)
    run_dir = os.path.dirname(run_json)
    manifest = read_manifest(run_json)
    from ..core.io.run_rasters import check_run_rasters

    try:
        check_run_rasters(run_dir, manifest)  # nothing derived from files that are not the run's
    except OutputError as exc:
        from .runs import RunFileError

        raise RunFileError(exc.problem, exc.fix) from None
    extra = manifest.setdefault("extra_files", {})
    changed = False
    if dominant and not (extra.get("dominant") and os.path.isfile(resolve_run_file(run_dir, extra["dominant"]))):
        from ..core.io.gdal_quiet import pam_enabled

        with pam_enabled():  # its class names live in dominant.tif.aux.xml
            write_dominant(run_dir, manifest, cancel=cancel)
        extra["dominant"] = DOMINANT_FILE
        changed = True
    display = manifest.setdefault("display", {})
    if "residual_max" not in display and manifest.get("residual_file"):
        p = raster_percentile(resolve_run_file(run_dir, manifest["residual_file"]))
        display["residual_max"] = display_upper(p) if p is not None and p > 0 else 1.0
        changed = True
    stds = extra.get("std") or []
    if stds and "std_max" not in display:
        vals = [raster_percentile(resolve_run_file(run_dir, s["file"])) for s in stds]
        vals = [v for v in vals if v is not None and v > 0]
        display["std_max"] = display_upper(max(vals)) if vals else 1.0
        changed = True
    if changed:
        write_manifest(run_json, manifest)
    return manifest
