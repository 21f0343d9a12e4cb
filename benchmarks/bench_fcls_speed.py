"""FCLS speed: core.solvers.fcls (solver alone) against per-pixel scipy NNLS on the
δ-augmented system (δ = 1e4), the common reference implementation.

Synthetic 1024 × 1024 × 200 scene (float32, as read from disk) at P = 4 and P = 10; the
scipy side runs on a subsample and is extrapolated in pixels/second. Threads are limited
to 2 (set before numpy is imported). Prints a markdown table, writes
bench_results/fcls_speed.json.

    .venv/bin/python benchmarks/bench_fcls_speed.py [--size 1024] [--sample 3000]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import nnls as scipy_nnls  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from urdm_plugin.core.solvers import fcls  # noqa: E402
from urdm_plugin.core.synthetic import BENCHMARK_SEED_BASE, abundance_maps, synthetic_spectra  # noqa: E402

DELTA = 1e4


def scene(size: int, P: int, bands: int, seed: int):
    rng = np.random.default_rng(seed)
    wl = np.linspace(400, 2500, bands)
    E = synthetic_spectra(P, wl, rng)
    # 256² abundance tile repeated: the generator is slow at 1024², the solver does not care
    t = min(size, 256)
    A = abundance_maps(P, t, t, rng, "mixed").astype(np.float64)
    reps = -(-size // t)
    A = np.tile(A, (1, reps, reps))[:, :size, :size].reshape(P, -1)
    Y = np.empty((bands, A.shape[1]), np.float32)
    sigma = np.sqrt(np.mean((E @ A[:, :4096]) ** 2) / 10 ** 2.5)  # 25 dB
    for s in range(0, A.shape[1], 65536):  # in blocks: keeps float64 temporaries small
        blk = E @ A[:, s:s + 65536]
        Y[:, s:s + 65536] = blk + sigma * rng.standard_normal(blk.shape)
    return Y, E


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--sample", type=int, default=3000, help="pixels solved by scipy")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "fcls_speed.json"))
    args = ap.parse_args(argv)
    rows = []
    for P in (4, 10):
        Y, E = scene(args.size, P, args.bands, BENCHMARK_SEED_BASE + 500 + P)
        N = Y.shape[1]
        t0 = time.perf_counter()
        A = fcls(Y, E)
        t_ours = time.perf_counter() - t0
        rng = np.random.default_rng(P)
        idx = np.sort(rng.choice(N, min(args.sample, N), replace=False))
        Ea = np.vstack([DELTA * np.ones((1, P)), E])
        Ys = Y[:, idx].astype(np.float64)
        t0 = time.perf_counter()
        ref = np.stack([scipy_nnls(Ea, np.r_[DELTA, y])[0] for y in Ys.T], axis=1)
        t_ref = time.perf_counter() - t0
        ours_pps, ref_pps = N / t_ours, idx.size / t_ref
        rows.append({
            "P": P, "pixels": N, "bands": args.bands, "threads": int(os.environ["OMP_NUM_THREADS"]),
            "fcls_seconds": t_ours, "fcls_pixels_per_s": ours_pps,
            "scipy_sample": int(idx.size), "scipy_pixels_per_s": ref_pps,
            "speedup": ours_pps / ref_pps,
            "max_abs_diff": float(np.abs(A[:, idx] - ref).max()),
            "max_sum_error": float(np.abs(A.sum(0) - 1).max()), "min_abundance": float(A.min()),
        })
    print(f"FCLS speed, {args.size}×{args.size}×{args.bands} scene, "
          f"{rows[0]['threads']} threads\n")
    print("| P | core.solvers.fcls (px/s) | scipy nnls δ-augmented (px/s) | speed-up | max abs diff | max |1ᵀa−1| |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['P']} | {r['fcls_pixels_per_s']:,.0f} | {r['scipy_pixels_per_s']:,.0f} | "
              f"{r['speedup']:.1f}× | {r['max_abs_diff']:.1e} | {r['max_sum_error']:.1e} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "fcls_speed", "rows": rows}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
