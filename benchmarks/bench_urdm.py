"""URDM-specific benchmark: ablation, accuracy against network evaluations, time/memory vs size.

1. Ablation on scenes with exact truth (semi-synthetic Jasper Ridge and Samson at 20 dB,
   a synthetic scene), several noise seeds, one row per part removed or changed:
   FCLS; the splitting without a prior (must equal FCLS); a TV denoiser in the prior's place
   (weight chosen with the truth — favourable to the ablation); the diffusion prior step
   with fresh noise (ζ = 1, DiffPIR-style) and deterministic (ζ = 0, the default), each at
   its truth-tuned λ; the default with its automatic (SURE) λ; and every trained prior
   found (the shipped one, and candidates under build/prior*/export) at truth-tuned and
   automatic λ — one row per training-data change tried.
2. RMSE against the number of network evaluations (quality presets and beyond).
3. Time and peak RSS of the command line, end to end (start-up and the automatic weight
   included), against scene size, on generated GeoTIFFs (≈200 bands).

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
    "quick": {"seeds": 2, "nfe": [3, 6, 10, 20], "sizes": [(100, 4), (128, 4), (256, 4)],
              "tv_grid": [0.003, 0.01, 0.03, 0.1], "lam_grid": [0.17, 0.3, 0.52]},
    "full": {"seeds": 5, "nfe": [3, 6, 10, 20, 40], "sizes": [(100, 4), (128, 4), (256, 4), (512, 6), (1024, 6)],
             "tv_grid": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3], "lam_grid": [0.06, 0.1, 0.17, 0.3, 0.52, 1.0]},
}
SEED_BASE = 1_000_000 + 40_000  # benchmark seed range, apart from bench_accuracy's draws


def rmse(a, b):
    return float(np.sqrt(np.nanmean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


def _scenes(seeds: int):
    """(label, seed, Y, E, A_true) with exact truth."""
    from benchmarks import scenes
    from urdm_plugin.core import synthetic

    out = []
    if scenes.available():
        for name, label in (("jasper_ridge", "Jasper Ridge"), ("samson", "Samson")):
            s = scenes.load(name)
            for k in range(seeds):
                Y, A = scenes.semisynthetic(s, 20.0, SEED_BASE + k, "white")
                out.append((f"{label} semi-synthetic 20 dB", k, Y, s.E, A))
    for k in range(seeds):
        sc = synthetic.make_scene(80, 80, 5, 20.0, seed=synthetic.BENCHMARK_SEED_BASE + 500 + k)
        out.append(("synthetic P=5 20 dB", k, sc.Y, sc.E, sc.A))
    return out


def trained_priors() -> dict:
    """{label: weights folder}: the shipped prior and any candidates under build/prior*/export."""
    from urdm_plugin.core.diffusion.weights import WEIGHTS_DIR, read_card

    found = {"shipped": WEIGHTS_DIR}
    for d in sorted((ROOT / "build").glob("prior*/export")):
        if (d / "model_card.json").is_file():
            card = read_card(d)
            found[f"{d.parent.name} ({card['recipe'].get('data', '?')[:40]}…, {card['recipe']['steps']} steps)"] = d
    return found


ABLATION_ROWS = ("fcls", "none", "tv", "fresh noise, oracle λ", "deterministic, oracle λ", "default (auto λ)")


def ablation(cfg) -> tuple[list, str]:
    from urdm_plugin.core.diffusion import sampler as urdm
    from urdm_plugin.core.methods.active_set import fcls

    priors = trained_priors()
    rows = []
    for label, k, Y, E, A in _scenes(cfg["seeds"]):
        B = Y.shape[0]
        r = {"scene": label, "seed": k, "fcls": rmse(fcls(Y.reshape(B, -1), E).reshape(A.shape), A)}
        r["none"] = rmse(urdm.urdm_unmix(Y, E, lam=0.3, prior="none")[0], A)
        r["tv"] = min(rmse(urdm.urdm_unmix(Y, E, lam=1.0, prior="tv", tv_weight=w)[0], A) for w in cfg["tv_grid"])
        r["fresh noise, oracle λ"] = min(rmse(urdm.urdm_unmix(Y, E, lam=lam, zeta=1.0, seed=k)[0], A)
                                         for lam in cfg["lam_grid"])
        A_auto, _, info = urdm.urdm_unmix(Y, E, seed=k)
        r["default (auto λ)"] = rmse(A_auto, A)
        r["lam_auto"] = info["lam"]
        for name, wdir in priors.items():  # what each prior knows: at its truth-tuned λ
            r[f"prior {name}, oracle λ"] = min(rmse(urdm.urdm_unmix(Y, E, lam=lam, weights_dir=wdir)[0], A)
                                               for lam in sorted(set(cfg["lam_grid"]) | {info["lam"]}))
        r["deterministic, oracle λ"] = r["prior shipped, oracle λ"]
        rows.append(r)
        print(json.dumps(r), flush=True)
    labels = list(dict.fromkeys(r["scene"] for r in rows))
    cols = [c for c in rows[0] if c not in ("scene", "seed", "lam_auto")]
    names = {"fcls": "FCLS", "none": "splitting, no prior", "tv": "splitting + TV denoiser (oracle weight)",
             "fresh noise, oracle λ": "diffusion prior, fresh noise ζ = 1 (oracle λ)",
             "deterministic, oracle λ": "diffusion prior, deterministic ζ = 0 (oracle λ)",
             "default (auto λ)": "**URDM default** (ζ = 0, SURE λ)"}
    md = ["### URDM ablation (abundance RMSE, mean over seeds; exact truth)\n",
          "| variant | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for c in cols:
        vals = [np.mean([r[c] for r in rows if r["scene"] == lab]) for lab in labels]
        md.append(f"| {names.get(c, c)} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return rows, "\n".join(md) + "\n"


def nfe_curve(cfg) -> tuple[list, str]:
    from urdm_plugin.core.diffusion import sampler as urdm

    rows = []
    lam = 0.3
    for label, _k, Y, E, A in _scenes(1):
        for n in cfg["nfe"]:  # one fixed λ, so only the number of evaluations varies
            t = time.time()
            a = urdm.urdm_unmix(Y, E, nfe=n, seed=0, lam=lam)[0]
            rows.append({"scene": label, "nfe": n, "rmse": rmse(a, A), "seconds": round(time.time() - t, 2)})
            print(json.dumps(rows[-1]), flush=True)
    md = ["### URDM: accuracy against network evaluations (t_start 100, λ = 0.3)\n",
          "| scene | " + " | ".join(f"{n} NFE" for n in cfg["nfe"]) + " |",
          "|---|" + "---|" * len(cfg["nfe"])]
    for label in dict.fromkeys(r["scene"] for r in rows):
        sel = [r for r in rows if r["scene"] == label]
        md.append(f"| {label} | " + " | ".join(f"{r['rmse']:.4f} ({r['seconds']:.1f} s)" for r in sel) + " |")
    return rows, "\n".join(md) + "\n"


def _write_scene(path: Path, size: int, P: int):
    from osgeo import gdal, osr

    from urdm_plugin.core import synthetic
    from urdm_plugin.core.io.library import SpectralLibrary, write_library_csv

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
    from benchmarks import scenes

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        if scenes.available():  # the real file a user would open: Jasper Ridge as shipped
            d = scenes.SHARED_DATA / "jasper_ridge"
            jobs.append(("jasper_ridge.tif 100x100x198", 4, d / "jasper_ridge.tif", d / "jasper_ridge_endmembers.csv"))
        for size, P in cfg["sizes"]:
            img = Path(tmp) / f"scene_{size}.tif"
            jobs.append((f"{size}x{size}x200", P, img, _write_scene(img, size, P)))
        for label, P, img, lib in jobs:
            out = Path(tmp) / f"out_{len(rows)}"
            cmd = [sys.executable, "-m", "urdm_plugin", "unmix", str(img), str(lib), str(out),
                   "--method", "urdm", "--quiet", "--no-water-mask"]
            t = time.time()
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            wall = time.time() - t
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            row = {"size": label, "P": P, "seconds": round(wall, 1),
                   "peak_rss_mb": round(max(peak, before) / 1024, 0) if peak > before else None,
                   "exit": proc.returncode, "stderr": proc.stderr[-300:]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    md = ["### URDM command line, end to end (balanced preset, automatic λ, start-up included)\n",
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
