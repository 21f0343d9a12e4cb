"""FCLS (and NNLS) speed: core.methods.active_set against per-pixel scipy NNLS, the common reference
implementation — for FCLS on the δ-augmented system (δ = 1e4), for NNLS on E itself.

Synthetic 1024 × 1024 × 200 scene (float32, as read from disk) at P = 4 and P = 10; the
scipy side runs on a subsample and is extrapolated in pixels/second. Both sides are timed
in the same run, interleaved, ``repeats`` times; the best time of each is reported (the
machine may be shared). Threads are limited to 2 (set before numpy is imported when the
script runs alone). Prints a markdown table, writes bench_results/fcls_speed.json.

    .venv/bin/python benchmarks/bench_fcls_speed.py [--profile quick|full] [--size 1024] [--sample 3000]
    .venv/bin/python -m benchmarks.run_all --only fcls_speed
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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from urdm_plugin.core.methods import active_set as _solvers  # noqa: E402
from urdm_plugin.core.methods.active_set import fcls, nnls  # noqa: E402
from urdm_plugin.core.synthetic import BENCHMARK_SEED_BASE, abundance_maps, synthetic_spectra  # noqa: E402

DELTA = 1e4
PROFILES = {
    "quick": {"size": 1024, "bands": 200, "sample": 2000, "repeats": 2, "P": (4, 10)},
    "full": {"size": 1024, "bands": 200, "sample": 5000, "repeats": 3, "P": (4, 10)},
}


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


def _threads() -> int:
    try:  # optional: the real BLAS pool size when threadpoolctl is installed
        from threadpoolctl import threadpool_info
        n = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        if n:
            return int(max(n))
    except Exception:  # noqa: BLE001 - informational only
        pass
    return int(os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or 0)


def _reference(method: str, E: np.ndarray, Ys: np.ndarray) -> np.ndarray:
    """Per-pixel scipy NNLS: δ-augmented for FCLS, plain for NNLS (Ys float64, B × n)."""
    P = E.shape[1]
    if method == "fcls":
        Ea = np.vstack([DELTA * np.ones((1, P)), E])
        return np.stack([scipy_nnls(Ea, np.r_[DELTA, y])[0] for y in Ys.T], axis=1)
    return np.stack([scipy_nnls(E, y)[0] for y in Ys.T], axis=1)


def measure(method: str, Y: np.ndarray, E: np.ndarray, sample: int, repeats: int, seed: int) -> dict:
    solver = fcls if method == "fcls" else nnls
    N = Y.shape[1]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(N, min(sample, N), replace=False))
    Ys = Y[:, idx].astype(np.float64)
    t_ours, t_ref = [], []
    for _ in range(repeats):  # interleaved: both sides see the same machine load
        t0 = time.perf_counter()
        A = solver(Y, E)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = _reference(method, E, Ys)
        t_ref.append(time.perf_counter() - t0)
    ours_pps, ref_pps = N / min(t_ours), idx.size / min(t_ref)
    row = {
        "method": method, "P": E.shape[1], "pixels": N, "bands": Y.shape[0], "threads": _threads(),
        "workers": _solvers.WORKERS,
        "seconds": min(t_ours), "seconds_all": t_ours, "pixels_per_s": ours_pps,
        "scipy_sample": int(idx.size), "scipy_seconds_all": t_ref, "scipy_pixels_per_s": ref_pps,
        "speedup": ours_pps / ref_pps,
        "max_abs_diff": float(np.abs(A[:, idx] - ref).max()),
        "min_abundance": float(A.min()),
    }
    if method == "fcls":
        row["max_sum_error"] = float(np.abs(A.sum(0) - 1).max())
        row.update(_through_the_api(Y, E, repeats, min(t_ours)))
    return row


def _through_the_api(Y: np.ndarray, E: np.ndarray, repeats: int, solver_s: float) -> dict:
    """FCLS through the public entry points on the same data: ``unmix_array`` on (bands,
    pixels) and (bands, H, W), and ``unmix_raster`` on the scene written as a GeoTIFF
    (reading, residual and writing included). Overheads are relative to the solver alone."""
    import tempfile

    from osgeo import gdal

    from urdm_plugin.core.engine.arrays import unmix_array
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster
    from urdm_plugin.core.io.library import SpectralLibrary

    B, N = Y.shape
    side = int(round(np.sqrt(N)))
    out = {}
    for key, data in (("api_bn", Y), ("api_bhw", Y.reshape(B, side, N // side))):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            unmix_array(data, E, "fcls")
            ts.append(time.perf_counter() - t0)
        out[f"{key}_seconds"] = min(ts)
        out[f"{key}_overhead"] = min(ts) / solver_s - 1.0
    wl = np.linspace(400.0, 2500.0, B)
    with tempfile.TemporaryDirectory(prefix="urdm_bench_") as tmp:
        tif = str(Path(tmp) / "scene.tif")
        ds = gdal.GetDriverByName("GTiff").Create(tif, N // side, side, B, gdal.GDT_Float32, ["INTERLEAVE=PIXEL", "TILED=YES"])
        ds.SetGeoTransform((0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
        cube = Y.reshape(B, side, N // side)
        for b in range(B):
            band = ds.GetRasterBand(b + 1)
            band.WriteArray(cube[b])
            band.SetMetadataItem("wavelength", f"{wl[b]:.3f}")
            band.SetMetadataItem("wavelength_units", "nm")
        ds = None
        lib = SpectralLibrary([f"e{i}" for i in range(E.shape[1])], wl, E)
        opts = UnmixOptions(method="fcls", mask_water_bands=False, memory_mb=512)
        t0 = time.perf_counter()
        unmix_raster(tif, lib, str(Path(tmp) / "out"), opts)
        out["raster_seconds"] = time.perf_counter() - t0
    out["raster_overhead"] = out["raster_seconds"] / solver_s - 1.0
    return out


def run(profile: str = "quick", size: int | None = None, sample: int | None = None,
        out: str | None = None) -> dict:
    """Measure; write ``fcls_speed.json`` (run_all interface)."""
    cfg = dict(PROFILES[profile])
    if size:
        cfg["size"] = size
    if sample:
        cfg["sample"] = sample
    rows = []
    for P in cfg["P"]:
        Y, E = scene(cfg["size"], P, cfg["bands"], BENCHMARK_SEED_BASE + 500 + P)
        for method in ("fcls", "nnls"):
            rows.append(measure(method, Y, E, cfg["sample"], cfg["repeats"], seed=P))
        del Y
    lines = [f"### FCLS / NNLS speed ({profile} profile: {cfg['size']}×{cfg['size']}×{cfg['bands']} "
             f"float32 scene, {rows[0]['threads']} BLAS threads, best of {cfg['repeats']})", "",
             "| method | P | core.methods.active_set (px/s) | scipy nnls per pixel (px/s) | speed-up | "
             "max abs diff | max abs(1ᵀa−1) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = "scipy nnls δ-augmented" if r["method"] == "fcls" else "scipy nnls"
        se = f"{r['max_sum_error']:.1e}" if "max_sum_error" in r else "–"
        lines.append(f"| {r['method']} | {r['P']} | {r['pixels_per_s']:,.0f} | "
                     f"{r['scipy_pixels_per_s']:,.0f} ({ref}) | {r['speedup']:.1f}× | "
                     f"{r['max_abs_diff']:.1e} | {se} |")
    api = [r for r in rows if "api_bn_seconds" in r]
    if api:
        lines += ["", "FCLS through the public API, same run (overhead = time / solver alone − 1; "
                  "`unmix_raster` includes reading the GeoTIFF, the residual map and writing P + 1 rasters):", "",
                  "| P | solver alone (s) | `unmix_array` (B, N) | `unmix_array` (B, H, W) | `unmix_raster` (GeoTIFF) | "
                  "API vs scipy per pixel |", "|---|---|---|---|---|---|"]
        for r in api:
            lines.append(f"| {r['P']} | {r['seconds']:.2f} | {r['api_bn_seconds']:.2f} s ({100 * r['api_bn_overhead']:+.0f} %) | "
                         f"{r['api_bhw_seconds']:.2f} s ({100 * r['api_bhw_overhead']:+.0f} %) | "
                         f"{r['raster_seconds']:.2f} s ({100 * r['raster_overhead']:+.0f} %) | "
                         f"{r['pixels'] / r['api_bhw_seconds'] / r['scipy_pixels_per_s']:.1f}× |")
    md = "\n".join(lines) + "\n"
    path = Path(out) if out else ROOT / "bench_results" / "fcls_speed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "fcls_speed", "profile": profile, "config": cfg,
                                "rows": rows}, indent=2) + "\n")
    return {"name": "fcls_speed", "markdown": md, "json": str(path), "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--sample", type=int, default=None, help="pixels solved by scipy")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    res = run(args.profile, args.size, args.sample, args.out)
    print(res["markdown"])
    print(f"wrote {res['json']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
