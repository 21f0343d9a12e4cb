"""Cancel latency: worst delay between a cancel request and the run stopping.

For each method (fcls, tv, and urdm when it can run here) a generated GeoTIFF is unmixed
through ``core.engine.pipeline.unmix_raster`` once to measure the uncancelled time T, then again
with cancel requested at 10 %, 30 %, 50 %, 70 % and 90 % of T. ``cancel()`` returns True
from the request time on; the delay is the time from the request to ``Cancelled`` reaching
the caller (which includes removing the temporary output folder). Also checks that no
output was left behind. Prints a markdown table and writes ``bench_results/cancel.json``.

    .venv/bin/python -m benchmarks.bench_cancel --profile quick
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROFILES = {
    # (height, width, bands, memory_mb, tile_size) per method
    "quick": {"fcls": (512, 512, 100, 8, 256), "tv": (128, 128, 100, 64, 64),
              "urdm": (96, 96, 100, 64, 64), "fractions": [0.1, 0.3, 0.5, 0.7, 0.9]},
    "full": {"fcls": (1024, 1024, 200, 16, 256), "tv": (384, 384, 200, 64, 128),
             "urdm": (256, 256, 200, 64, 128), "fractions": [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]},
}


def write_scene(folder: Path, H: int, W: int, B: int, seed: int = 1_000_500) -> tuple:
    """A float32 GeoTIFF (H×W, B bands, wavelengths in nm) and its 4-endmember CSV library."""
    from osgeo import gdal

    from urdm_plugin.core.synthetic import abundance_maps, synthetic_spectra

    rng = np.random.default_rng(seed)
    wl = np.linspace(400.0, 1300.0, B)  # below the water-vapour bands: all bands are used
    E = synthetic_spectra(4, wl, rng)
    A = abundance_maps(4, H, W, rng, "mixed")
    tif, csv = folder / f"scene_{H}x{W}x{B}.tif", folder / "library.csv"
    ds = gdal.GetDriverByName("GTiff").Create(str(tif), W, H, B, gdal.GDT_Float32, ["INTERLEAVE=BAND"])
    ds.SetGeoTransform((0.0, 1.0, 0.0, float(H), 0.0, -1.0))
    for b in range(B):
        band = ds.GetRasterBand(b + 1)
        img = np.tensordot(E[b], A, axes=(0, 0)) + 0.005 * rng.standard_normal((H, W))
        band.WriteArray(img.astype(np.float32))
        band.SetMetadataItem("wavelength", f"{wl[b]:.3f}")
        band.SetMetadataItem("wavelength_units", "nm")
    ds = None
    rows = ["wavelength_nm,m1,m2,m3,m4"] + [f"{wl[b]:.3f}," + ",".join(f"{v:.8f}" for v in E[b]) for b in range(B)]
    csv.write_text("\n".join(rows) + "\n")
    return tif, csv


class TimedCancel:
    """``cancel()`` that returns True from ``after_s`` seconds after construction on."""

    def __init__(self, after_s: float):
        self.request_time = time.perf_counter() + after_s  # the moment the user asks
        self.polls = 0

    def __call__(self) -> bool:
        self.polls += 1
        return time.perf_counter() >= self.request_time


def measure(method: str, spec: tuple, fractions: list, work: Path, progress: bool = False) -> dict:
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster
    from urdm_plugin.core.errors import Cancelled, UrdmError

    H, W, B, memory_mb, tile = spec
    folder = work / method
    folder.mkdir()
    tif, csv = write_scene(folder, H, W, B)
    params = {"quality": "fast"} if method == "urdm" else {}
    opts = UnmixOptions(method=method, memory_mb=memory_mb, tile_size=tile, params=params)
    t0 = time.perf_counter()
    try:
        unmix_raster(tif, csv, folder / "full", opts)
    except UrdmError as exc:
        return {"method": method, "skipped": str(exc)}
    T = time.perf_counter() - t0
    delays, polls = [], []
    for i, f in enumerate(fractions):
        out = folder / f"cancel_{i}"
        cancel = TimedCancel(f * T)
        try:
            unmix_raster(tif, csv, out, opts, cancel=cancel)
            delays.append(None)  # finished before the request was noticed
        except Cancelled:
            delays.append(time.perf_counter() - cancel.request_time)
            left = [p.name for p in folder.iterdir() if p.name.startswith((f"cancel_{i}", f".cancel_{i}"))]
            if left:
                raise RuntimeError(f"cancelled run left {left}") from None
        polls.append(cancel.polls)
        if progress:
            d = "finished first" if delays[-1] is None else f"{delays[-1]:.3f} s"
            print(f"  {method}: cancel at {f:.0%} of {T:.1f} s -> {d}", file=sys.stderr, flush=True)
    got = [d for d in delays if d is not None]
    return {"method": method, "size": f"{H}×{W}×{B}", "run_seconds": T,
            "delays_s": delays, "worst_delay_s": max(got) if got else None,
            "mean_delay_s": float(np.mean(got)) if got else None, "polls": polls,
            "memory_mb": memory_mb, "tile_size": tile}


def run(profile: str = "quick", out_dir: Optional[str] = None, progress: bool = True) -> dict:
    """Measure cancel latency for fcls, tv and urdm; write ``cancel.json`` (run_all interface)."""
    from urdm_plugin.core.methods.registry import method_available

    cfg = PROFILES[profile]
    out = Path(out_dir) if out_dir else ROOT / "bench_results"
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="urdm-bench-cancel-") as tmp:
        for method in ("fcls", "tv", "urdm"):
            ok, why = method_available(method)
            if not ok:
                results.append({"method": method, "skipped": why})
                continue
            if progress:
                print(f"cancel: {method} ...", file=sys.stderr, flush=True)
            results.append(measure(method, cfg[method], cfg["fractions"], Path(tmp), progress))
    lines = [f"### Cancel latency ({profile} profile)", "",
             "| method | scene (H×W×B) | uncancelled run s | worst delay s | mean delay s | cancel polls |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['method']} | skipped: {r['skipped']} | | | | |")
            continue
        w = "n/a" if r["worst_delay_s"] is None else f"{r['worst_delay_s']:.3f}"
        m = "n/a" if r["mean_delay_s"] is None else f"{r['mean_delay_s']:.3f}"
        lines.append(f"| {r['method']} | {r['size']} | {r['run_seconds']:.2f} | {w} | {m} | "
                     f"{min(r['polls'])}–{max(r['polls'])} |")
    md = "\n".join(lines) + "\n"
    path = out / "cancel.json"
    path.write_text(json.dumps({"profile": profile, "config": cfg, "results": results}, indent=1) + "\n")
    return {"name": "cancel", "markdown": md, "json": str(path), "results": results}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    res = run(a.profile, a.out)
    print(res["markdown"])
    print(f"wrote {res['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
