#!/usr/bin/env python3
"""Write the georeferenced demo scene: a hyperspectral GeoTIFF, its endmember library and
the true abundances.

    python scripts/make_demo_scene.py [OUT_DIR]       (default: demo_output/)

The scene is ``core.synthetic.make_scene`` with ``core.synthetic.DEMO_SEED``: 120×120
pixels, 150 bands from 400 to 2500 nm (wavelengths in the ENVI metadata domain, per band
and in the band descriptions), EPSG:32633 with 30 m pixels, reflectance float32 with a
nodata (−9999) border 3 pixels wide. Files: ``demo_scene.tif``, ``demo_library.csv``,
``demo_truth.tif`` (one band per endmember, named).

Tests import :func:`write_scene` to make small rasters of their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEMO_NAMES = ["vegetation", "soil", "water", "asphalt", "rock"]
NODATA = -9999.0
EPSG = 32633
ORIGIN = (500000.0, 5200000.0)  # UTM zone 33N, somewhere in central Europe
PIXEL = 30.0


def write_scene(out_dir, height: int = 120, width: int = 120, n_bands: int = 150, n_endmembers: int = 5,
                seed: int | None = None, snr_db: float = 30.0, border: int = 3, names=None,
                stem: str = "demo", epsg: int = EPSG) -> dict:
    """Write ``<stem>_scene.tif``, ``<stem>_library.csv`` and ``<stem>_truth.tif``.

    Returns a dict with the paths (``image``, ``library``, ``truth``), the ``names``, the
    ``geotransform`` and ``wkt``.
    """
    from osgeo import gdal, osr

    from urdm_plugin.core import synthetic
    from urdm_plugin.core.io.library import SpectralLibrary, write_library_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = synthetic.DEMO_SEED if seed is None else int(seed)
    scene = synthetic.make_scene(height=height, width=width, n_endmembers=n_endmembers, snr_db=snr_db,
                                 seed=seed, kind="mixed", n_bands=n_bands)
    names = list(names or (DEMO_NAMES if n_endmembers <= len(DEMO_NAMES) else scene.names))[:n_endmembers]
    if len(names) < n_endmembers:
        names += [f"material_{i + 1}" for i in range(len(names), n_endmembers)]
    wl = np.asarray(scene.wavelengths_nm, dtype=float)
    Y = scene.Y.astype(np.float32)
    if border > 0:
        Y[:, :border, :] = NODATA
        Y[:, -border:, :] = NODATA
        Y[:, :, :border] = NODATA
        Y[:, :, -border:] = NODATA
    gt = (ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(int(epsg))
    wkt = srs.ExportToWkt()

    image = out / f"{stem}_scene.tif"
    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(str(image), width, height, n_bands, gdal.GDT_Float32, ["INTERLEAVE=BAND", "TILED=YES"])
    if ds is None:
        raise SystemExit(f"cannot create {image}: {gdal.GetLastErrorMsg()}")
    ds.SetGeoTransform(gt)
    ds.SetProjection(wkt)
    ds.SetMetadata({"wavelength": "{" + ", ".join(f"{w:.3f}" for w in wl) + "}",
                    "wavelength_units": "Nanometers"}, "ENVI")
    ds.SetMetadataItem("wavelength_units", "nm")
    for b in range(n_bands):
        band = ds.GetRasterBand(b + 1)
        band.SetNoDataValue(NODATA)
        band.SetDescription(f"{wl[b]:.2f} nm")
        band.SetMetadataItem("wavelength", f"{wl[b]:.3f}")
        band.WriteArray(Y[b])
    ds.FlushCache()
    ds = None

    library = out / f"{stem}_library.csv"
    write_library_csv(library, SpectralLibrary(names, wl, np.asarray(scene.E, dtype=float)))

    truth = out / f"{stem}_truth.tif"
    ds = drv.Create(str(truth), width, height, n_endmembers, gdal.GDT_Float32)
    ds.SetGeoTransform(gt)
    ds.SetProjection(wkt)
    for k in range(n_endmembers):
        band = ds.GetRasterBand(k + 1)
        band.SetDescription(names[k])
        a = scene.A[k].astype(np.float32)
        if border > 0:
            a = a.copy()
            a[:border, :] = NODATA
            a[-border:, :] = NODATA
            a[:, :border] = NODATA
            a[:, -border:] = NODATA
        band.SetNoDataValue(NODATA)
        band.WriteArray(a)
    ds = None
    return {"image": str(image), "library": str(library), "truth": str(truth), "names": names,
            "geotransform": gt, "wkt": wkt, "scene": scene}


def quicklook(run_dir, truth_path, png_path) -> str:
    """PNG with every abundance map side by side (viridis, 0–1, titled with the endmember
    name) above the true abundances; returns the path."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from osgeo import gdal

    run_dir = Path(run_dir)
    m = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    ems = m["endmembers"]
    truth = gdal.Open(str(truth_path))
    truth_names = [truth.GetRasterBand(i + 1).GetDescription() for i in range(truth.RasterCount)]
    P = len(ems)
    fig, axes = plt.subplots(2, P, figsize=(2.6 * P, 5.6), squeeze=False, constrained_layout=True)
    im = None
    for k, em in enumerate(ems):
        a = gdal.Open(str(run_dir / em["file"])).ReadAsArray().astype(float)
        a[a == NODATA] = np.nan
        im = axes[0, k].imshow(a, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        axes[0, k].set_title(em["name"])
        if em["name"] in truth_names:
            t = truth.GetRasterBand(truth_names.index(em["name"]) + 1).ReadAsArray().astype(float)
            t[t == NODATA] = np.nan
            axes[1, k].imshow(t, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            rmse = float(np.sqrt(np.nanmean((a - t) ** 2)))
            axes[1, k].set_title(f"truth (RMSE {rmse:.3f})", fontsize=9)
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel(f"{m['method']} estimate")
    axes[1, 0].set_ylabel("truth")
    fig.colorbar(im, ax=axes, shrink=0.8, label="abundance")
    fig.suptitle(f"URDM demo: {m['method']} in {m.get('seconds', 0):.1f} s")
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return str(png_path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", nargs="?", default=str(ROOT / "demo_output"))
    p.add_argument("--size", type=int, default=120)
    p.add_argument("--bands", type=int, default=150)
    p.add_argument("--quicklook", nargs=3, metavar=("RUN_DIR", "TRUTH", "PNG"),
                   help="only write the quicklook PNG of a finished run")
    a = p.parse_args(argv)
    if a.quicklook:
        print(quicklook(*a.quicklook))
        return 0
    info = write_scene(a.out_dir, height=a.size, width=a.size, n_bands=a.bands)
    print(f"image:   {info['image']}")
    print(f"library: {info['library']}")
    print(f"truth:   {info['truth']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
