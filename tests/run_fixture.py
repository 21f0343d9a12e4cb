"""A small finished run written by hand with GDAL, so the map-product tests do not depend
on the pipeline: an input image (int16 with a 1e-4 scale, wavelengths in band metadata,
UTM 33N, one nodata pixel), one float32 abundance GeoTIFF per endmember, the residual,
``endmembers_used.csv`` and ``run.json`` in the schema of docs/ARCHITECTURE.md.

``make_run(folder)`` returns a :class:`FixtureRun` holding the truth the tests compare
against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from urdm_plugin.core.io.manifest import RunManifest

NODATA_OUT = -9999.0
IMAGE_NODATA = -32768
EPSG = 32633
ORIGIN = (500000.0, 4650000.0)  # upper-left corner, UTM 33N (central Italy)
PIXEL = 30.0
NAMES = ["Tree", "Soil", "Water"]
WAVELENGTHS = np.array([450.0, 500.0, 550.0, 600.0, 650.0, 700.0, 750.0, 800.0, 850.0, 900.0])
#: 1-based image bands the "run" used (band 4 was "dropped").
BANDS_USED = [1, 2, 3, 5, 6, 7, 8, 9, 10]
SCALE = 1e-4
#: Pixel (row, col) that is nodata in the input image and the outputs.
NODATA_PIXEL = (2, 3)


@dataclass
class FixtureRun:
    folder: Path
    run_json: Path
    image: Path
    width: int
    height: int
    geotransform: tuple
    E: np.ndarray  # (B_used, P) at the used bands
    A: np.ndarray  # (P, H, W) abundances written
    Y: np.ndarray  # (B_all, H, W) scaled image values (what a reader sees)
    wavelengths_used: np.ndarray
    names: list

    def pixel_center(self, row: int, col: int) -> tuple:
        gt = self.geotransform
        return gt[0] + (col + 0.5) * gt[1], gt[3] + (row + 0.5) * gt[5]


def _srs_wkt(epsg: int) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def _write_float(path: Path, array: np.ndarray, gt: tuple, wkt: str, name: str) -> None:
    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(str(path), array.shape[1], array.shape[0], 1, gdal.GDT_Float32)
    ds.SetGeoTransform(gt)
    ds.SetProjection(wkt)
    b = ds.GetRasterBand(1)
    b.SetNoDataValue(NODATA_OUT)
    b.SetDescription(name)
    b.WriteArray(array.astype(np.float32))
    b.ComputeStatistics(False)
    ds = None


def _library_csv(path: Path, wl: np.ndarray, E: np.ndarray, names: list) -> None:
    lines = ["wavelength_nm," + ",".join(names)]
    for i, w in enumerate(wl):
        lines.append(f"{w:.10g}," + ",".join(f"{v:.10g}" for v in E[i]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _abundances(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    f1 = np.exp(-(((xx - 0.25 * w) ** 2 + (yy - 0.3 * h) ** 2) / (0.18 * w * w)))
    f2 = 0.4 + 0.6 * xx / (w - 1)
    f3 = 0.2 + 0.8 * (yy > 0.6 * h) * (xx > 0.5 * w)
    A = np.stack([f1 + 0.05, f2 * 0.6, f3])
    return A / A.sum(axis=0, keepdims=True)


def make_run(folder, width: int = 24, height: int = 18, method: str = "fcls", seed: int = 0,
             version: str = "0.1.0") -> FixtureRun:
    """Write a finished run into ``folder`` (created) and return what was written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wkt = _srs_wkt(EPSG)
    gt = (ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL)
    B = len(WAVELENGTHS)
    t = (WAVELENGTHS - 450.0) / 450.0
    E_all = np.stack([
        0.05 + 0.45 * (t > 0.5) + 0.05 * t,        # vegetation-like red edge
        0.15 + 0.25 * t,                           # soil: rising
        0.08 * (1.0 - t) + 0.01,                   # water: dark, falling
    ], axis=1)
    A = _abundances(height, width)
    Y_true = np.einsum("bp,phw->bhw", E_all, A)
    Y = Y_true + rng.normal(0.0, 0.002, size=Y_true.shape)
    raw = np.round(Y / SCALE).astype(np.int16)
    r0, c0 = NODATA_PIXEL
    raw[:, r0, c0] = IMAGE_NODATA
    Y_read = raw.astype(np.float64) * SCALE

    image = folder / "scene.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(image), width, height, B, gdal.GDT_Int16)
    ds.SetGeoTransform(gt)
    ds.SetProjection(wkt)
    for i in range(B):
        b = ds.GetRasterBand(i + 1)
        b.WriteArray(raw[i])
        b.SetNoDataValue(IMAGE_NODATA)
        b.SetScale(SCALE)
        b.SetOffset(0.0)
        b.SetMetadataItem("wavelength", f"{WAVELENGTHS[i]:g}")
        b.SetMetadataItem("wavelength_units", "nm")
        b.SetDescription(f"{WAVELENGTHS[i]:g} nm")
    ds = None

    out = folder / "run"
    out.mkdir(exist_ok=True)
    idx = np.array(BANDS_USED) - 1
    E = E_all[idx]
    A_out = A.astype(np.float32).copy()
    A_out[:, r0, c0] = NODATA_OUT
    entries = []
    for p, name in enumerate(NAMES):
        fname = f"{name}.tif"
        _write_float(out / fname, A_out[p], gt, wkt, name)
        entries.append({"name": name, "file": fname})
    res = np.sqrt(np.mean((Y_read[idx] - np.einsum("bp,phw->bhw", E, A)) ** 2, axis=0))
    res[r0, c0] = NODATA_OUT
    _write_float(out / "residual_rmse.tif", res, gt, wkt, "residual_rmse")
    _library_csv(out / "endmembers_used.csv", WAVELENGTHS[idx], E, NAMES)
    manifest = RunManifest(
        method=method,
        inputs={
            "image": str(image.resolve()),
            "library": str((folder / "library.csv").resolve()),
            "bands_used": list(BANDS_USED),
            "scale": [SCALE] * len(BANDS_USED),
            "offset": [0.0] * len(BANDS_USED),
            "wavelengths_nm": [float(w) for w in WAVELENGTHS[idx]],
            "unit": "nm",
            "window": None,
            "mask": None,
        },
        endmembers=entries,
        residual_file="residual_rmse.tif",
        extra_files={"endmembers_used": "endmembers_used.csv"},
        parameters={"lam": 0.3, "options": {"method": method, "seed": 0}},
        version=version,
        seconds=0.42,
        created="2025-03-14T09:26:53+00:00",
    )
    run_json = out / "run.json"
    manifest.write(run_json)
    return FixtureRun(folder=out, run_json=run_json, image=image, width=width, height=height,
                      geotransform=gt, E=E, A=A.astype(np.float32), Y=Y_read,
                      wavelengths_used=WAVELENGTHS[idx], names=list(NAMES))


def run_real_pipeline(fixture: FixtureRun, out_dir, method: str = "fcls"):
    """Unmix the fixture's input image with the real pipeline (library = the fixture's
    endmembers at every image wavelength). Returns the pipeline's RunResult."""
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster

    t = (WAVELENGTHS - 450.0) / 450.0
    E_all = np.stack([0.05 + 0.45 * (t > 0.5) + 0.05 * t, 0.15 + 0.25 * t, 0.08 * (1.0 - t) + 0.01], axis=1)
    lib = Path(out_dir).parent / "library.csv"
    lib.parent.mkdir(parents=True, exist_ok=True)
    _library_csv(lib, WAVELENGTHS, E_all, NAMES)
    return unmix_raster(str(fixture.image), str(lib), str(out_dir),
                        UnmixOptions(method=method, mask_water_bands=False))
