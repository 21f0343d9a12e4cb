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
    from urdm_plugin.core.methods.context import SceneContext

    priors = trained_priors()
    rows = []
    for label, k, Y, E, A in _scenes(cfg["seeds"]):
        B = Y.shape[0]
        r = {"scene": label, "seed": k, "fcls": rmse(fcls(Y.reshape(B, -1), E).reshape(A.shape), A)}
        r["none"] = rmse(urdm.urdm_unmix(Y, E, lam=0.3, settings=urdm.SamplerSettings(prior="none"))[0], A)
        r["tv"] = min(rmse(urdm.urdm_unmix(Y, E, lam=1.0, settings=urdm.SamplerSettings(prior="tv", tv_weight=w))[0], A)
                      for w in cfg["tv_grid"])
        r["fresh noise, oracle λ"] = min(rmse(urdm.urdm_unmix(Y, E, lam=lam, zeta=1.0, ctx=SceneContext(seed=k))[0], A)
                                         for lam in cfg["lam_grid"])
        A_auto, _, info = urdm.urdm_unmix(Y, E, ctx=SceneContext(seed=k))
        r["default (auto λ)"] = rmse(A_auto, A)
        r["lam_auto"] = info["lam"]
        for name, wdir in priors.items():  # what each prior knows: at its truth-tuned λ
            r[f"prior {name}, oracle λ"] = min(rmse(urdm.urdm_unmix(Y, E, lam=lam, settings=urdm.SamplerSettings(
                weights_dir=wdir))[0], A)
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
            a = urdm.urdm_unmix(Y, E, lam=lam, settings=urdm.SamplerSettings(nfe=n))[0]
            rows.append({"scene": label, "nfe": n, "rmse": rmse(a, A), "seconds": round(time.time() - t, 2)})
            print(json.dumps(rows[-1]), flush=True)
    md = ["### URDM: accuracy against network evaluations (t_start 100, λ = 0.3)\n",
          "| scene | " + " | ".join(f"{n} NFE" for n in cfg["nfe"]) + " |",
          "|---|" + "---|" * len(cfg["nfe"])]
    for label in dict.fromkeys(r["scene"] for r in rows):
        sel = [r for r in rows if r["scene"] == label]
        md.append(f"| {label} | " + " | ".join(f"{r['rmse']:.4f} ({r['seconds']:.1f} s)" for r in sel) + " |")
    return rows, "\n".join(md) + "\n"


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """The machine's float32 matrix-multiply rate (GFLOP/s) with torch's current threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def network_rate(model, size: int = 256, maps: int = 6, per_map: bool = True, reps: int = 3) -> float:
    """Map pixels per second of ε_θ on ``maps`` maps of ``size``²: evaluated as the sampler
    does (:func:`runtime.predict_noise`, one map per call on a CPU) or, ``per_map`` False,
    as one batch in one call (the earlier implementation)."""
    import torch

    from urdm_plugin.core.diffusion.runtime import predict_noise

    x = torch.randn(maps, 1, size, size)
    with torch.inference_mode():
        predict_noise(model, x[:1], 50)
        t = time.perf_counter()
        for _ in range(reps):
            if per_map:
                predict_noise(model, x, 50)
            else:
                model(x, torch.full((maps,), 50, dtype=torch.long))
        return maps * size * size * reps / (time.perf_counter() - t)


def flops_per_pixel(model, size: int = 64) -> float:
    """Floating-point operations of one network evaluation per map pixel (torch's counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 1, size, size)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x, torch.full((1,), 50, dtype=torch.long))
    return fc.get_total_flops() / size ** 2


def network(cfg) -> tuple[list, str]:
    """Each trained prior: size, FLOPs per pixel, speed (GFLOP/s against the matmul rate), and
    accuracy at the automatic λ and at the truth-tuned λ, paired against the shipped prior
    over the same scenes and noise draws."""
    from benchmarks.bench_accuracy import t_interval
    from urdm_plugin.core.diffusion import sampler as urdm
    from urdm_plugin.core.diffusion.runtime import get_model
    from urdm_plugin.core.diffusion.unet import count_parameters
    from urdm_plugin.core.methods.context import SceneContext

    peak = matmul_gflops()
    scenes = _scenes(cfg["seeds"])
    rows = []
    for name, wdir in trained_priors().items():
        if cfg.get("priors") and not any(name.startswith(k) for k in cfg["priors"]):
            continue
        model = get_model("cpu", wdir)
        fpp = flops_per_pixel(model)
        rate = network_rate(model)
        r = {"prior": name, "channels": model.config["base_channels"], "parameters": count_parameters(model),
             "kflop_per_pixel": round(fpp / 1e3, 1), "mpx_per_s": round(rate / 1e6, 3),
             "mpx_per_s_one_batch": round(network_rate(model, per_map=False) / 1e6, 3),
             "gflops": round(fpp * rate / 1e9, 1), "matmul_gflops": round(peak, 1), "auto": [], "oracle": [],
             "scenes": []}
        for label, k, Y, E, A in scenes:
            A_auto, _, info = urdm.urdm_unmix(Y, E, ctx=SceneContext(seed=k), settings=urdm.SamplerSettings(weights_dir=wdir))
            r["auto"].append(rmse(A_auto, A))
            r["oracle"].append(min(rmse(urdm.urdm_unmix(Y, E, lam=lam, settings=urdm.SamplerSettings(weights_dir=wdir))[0],
                                        A)
                                   for lam in sorted(set(cfg["lam_grid"]) | {info["lam"]})))
            r["scenes"].append(label)
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k not in ("auto", "oracle", "scenes")}), flush=True)
    base = rows[0]
    md = ["### The network: cost against accuracy (each trained prior; RMSE mean over scenes × seeds, "
          "paired % against the shipped prior, 95 % interval)\n",
          "| prior | channels | parameters | kFLOP/px | Mpx/s (per map; one batch) | GFLOP/s (matmul) "
          "| RMSE auto λ | vs shipped | RMSE oracle λ | vs shipped |", "|---|" + "---|" * 9]
    for r in rows:
        cells = []
        for key in ("auto", "oracle"):
            rel = 100.0 * (np.asarray(r[key]) / np.asarray(base[key]) - 1.0)
            m, lo, hi = t_interval(rel)
            cells += [f"{np.mean(r[key]):.4f}", "—" if r is base else f"{m:+.1f} % [{lo:+.1f}, {hi:+.1f}]"]
        md.append(f"| {r['prior']} | {r['channels']} | {r['parameters']:,} | {r['kflop_per_pixel']:.0f} "
                  f"| {r['mpx_per_s']:.2f}; {r['mpx_per_s_one_batch']:.2f} | {r['gflops']:.0f} ({r['matmul_gflops']:.0f}) "
                  f"| " + " | ".join(cells) + " |")
    md.append(f"\nScenes: {', '.join(dict.fromkeys(base['scenes']))}; {cfg['seeds']} noise seeds each.")
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


#: Runs argv[1:] and prints its peak RSS (KiB) as the last stderr line, exiting with its code.
_PEAK_RSS = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


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
            # through a small launcher: a child forked from this (large) process would count the
            # parent's resident pages in its peak RSS
            proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, *cmd], capture_output=True, text=True, cwd=ROOT)
            wall = time.time() - t
            *lines, peak = proc.stderr.rstrip().split("\n") or ["0"]
            row = {"size": label, "P": P, "seconds": round(wall, 1), "peak_rss_mb": round(int(peak) / 1024),
                   "exit": proc.returncode, "stderr": "\n".join(lines)[-300:]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    md = ["### URDM command line, end to end (balanced preset, automatic λ, start-up included)\n",
          "| scene | P | seconds | peak RSS (MB) | exit |", "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['size']} | {r['P']} | {r['seconds']} | {r['peak_rss_mb']} | {r['exit']} |")
    md.append("\nPeak RSS of each command alone (getrusage of a small launcher's child).")
    return rows, "\n".join(md) + "\n"


PARTS = ("ablation", "nfe", "network", "scaling")


def run(profile: str = "quick", parts=PARTS, sizes=None, priors=None) -> dict:
    cfg = dict(PROFILES[profile])
    if sizes:
        cfg["sizes"] = sizes
    if priors:
        cfg["priors"] = list(priors)
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    funcs = {"ablation": ablation, "nfe": nfe_curve, "network": network, "scaling": scaling}
    results, mds = {}, []
    for part in parts:
        results[part], md = funcs[part](cfg)
        mds.append(md)
    md = "\n".join(mds) + f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}.\n"
    out = ROOT / "bench_results" / "urdm.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"profile": profile, **results}, indent=2))
    print(md)
    return {"name": "urdm", "markdown": md, "json": str(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    ap.add_argument("--priors", default="", help="network part: only priors whose label starts with one of "
                    "these (e.g. shipped,prior_w16)")
    ap.add_argument("--sizes", default="", help="scaling scenes as SIZE:P,... (e.g. 512:6,1024:6)")
    a = ap.parse_args(argv)
    parts = [x for x in a.parts.split(",") if x]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    sizes = [tuple(int(v) for v in x.split(":")) for x in a.sizes.split(",") if x]
    run(a.profile, parts, sizes, [x for x in a.priors.split(",") if x])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
