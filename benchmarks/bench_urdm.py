"""URDM-specific benchmark: ablation, accuracy against network evaluations, time/memory vs size.

1. Ablation (same splitting, same schedule): no prior step (plain ADMM towards FCLS),
   a TV denoiser in the prior's place (its weight chosen with the truth on a grid —
   favourable to the ablation), and the diffusion prior. Jasper Ridge + 20 dB noise and a
   synthetic scene, several noise seeds.
2. RMSE against the number of network evaluations (quality presets and beyond).
3. Time and peak RSS of the command line, end to end (start-up included), against scene
   size, on generated GeoTIFFs (≈200 bands).

    .venv/bin/python -m benchmarks.bench_urdm --profile quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROFILES = {
    "quick": {"seeds": 3, "nfe": [5, 10, 20, 40], "sizes": [(128, 4), (256, 4), (512, 6)],
              "tv_grid": [0.003, 0.01, 0.03, 0.1]},
    "full": {"seeds": 5, "nfe": [3, 5, 10, 20, 40, 80], "sizes": [(128, 4), (256, 4), (512, 6), (1024, 6)],
             "tv_grid": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]},
}


def rmse(a, b):
    return float(np.sqrt(np.nanmean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


def _scenes(seeds: int):
    from benchmarks import scenes
    from urdm_plugin.core import synthetic

    out = []
    if scenes.available():
        s = scenes.load("jasper_ridge")
        for k in range(seeds):
            out.append(("Jasper Ridge 20 dB", k, scenes.with_noise(s.Y, 20.0, 100 + k), s.E, s.A))
    for k in range(seeds):
        sc = synthetic.make_scene(80, 80, 5, 20.0, seed=synthetic.BENCHMARK_SEED_BASE + 500 + k)
        out.append(("synthetic P=5 20 dB", k, sc.Y, sc.E, sc.A))
    return out


def ablation(cfg) -> tuple[list, str]:
    from urdm_plugin.core import solvers, urdm

    rows = []
    for label, k, Y, E, A in _scenes(cfg["seeds"]):
        B = Y.shape[0]
        r = {"scene": label, "seed": k, "fcls": rmse(solvers.fcls(Y.reshape(B, -1), E).reshape(A.shape), A)}
        r["none"] = rmse(urdm.urdm_unmix(Y, E, prior="none")[0], A)
        r["tv"] = min(rmse(urdm.urdm_unmix(Y, E, prior="tv", tv_weight=w)[0], A) for w in cfg["tv_grid"])
        r["ddpm"] = rmse(urdm.urdm_unmix(Y, E, seed=k)[0], A)
        rows.append(r)
        print(json.dumps(r), flush=True)
    md = ["### URDM ablation (abundance RMSE, mean over seeds; same splitting and schedule)\n",
          "| scene | FCLS | splitting, no prior | splitting + TV (oracle weight) | URDM (diffusion prior) |",
          "|---|---|---|---|---|"]
    for label in dict.fromkeys(r["scene"] for r in rows):
        sel = [r for r in rows if r["scene"] == label]
        m = {key: np.mean([r[key] for r in sel]) for key in ("fcls", "none", "tv", "ddpm")}
        md.append(f"| {label} | {m['fcls']:.4f} | {m['none']:.4f} | {m['tv']:.4f} | **{m['ddpm']:.4f}** |")
    return rows, "\n".join(md) + "\n"


def nfe_curve(cfg) -> tuple[list, str]:
    from urdm_plugin.core import urdm

    rows = []
    for label, _k, Y, E, A in _scenes(1):
        for n in cfg["nfe"]:
            t = time.time()
            a = urdm.urdm_unmix(Y, E, nfe=n, seed=0)[0]
            rows.append({"scene": label, "nfe": n, "rmse": rmse(a, A), "seconds": round(time.time() - t, 2)})
            print(json.dumps(rows[-1]), flush=True)
    md = ["### URDM: accuracy against network evaluations (balanced schedule, t_start 250)\n",
          "| scene | " + " | ".join(f"{n} NFE" for n in cfg["nfe"]) + " |",
          "|---|" + "---|" * len(cfg["nfe"])]
    for label in dict.fromkeys(r["scene"] for r in rows):
        sel = [r for r in rows if r["scene"] == label]
        md.append(f"| {label} | " + " | ".join(f"{r['rmse']:.4f} ({r['seconds']:.1f} s)" for r in sel) + " |")
    return rows, "\n".join(md) + "\n"


def _write_scene(path: Path, size: int, P: int):
    from osgeo import gdal, osr

    from urdm_plugin.core import synthetic
    from urdm_plugin.core.library_io import SpectralLibrary, write_library_csv

    rng = np.random.default_rng(synthetic.BENCHMARK_SEED_BASE + 900 + size)
    wl = np.linspace(400.0, 2500.0, 200)
    E = synthetic.synthetic_spectra(P, wl, rng)
    A = synthetic.abundance_maps(P, size, size, rng, "mixed")
    Y, _ = synthetic.add_noise(np.tensordot(E, A, axes=(1, 0)).astype(np.float32), 30.0, rng)
    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(str(path), size, size, 200, gdal.GDT_Float32, ["TILED=YES", "INTERLEAVE=BAND"])
    ds.SetGeoTransform((500000.0, 30.0, 0.0, 4500000.0, 0.0, -30.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(200):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(Y[b].astype(np.float32))
        band.SetDescription(f"{wl[b]:.2f} nm")
    ds = None
    lib = path.with_suffix(".csv")
    write_library_csv(lib, SpectralLibrary([f"m{i}" for i in range(P)], wl, E))
    return lib


def scaling(cfg) -> tuple[list, str]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, P in cfg["sizes"]:
            img = Path(tmp) / f"scene_{size}.tif"
            lib = _write_scene(img, size, P)
            out = Path(tmp) / f"out_{size}"
            cmd = [sys.executable, "-m", "urdm_plugin", "unmix", str(img), str(lib), str(out),
                   "--method", "urdm", "--quiet", "--no-water-mask"]
            t = time.time()
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            wall = time.time() - t
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            row = {"size": f"{size}x{size}x200", "P": P, "seconds": round(wall, 1),
                   "peak_rss_mb": round(max(peak, before) / 1024, 0) if peak > before else None,
                   "exit": proc.returncode, "stderr": proc.stderr[-300:]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    md = ["### URDM command line, end to end (balanced preset, start-up included)\n",
          "| scene | P | seconds | peak RSS (MB) | exit |", "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['size']} | {r['P']} | {r['seconds']} | {r['peak_rss_mb'] or 'n/a'} | {r['exit']} |")
    md.append("\nPeak RSS is the largest child process so far (getrusage), so it is monotone over the table.")
    return rows, "\n".join(md) + "\n"


def run(profile: str = "quick") -> dict:
    cfg = PROFILES[profile]
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    ab_rows, ab_md = ablation(cfg)
    nfe_rows, nfe_md = nfe_curve(cfg)
    sc_rows, sc_md = scaling(cfg)
    md = f"{ab_md}\n{nfe_md}\n{sc_md}\nMachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}.\n"
    out = ROOT / "bench_results" / "urdm.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"profile": profile, "ablation": ab_rows, "nfe": nfe_rows, "scaling": sc_rows},
                              indent=2))
    print(md)
    return {"name": "urdm", "markdown": md, "json": str(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    run(ap.parse_args(argv).profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
