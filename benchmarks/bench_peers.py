"""Peer benchmark: our command line beside Orfeo ToolBox's HyperspectralUnmixing on the same
files, and URDM's time against scene size with the split of its seconds.

1. Peer table: a 1024 × 1024 × 200 float32 scene of 6 materials (30 dB,
   :mod:`benchmarks.peer_scene`) written band- and pixel-interleaved, DEFLATE-compressed and
   not; on each, end to end through each command line, in one run: OTB
   ``otbcli_HyperspectralUnmixing -ua ucls|isra`` (when installed: ``make setup`` installs
   Debian's ``otb-bin`` where it can) and ``python -m urdm_plugin unmix --method
   ucls|nnls|fcls|tv|urdm``. Wall time, peak RSS and abundance RMSE against the exact truth.
2. URDM time against size: the command line on band-interleaved DEFLATE scenes, with run.json's
   ``seconds_by_stage`` (plan, read, solve, write, and the method's own parts of its solve).

    .venv/bin/python -m benchmarks.bench_peers --profile quick      # what make bench runs
    .venv/bin/python -m benchmarks.bench_peers --profile full

Prints markdown tables and writes ``bench_results/peers.json``. Times are for the machine the
benchmark ran on (its core count is printed): compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_io_memory import _PEAK_RSS  # noqa: E402
from benchmarks.peer_scene import write_scene  # noqa: E402

OTB = "otbcli_HyperspectralUnmixing"
LAYOUTS = [("band", "deflate"), ("pixel", "deflate"), ("band", "none"), ("pixel", "none")]
PROFILES = {
    "quick": {"size": 1024, "layouts": LAYOUTS[:2], "ours": ["ucls", "fcls"], "otb": ["ucls"],
              "urdm_sizes": [128]},
    "full": {"size": 1024, "layouts": LAYOUTS, "ours": ["ucls", "nnls", "fcls", "tv", "urdm"],
             "otb": ["ucls", "isra"], "urdm_sizes": [256, 512, 1024]},
}


def _timed(cmd: list, cwd=ROOT) -> dict:
    """Run ``cmd`` through the peak-RSS launcher: wall seconds, peak RSS (MB), exit, stderr tail."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _PEAK_RSS, *cmd], capture_output=True, text=True, cwd=str(cwd))
    wall = time.perf_counter() - t
    *lines, peak = p.stderr.rstrip().split("\n") or ["0"]
    try:
        peak_mb = int(peak) / 1024.0
    except ValueError:
        peak_mb, lines = float("nan"), lines + [peak]
    return {"seconds": round(wall, 2), "peak_rss_mb": round(peak_mb), "exit": p.returncode,
            "stderr": "\n".join(lines)[-300:]}


def _rmse(A: np.ndarray, truth: np.ndarray) -> float:
    ok = np.isfinite(A).all(axis=0) & (A > -9000).all(axis=0)
    return float(np.sqrt(np.mean((A[:, ok].astype(np.float64) - truth[:, ok]) ** 2)))


def _read_stack(paths: list) -> np.ndarray:
    """The maps of ``paths`` (one-band files, or OTB's one P-band file) as (P, H, W)."""
    from osgeo import gdal

    arrays = [gdal.Open(str(p)).ReadAsArray() for p in paths]
    return np.concatenate([a[None] if a.ndim == 2 else a for a in arrays])


def _endmember_image(lib_csv: Path, out: Path) -> Path:
    """OTB's endmembers: a P × 1 image of B bands (one pixel per endmember, library order)."""
    from osgeo import gdal

    from urdm_plugin.core.io.library import read_library

    E = read_library(lib_csv).spectra  # (B, P)
    ds = gdal.GetDriverByName("GTiff").Create(str(out), E.shape[1], 1, E.shape[0], gdal.GDT_Float32)
    ds.WriteRaster(0, 0, E.shape[1], 1, np.ascontiguousarray(E[:, None, :], np.float32).tobytes(),
                   buf_type=gdal.GDT_Float32)
    ds = None
    return out


def ours(image: Path, lib: Path, out: Path, method: str) -> dict:
    cmd = [sys.executable, "-m", "urdm_plugin", "unmix", str(image), str(lib), str(out), "--method", method,
           "--no-water-mask", "--quiet"]
    r = _timed(cmd)
    if r["exit"] == 0:
        run = json.loads((out / "run.json").read_text())
        r["maps"] = [out / e["file"] for e in run["endmembers"]]
        r["seconds_by_stage"] = run.get("seconds_by_stage", {})
    return r


def otb(image: Path, endmembers: Path, out: Path, algorithm: str) -> dict:
    r = _timed([OTB, "-in", str(image), "-ie", str(endmembers), "-out", str(out), "float", "-ua", algorithm])
    if r["exit"] == 0:
        r["maps"] = [out]
    return r


def peers(cfg: dict, tmp: Path) -> tuple:
    rows = []
    have_otb = shutil.which(OTB) is not None
    for interleave, compress in cfg["layouts"]:
        image = tmp / f"scene_{interleave}_{compress}.tif"
        lib = write_scene(image, cfg["size"], 200, 6, interleave, compress)
        truth = np.load(str(image) + ".truth.npy")
        layout = f"{interleave}-interleaved, {'DEFLATE' if compress != 'none' else 'uncompressed'}"
        em = _endmember_image(lib, tmp / "endmembers.tif")
        jobs = [("OTB", a) for a in cfg["otb"] if have_otb] + [("ours", m) for m in cfg["ours"]]
        for tool, method in jobs:
            name, out = f"{tool} {method}", tmp / f"out_{len(rows)}"
            r = otb(image, em, out.with_suffix(".tif"), method) if tool == "OTB" else ours(image, lib, out, method)
            rmse = _rmse(_read_stack(r.pop("maps")), truth) if r["exit"] == 0 else None
            rows.append({"layout": layout, "tool": name, "rmse": None if rmse is None else round(rmse, 4),
                         "file_mb": round(image.stat().st_size / 2 ** 20), **r})
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(out, ignore_errors=True)
            Path(str(out) + ".tif").unlink(missing_ok=True)
        image.unlink()
    n = cfg["size"]
    md = [f"### Peers: {n}×{n}×200 float32, P = 6, end to end through each command line (same run)\n",
          "| file | tool | seconds | peak RSS (MB) | abundance RMSE | exit |", "|---|---|---|---|---|---|"]
    md += [f"| {r['layout']} ({r['file_mb']} MB) | {r['tool']} | {r['seconds']} | {r['peak_rss_mb']} | "
           f"{r['rmse'] if r['rmse'] is not None else '—'} | {r['exit']} |" for r in rows]
    if not have_otb:
        md.append(f"\n{OTB} is not installed here (Debian: otb-bin libotb-apps; `make setup` installs them "
                  "where apt offers them): OTB's rows are left out.")
    md.append("\nOTB ucls is unconstrained (negative abundances); ours fcls is the exact sum-to-one, "
              "non-negative solution. RMSE over pixels every tool solved.")
    return rows, "\n".join(md) + "\n"


def urdm_sizes(cfg: dict, tmp: Path) -> tuple:
    rows = []
    for size in cfg["urdm_sizes"]:
        image = tmp / f"urdm_{size}.tif"
        lib = write_scene(image, size, 200, 6, "band", "deflate")
        r = ours(image, lib, tmp / f"urdm_out_{size}", "urdm")
        rmse = _rmse(_read_stack(r.pop("maps")), np.load(str(image) + ".truth.npy")) if r["exit"] == 0 else None
        rows.append({"size": size, "rmse": None if rmse is None else round(rmse, 4), **r})
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(tmp / f"urdm_out_{size}", ignore_errors=True)
        image.unlink()
    stages = list(dict.fromkeys(k for r in rows for k in r.get("seconds_by_stage", {})))
    md = ["### URDM against scene size (command line, defaults, P = 6, 200 bands, band-interleaved DEFLATE)\n",
          "| size | seconds | " + " | ".join(stages) + " | peak RSS (MB) | RMSE | exit |",
          "|---|---|" + "---|" * len(stages) + "---|---|---|"]
    for r in rows:
        split = r.get("seconds_by_stage", {})
        md.append(f"| {r['size']}² | {r['seconds']} | " + " | ".join(str(split.get(k, "—")) for k in stages)
                  + f" | {r['peak_rss_mb']} | {r['rmse'] if r['rmse'] is not None else '—'} | {r['exit']} |")
    md.append("\nStages from run.json's seconds_by_stage: plan (pixel sample included), read, solve (the rest "
              "of the execution), write (rasters written, closed and read back), and the method's own parts "
              "of its solve where it reports them. Seconds: the whole command, start-up included.")
    return rows, "\n".join(md) + "\n"


def run(profile: str = "quick") -> dict:
    cfg = PROFILES[profile]
    with tempfile.TemporaryDirectory(prefix="urdm-bench-peers-") as tmp:
        peer_rows, md1 = peers(cfg, Path(tmp))
        urdm_rows, md2 = urdm_sizes(cfg, Path(tmp))
    md = md1 + "\n" + md2 + f"\nMachine: {platform.machine()}, {os.cpu_count()} cores.\n"
    out = ROOT / "bench_results" / "peers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"profile": profile, "cores": os.cpu_count(), "peers": peer_rows,
                               "urdm_sizes": urdm_rows}, indent=2, default=str) + "\n")
    return {"markdown": md, "json": str(out.relative_to(ROOT))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    a = ap.parse_args(argv)
    print(run(a.profile)["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
