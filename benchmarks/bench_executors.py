"""Tiles on executors: the same TV run solved here, on a 2-process pool and on a local Dask
cluster (2 worker processes). Results must be identical; the table reports wall times.

Synthetic 384 × 384 × 60 scene, P = 4, TV with λ chosen from the scene once, 128² tiles
(16 tiles). On this project's 2-core machine two workers are the most it can show; a
cluster of machines runs the same code (``--scheduler tcp://host:8786`` on the CLI).

    .venv/bin/python -m benchmarks.bench_executors --profile quick
    .venv/bin/python -m benchmarks.run_all --only executors
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROFILES = {"quick": {"size": 384, "bands": 60, "tile": 128, "max_iter": 100},
            "full": {"size": 768, "bands": 100, "tile": 128, "max_iter": 200}}


def run(profile: str = "quick", out: str | None = None) -> dict:
    from urdm_plugin.core.engine.arrays import unmix_array_full
    from urdm_plugin.core.synthetic import BENCHMARK_SEED_BASE, make_scene

    cfg = PROFILES[profile]
    sc = make_scene(height=cfg["size"], width=cfg["size"], n_endmembers=4, snr_db=30.0,
                    seed=BENCHMARK_SEED_BASE + 900, n_bands=cfg["bands"])
    kw = dict(tile_size=cfg["tile"], max_iter=cfg["max_iter"])

    def timed(executor=None):
        t0 = time.perf_counter()
        A, _, info = unmix_array_full(sc.Y, sc.E, "tv", executor=executor, **kw)
        return time.perf_counter() - t0, A, info

    rows = []
    t, A0, info = timed()
    rows.append({"executor": "none (here)", "workers": 1, "seconds": t})
    with ProcessPoolExecutor(2) as pool:
        timed(pool)  # warm the workers (imports)
        t, A, _ = timed(pool)
    rows.append({"executor": "ProcessPoolExecutor", "workers": 2, "seconds": t, "identical": bool(np.array_equal(A, A0))})
    try:
        import distributed
    except ImportError:
        distributed = None
    if distributed is not None:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            timed(client)
            t, A, _ = timed(client)
        rows.append({"executor": "dask.distributed LocalCluster", "workers": 2, "seconds": t,
                     "identical": bool(np.array_equal(A, A0))})
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = base / r["seconds"]
    lines = [f"### Tiles on executors ({profile}: {cfg['size']}² × {cfg['bands']} bands, TV, "
             f"{info['tiles']} tiles of {cfg['tile']}², one scene weight)", "",
             "| executor | workers | seconds | speed-up | identical to serial |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['executor']} | {r['workers']} | {r['seconds']:.1f} | {r['speedup']:.2f}× | "
                     f"{'–' if 'identical' not in r else ('yes' if r['identical'] else 'NO')} |")
    path = Path(out) if out else ROOT / "bench_results" / "executors.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "executors", "profile": profile, "config": cfg, "rows": rows},
                               indent=2) + "\n")
    return {"name": "executors", "markdown": "\n".join(lines) + "\n", "json": str(path), "rows": rows}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    print(run(args.profile, args.out)["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
