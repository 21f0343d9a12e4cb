"""Peak memory of block-wise reading + band matching + writing on a large synthetic scene.

A 1024 x 1024 x 200 uint16 GeoTIFF (400 MB of pixels, GDAL band scale 1/10000, FWHM in
the ENVI domain) is written to a temporary folder by a child process, then this process
opens it, matches a 1 nm library of 4 endmembers (Gaussian band responses), iterates row
blocks within a memory budget, computes least-squares abundances and a residual per block
(a stand-in for the solvers, which are not what is measured) and writes 4 abundance
GeoTIFFs + residual RMSE + endmembers_used.csv + run.json through OutputWriter.

Peak resident memory comes from ``resource.getrusage`` (the kernel's high-water mark of
this process), so it covers every byte the I/O path touched. Target: < 1.5 GB.

Then (``run(profile)``, what ``make bench`` calls) the real command line at each memory
budget, against the issue-#13 target: peak RSS above the method's fixed base within 1.3 ×
``--memory-mb``.

Run by hand or via ``make bench``::

    .venv/bin/python -m benchmarks.bench_io_memory [--size 1024] [--bands 200] [--memory-mb 256]
    .venv/bin/python -m benchmarks.bench_io_memory --budgets [--profile full]

Prints a markdown table and writes ``bench_results/io_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 1536.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _library(wl_lib: np.ndarray) -> np.ndarray:
    """4 smooth synthetic reflectance spectra (Bl, 4) on ``wl_lib`` nm."""
    x = (wl_lib - 400.0) / 2100.0
    return np.stack([
        0.05 + 0.45 / (1 + np.exp(-(wl_lib - 720) / 15)),  # vegetation red edge
        0.08 * np.exp(-x * 4),  # water
        0.15 + 0.3 * x,  # soil
        0.12 + 0.02 * np.sin(6 * x),  # road
    ], axis=1)


def generate(path: str, size: int, bands: int) -> None:
    """Write the scene band by band (bounded memory): mixtures of the 4 spectra."""
    from osgeo import gdal

    wl = np.linspace(400.0, 2500.0, bands)
    E = _library(wl)  # (B, 4)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    A = np.stack([np.sin(3 * xx) ** 2, np.cos(2 * yy) ** 2, xx * yy, 0.2 + 0 * xx]).astype(np.float32)
    A /= A.sum(axis=0, keepdims=True)
    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(path, size, size, bands, gdal.GDT_UInt16,
                    options=["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "INTERLEAVE=BAND", "BIGTIFF=YES"])
    ds.SetGeoTransform((600000.0, 5.0, 0.0, 4200000.0, 0.0, -5.0))
    ds.SetMetadata({"wavelength": "{" + ",".join(f"{w:.3f}" for w in wl) + "}",
                    "wavelength_units": "Nanometers",
                    "fwhm": "{" + ",".join("11.0" for _ in wl) + "}"}, "ENVI")
    for b in range(bands):
        img = np.tensordot(E[b], A, axes=1) + rng.normal(0, 0.002, (size, size))
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(np.clip(img * 10000, 0, 65535).astype(np.uint16))
        band.SetScale(1e-4)
        band.SetNoDataValue(0)
    ds = None


def io_path(size: int = 1024, bands: int = 200, memory_mb: float = 256, keep: bool = False) -> dict:
    sys.path.insert(0, str(ROOT))
    from urdm_plugin.core.bands import match_library
    from urdm_plugin.core.io.image import iter_row_blocks, open_image
    from urdm_plugin.core.io.library import SpectralLibrary
    from urdm_plugin.core.io.manifest import build_manifest
    from urdm_plugin.core.io.writer import RESIDUAL_KEY, OutputWriter

    tmp = tempfile.mkdtemp(prefix="urdm-bench-io-")
    scene = os.path.join(tmp, "scene.tif")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--generate", scene, "--size", str(size), "--bands", str(bands)],
                   check=True)
    t_gen = time.perf_counter() - t0
    rss_start = _peak_rss_mb()

    t0 = time.perf_counter()
    info = open_image(scene)
    wl_lib = np.arange(380.0, 2520.0, 1.0)
    lib = SpectralLibrary(["Vegetation", "Water", "Soil", "Road"], wl_lib, _library(wl_lib))
    matched = match_library(info, lib)
    E = matched.E.astype(np.float32)
    pinv = np.linalg.pinv(E)
    n_blocks = 0
    with OutputWriter(os.path.join(tmp, "out"), info) as w:
        for n in matched.names:
            w.add_raster(n, n, f"abundance of {n}")
        w.add_raster(RESIDUAL_KEY, RESIDUAL_KEY, "residual RMSE")
        for blk in iter_row_blocks(info, matched.band_indices, memory_mb=memory_mb):
            nb, h, W = blk.data.shape
            Y = blk.data.reshape(nb, -1)
            A = pinv @ Y
            R = E @ A  # one block-sized temporary, reused in place
            R -= Y
            R *= R
            res = np.sqrt(R.mean(axis=0)).reshape(h, W)
            del R
            for k, n in enumerate(matched.names):
                w.write(n, A[k].reshape(h, W), blk.row0, 0, valid=blk.valid)
            w.write(RESIDUAL_KEY, res, blk.row0, 0, valid=blk.valid)
            n_blocks += 1
            del Y, A, res, blk
        w.write_library_csv(matched.as_library())
        out = w.commit(build_manifest("ucls", info, "synthetic", matched, writer=w, seconds=0.0))
    t_io = time.perf_counter() - t0
    peak = _peak_rss_mb()
    result = {
        "scene": f"{size}x{size}x{bands} uint16 GeoTIFF (scale 1e-4)",
        "scene_mb": round(size * size * bands * 4 / 2**20, 1),
        "memory_mb_budget": memory_mb,
        "bands_used": matched.report.n_used,
        "resampling": matched.report.method,
        "blocks": n_blocks,
        "rss_before_mb": round(rss_start, 1),
        "peak_rss_mb": round(peak, 1),
        "target_mb": TARGET_MB,
        "passed": peak < TARGET_MB,
        "seconds_generate": round(t_gen, 1),
        "seconds_read_match_write": round(t_io, 1),
        "output_files": sorted(os.listdir(out)),
    }
    if not keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return result


#: Runs argv[1:] and prints its peak RSS (KiB) as the last stderr line (a small launcher:
#: a child forked from this process would count this process's pages).
_PEAK_RSS = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")
#: Peak RSS above the method's fixed base must stay within this × --memory-mb (issue #13).
BUDGET_FACTOR = 1.3
PROFILES = {"quick": {"fcls": (64, 256, 1024), "urdm": (256,)},
            "full": {"fcls": (64, 256, 1024), "urdm": (64, 256, 1024)}}


def _cli_peak_mb(tmp: str, image: str, lib: str, method: str, memory_mb: float) -> tuple:
    out = os.path.join(tmp, f"out_{method}_{memory_mb:g}_{os.path.basename(image)}")
    cmd = [sys.executable, "-m", "urdm_plugin", "unmix", image, lib, out, "--method", method,
           "--memory-mb", f"{memory_mb:g}", "--quiet"] + (["--quality", "fast"] if method == "urdm" else [])
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _PEAK_RSS, *cmd], capture_output=True, text=True, cwd=ROOT)
    *err, peak = p.stderr.rstrip().split("\n") or ["0"]
    if p.returncode != 0:
        raise RuntimeError(f"{method} --memory-mb {memory_mb:g} failed: {' '.join(err)[-300:]}")
    return int(peak) / 1024.0, time.perf_counter() - t


def budgets(plan: dict, size: int = 1024, bands: int = 200) -> tuple:
    """The real command line on a ``size``² × ``bands`` uint16 scene at each budget of
    ``plan`` ({method: budgets}): peak RSS, the method's fixed base (the same command on a
    16 × 16 scene: interpreter, GDAL, torch and the prior) and (peak − base) / budget."""
    from urdm_plugin.core.io.library import SpectralLibrary, write_library_csv

    rows = []
    with tempfile.TemporaryDirectory(prefix="urdm-bench-budget-") as tmp:
        scene, tiny, lib = (os.path.join(tmp, f) for f in ("scene.tif", "tiny.tif", "lib.csv"))
        for path, n in ((scene, size), (tiny, 16)):
            subprocess.run([sys.executable, __file__, "--generate", path, "--size", str(n), "--bands", str(bands)],
                           check=True)
        wl = np.arange(380.0, 2520.0, 1.0)
        write_library_csv(lib, SpectralLibrary(["Vegetation", "Water", "Soil", "Road"], wl, _library(wl)))
        for method, mbs in plan.items():
            base, _ = _cli_peak_mb(tmp, tiny, lib, method, 512)
            for mb in mbs:
                peak, sec = _cli_peak_mb(tmp, scene, lib, method, mb)
                ratio = (peak - base) / mb
                rows.append({"method": method, "memory_mb": mb, "peak_rss_mb": round(peak), "base_mb": round(base),
                             "above_base_per_budget": round(ratio, 2), "seconds": round(sec, 1),
                             "within": ratio <= BUDGET_FACTOR})
                print(json.dumps(rows[-1]), flush=True)
    md = [f"### Memory budget: the command line on {size}×{size}×{bands} (uint16, 400 MB as float32)\n",
          "| method | --memory-mb | peak RSS (MB) | fixed base (MB) | (peak − base) / budget | "
          f"within {BUDGET_FACTOR}× | seconds |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['method']} | {r['memory_mb']} | {r['peak_rss_mb']} | {r['base_mb']} | {r['above_base_per_budget']} "
           f"| {'yes' if r['within'] else '**no**'} | {r['seconds']} |" for r in rows]
    md.append("\nBase: the same command on a 16 × 16 scene (interpreter, GDAL, and for URDM torch with the "
              "prior). URDM runs the fast preset.")
    return rows, "\n".join(md) + "\n"


def run(profile: str = "quick") -> dict:
    """``make bench``: the I/O path alone at 256 MB, then the command line at each budget."""
    r = io_path(memory_mb=256)
    rows, md = budgets(PROFILES[profile])
    head = ["### Block-wise read + match + write alone (stand-in solver)\n",
            "| scene | budget (MB) | blocks | peak RSS (MB) | target (MB) |", "|---|---|---|---|---|",
            f"| {r['scene']} | {r['memory_mb_budget']:g} | {r['blocks']} | {r['peak_rss_mb']} | {r['target_mb']:g} |", ""]
    out = ROOT / "bench_results" / "io_memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"io_path": r, "budgets": rows}, indent=2) + "\n")
    return {"markdown": "\n".join(head) + md, "json": str(out.relative_to(ROOT)), "io_path": r, "budgets": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--memory-mb", type=float, default=256)
    ap.add_argument("--keep", action="store_true", help="keep the temporary scene and outputs")
    ap.add_argument("--generate", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--budgets", action="store_true",
                    help="also measure the command line at each memory budget (what make bench runs)")
    ap.add_argument("--profile", choices=tuple(PROFILES), default="quick")
    a = ap.parse_args(argv)
    if a.generate:
        generate(a.generate, a.size, a.bands)
        return 0
    if a.budgets:
        print(run(a.profile)["markdown"])
        return 0
    r = io_path(a.size, a.bands, a.memory_mb, a.keep)
    print("| scene | float32 size (MB) | budget (MB) | bands used | blocks | peak RSS (MB) | target (MB) | read+match+write (s) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {r['scene']} | {r['scene_mb']} | {r['memory_mb_budget']:g} | {r['bands_used']} ({r['resampling']}) | "
          f"{r['blocks']} | {r['peak_rss_mb']} | {r['target_mb']:g} | {r['seconds_read_match_write']} |")
    out = ROOT / "bench_results" / "io_memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}; {'PASS' if r['passed'] else 'FAIL'} (peak < {TARGET_MB:g} MB)")
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
