"""A library with a hole: bands the library has no data for, bridged by interpolation or left out.

Issue #22's figure: an EnMAP-band scene — the 218 band centres and FWHM of a delivered L2A
METADATA.XML (``../shared/sensors/enmap_l2a_2020_qualification``), int16 with gain 1e-4 —
mixed from Jasper Ridge's four reference endmembers (real AVIRIS surface reflectance: low
signal in the 1400–1500 nm water-vapour tail), unmixed by FCLS with those endmembers but the
library cut between 1382 and 1511 nm (as libraries with absorption regions removed are).
Three runs through ``unmix_raster`` on the same file:

* ``complete library``: the endmembers with all their samples (the reference);
* ``hole bridged``: the old rule — the image bands at 1467–1499 nm take values interpolated
  across the 129-nm hole (``core.bands.library_covers`` replaced by "everything covered");
* ``hole left out``: the rule now — those bands are left out and named.

Abundance RMSE against the mixing abundances (valid pixels), the fit's relative residual
and the bands named. Prints a markdown table, writes ``bench_results/library_gap.json``.

    .venv/bin/python -m benchmarks.bench_library_gap [--profile quick|full]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.scenes import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
SENSORS = ROOT.parent / "shared" / "sensors" / "enmap_l2a_2020_qualification"
HOLE_NM = (1382.0, 1511.0)
SEED = 1_000_022


def _enmap_bands() -> tuple:
    from urdm_plugin.core.io.sensors.enmap import parse_metadata

    xml = next(SENSORS.glob("*-METADATA.XML"))
    md = parse_metadata(xml.read_bytes(), xml.name)
    order = np.argsort(md["wavelength"], kind="stable")
    return md["wavelength"][order], md["fwhm"][order]


def _scene(folder: Path, size: int, snr_db: float) -> tuple:
    """The int16 GeoTIFF (gain 1e-4), the complete and the holed library CSVs, A (P, H, W)."""
    from osgeo import gdal

    from urdm_plugin.core.bands import resample_spectra
    from urdm_plugin.core.io.library import SpectralLibrary, read_library, write_library_csv

    lib = read_library(SHARED_DATA / "jasper_ridge" / "jasper_ridge_endmembers.csv")
    wl, fwhm = _enmap_bands()
    E, _ = resample_spectra(lib.wavelengths_nm, lib.spectra, wl, fwhm)  # (B, P) at the EnMAP bands
    rng = np.random.default_rng(SEED)
    A = rng.dirichlet(np.full(E.shape[1], 0.6), size=(size, size)).transpose(2, 0, 1)
    Y = np.einsum("bp,phw->bhw", E, A)
    sigma = np.sqrt(np.mean(Y ** 2) / 10 ** (snr_db / 10))
    Y = Y + rng.normal(0, sigma, Y.shape)
    dn = np.clip(np.round(Y / 1e-4), 1, 32767).astype(np.int16)
    path = folder / "enmap_bands.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, wl.size, gdal.GDT_Int16)
    ds.SetGeoTransform((600000.0, 30.0, 0.0, 5300000.0, 0.0, -30.0))
    for b in range(wl.size):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(dn[b])
        band.SetScale(1e-4)
        band.SetNoDataValue(-32768)
        band.SetMetadataItem("wavelength", f"{wl[b]:.2f}")
        band.SetMetadataItem("fwhm", f"{fwhm[b]:.2f}")
        band.SetMetadataItem("wavelength_units", "nm")
    ds = None
    full = folder / "complete.csv"
    write_library_csv(full, lib)
    cut = (lib.wavelengths_nm > HOLE_NM[0]) & (lib.wavelengths_nm < HOLE_NM[1])
    holed = folder / "holed.csv"
    write_library_csv(holed, SpectralLibrary(list(lib.names), lib.wavelengths_nm[~cut], lib.spectra[~cut]))
    return path, full, holed, A, list(lib.names)


def _run(image, library, out: Path, A_true: np.ndarray, names: list) -> dict:
    from osgeo import gdal

    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster

    res = unmix_raster(image, library, out, UnmixOptions(method="fcls"))
    m = res.manifest
    A = np.stack([gdal.Open(str(out / e["file"])).ReadAsArray() for e in m["endmembers"]])
    order = [names.index(e["name"]) for e in m["endmembers"]]
    valid = A[0] != -9999
    err = A[:, valid] - A_true[order][:, valid]
    gap = [d for d in m["match"]["dropped"] if "library data" in d[2]]
    return {"abundance_rmse": float(np.sqrt(np.mean(err ** 2))), "bands_used": len(m["inputs"]["bands_used"]),
            "relative_residual": m["fit"]["relative_residual"], "fit_poor": m["fit"]["poor"],
            "bands_left_out_nm": [round(d[1], 1) for d in gap],
            "warnings": [w for w in m["warnings"] if "library has no data" in w or "fit far worse" in w]}


def run(profile: str = "quick") -> dict:
    from urdm_plugin.core import bands as band_rules

    if not SENSORS.is_dir() or not (SHARED_DATA / "jasper_ridge").is_dir():
        raise SystemExit("needs ../shared/sensors/enmap_l2a_2020_qualification and ../shared/data/jasper_ridge")
    size = 60 if profile == "quick" else 200
    rows = {}
    with tempfile.TemporaryDirectory(prefix="urdm-gap-") as tmp:
        folder = Path(tmp)
        image, full, holed, A, names = _scene(folder, size, snr_db=40.0)
        rows["complete library"] = _run(image, full, folder / "full", A, names)
        covers = band_rules.library_covers
        band_rules.library_covers = lambda lib, wl, fwhm=None: np.ones(np.shape(wl), dtype=bool)
        try:
            rows["hole bridged (old rule)"] = _run(image, holed, folder / "bridged", A, names)
        finally:
            band_rules.library_covers = covers
        rows["hole left out (rule now)"] = _run(image, holed, folder / "left_out", A, names)
    md = [f"### FCLS on an EnMAP-band scene ({size}×{size}, 218 bands, int16 × 1e-4, Jasper Ridge endmembers, "
          f"40 dB), library cut {HOLE_NM[0]:.0f}–{HOLE_NM[1]:.0f} nm", "",
          "| library | bands used | abundance RMSE | relative residual | bands left out (nm) |", "|---|---|---|---|---|"]
    for k, r in rows.items():
        md.append(f"| {k} | {r['bands_used']} | {r['abundance_rmse']:.4f} | {r['relative_residual']:.3f} | "
                  f"{', '.join(map(str, r['bands_left_out_nm'])) or '–'} |")
    out = {"name": "library_gap", "profile": profile, "size": size, "rows": rows, "markdown": "\n".join(md) + "\n",
           "json": "bench_results/library_gap.json"}
    (ROOT / "bench_results").mkdir(exist_ok=True)
    (ROOT / out["json"]).write_text(json.dumps(out, indent=1) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", choices=("quick", "full"))
    res = run(ap.parse_args().profile)
    print(res["markdown"])
    for k, r in res["rows"].items():
        for w in r["warnings"]:
            print(f"{k}: {w}")


if __name__ == "__main__":
    main()
