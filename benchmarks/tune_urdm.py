"""Choose URDM's automatic λ on *synthetic* scenes only (never on the benchmark scenes).

    python -m benchmarks.tune_urdm [--quality balanced] [--lams 0.05,0.1,0.2,0.4,0.8]

Scenes come from ``core.synthetic`` with their own seed range (TUNE_SEED_BASE, apart from
training and benchmark seeds), at 20, 30 and 40 dB, P ∈ {3, 5, 8}, all map kinds. For each
λ it reports the mean abundance RMSE relative to FCLS; the λ with the lowest geometric mean
ratio, per SNR, fits ``core.urdm.auto_lambda`` (LAMBDA_AUTO at 20 dB and its slope);
the "auto" column shows the rule itself. Writes bench_results/tune_urdm.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from urdm_plugin.core import solvers, synthetic, urdm

TUNE_SEED_BASE = 3_000_000


def rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", default=urdm.DEFAULT_QUALITY)
    ap.add_argument("--lams", default="0.05,0.1,0.2,0.4,0.8")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", default="bench_results/tune_urdm.json")
    a = ap.parse_args(argv)
    lams = [float(x) for x in a.lams.split(",")]
    rows, ratios = [], {lam: [] for lam in lams}
    k = 0
    for snr in (20.0, 30.0, 40.0):
        for p in (3, 5, 8):
            k += 1
            sc = synthetic.make_scene(a.size, a.size, p, snr, seed=TUNE_SEED_BASE + k)
            B = sc.Y.shape[0]
            base = rmse(solvers.fcls(sc.Y.reshape(B, -1), sc.E).reshape(sc.A.shape), sc.A)
            row = {"snr": snr, "P": p, "fcls": base}
            for lam in [*lams, "auto"]:
                t = time.time()
                A, _, info = urdm.urdm_unmix(sc.Y, sc.E, lam=lam, quality=a.quality, seed=0)
                row[str(lam)] = rmse(A, sc.A)
                ratios.setdefault(lam, []).append(row[str(lam)] / base)
                row[f"s_{lam}"] = round(time.time() - t, 1)
            row["auto_lam"] = round(info["lam"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    geo = {lam: float(np.exp(np.mean(np.log(r)))) for lam, r in ratios.items()}
    best = min((k for k in geo if k != "auto"), key=geo.get)
    print("\n| λ | geometric-mean RMSE / FCLS |\n|---|---|")
    for lam in [*lams, "auto"]:
        print(f"| {lam} | {geo[lam]:.3f}{' ←' if lam == best else ''} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"quality": a.quality, "rows": rows,
                                       "geo_ratio": {str(k): v for k, v in geo.items()}, "best": best}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
