"""Accuracy benchmark where the truth is exact: semi-synthetic and synthetic scenes.

Scenes
- **Semi-synthetic** (the main table): the Samson and Jasper Ridge reference maps (clipped
  at 0, renormalised to sum to one) mixed with their shipped endmembers through the linear
  model — real spatial structure, exact truth (``benchmarks.scenes.semisynthetic``) — with
  three kinds of noise: white, band-dependent (σ varying ×5 across bands) and endmember
  variability (each pixel's spectrum scaled by a smooth random factor in [0.8, 1.2], the
  library unchanged) plus white noise; SNR = 10·log10(mean(EA)²/σ²) of 20–40 dB, ≥ 5 noise
  seeds each.
- **Synthetic**: ``core.synthetic.make_scene`` (seeds ≥ BENCHMARK_SEED_BASE, disjoint from
  the prior's training seeds), white noise.
- **As shipped** (agreement with the published reference maps only): Samson and Jasper
  Ridge as distributed. Those reference maps are estimates made by some other method, so
  a score here rewards sharing that method's bias as much as accuracy; it cannot show what
  a spatial prior adds. FCLS must reproduce 0.0851 / 0.1678.

Methods: ``fcls``; ``tv`` and ``urdm`` with their automatic weights (SURE, chosen from each
scene's own data); ``tv_oracle`` and ``urdm_oracle``: the same methods with the weight that
gives the lowest RMSE against the truth on a grid (plus the automatic choice) — reference
values no real run can reach.

Reported per (scene, condition, method): abundance RMSE mean ± sd over seeds, paired
differences (same noise draw) to FCLS and to TV (auto) with 95 % t-intervals, and for URDM
its paired relative difference to ``tv_oracle`` and to ``urdm_oracle`` (%, 95 % interval);
seconds and the peak RSS (MiB). Prints markdown tables and writes
``bench_results/accuracy.json``.

    .venv/bin/python -m benchmarks.bench_accuracy --profile quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from urdm_plugin.core.synthetic import BENCHMARK_SEED_BASE  # noqa: E402

PROFILES = {
    # quick: the conditions the targets name, 5 seeds (about 40 min on 2 shared CPU cores)
    "quick": {
        "semi": {"white": [20.0, 30.0, 40.0], "band": [20.0, 30.0], "variability": [20.0, 30.0]},
        "seeds": 5,
        "synthetic": {"size": 64, "P": 4, "bands": 120, "snrs": [20.0, 30.0], "seeds": 5,
                      "kinds": ["mixed"]},
    },
    "full": {
        "semi": {k: [20.0, 25.0, 30.0, 40.0] for k in ("white", "band", "variability")},
        "seeds": 10,
        "synthetic": {"size": 96, "P": 5, "bands": 200, "snrs": [20.0, 30.0, 40.0], "seeds": 10,
                      "kinds": ["mixed", "regions"]},
    },
}
#: Weight grids of the oracles (chosen with the truth; the automatic choice is added).
TV_ORACLE_GRID = tuple(float(x) for x in np.geomspace(2e-4, 1.6e-2, 7))
URDM_ORACLE_GRID = (0.06, 0.1, 0.17, 0.3, 0.52, 1.0, 1.7)
METHODS = ("fcls", "tv", "tv_oracle", "urdm", "urdm_oracle")

#: Seed offsets inside the benchmark range, so noise draws and synthetic scenes never collide.
NOISE_SEED_BASE = BENCHMARK_SEED_BASE + 10_000
SYNTH_SEED_BASE = BENCHMARK_SEED_BASE + 20_000


class PeakRSS:
    """Context manager sampling this process's RSS every ``interval`` s; ``.peak_mb``."""

    def __init__(self, interval: float = 0.01):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return False

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def t_interval(d: np.ndarray) -> tuple:
    """(mean, lo, hi) of the 95 % t-interval of the mean of ``d``; lo = hi = mean for n < 2."""
    d = np.asarray(d, float)
    m = float(d.mean())
    if d.size < 2:
        return m, m, m
    from scipy import stats

    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return m, m - half, m + half


def method_list() -> tuple:
    """(method ids to run, {id: reason} for those skipped)."""
    from urdm_plugin.core.methods.registry import method_available

    run, skipped = [], {}
    for mid in METHODS:
        ok, why = method_available(mid.replace("_oracle", ""))
        if ok:
            run.append(mid)
        else:
            skipped[mid] = why
    return run, skipped


def _solve(method: str, Y, E, seed: int, **opts):
    """(A (P,H,W), info) through the public API."""
    from urdm_plugin.core.engine.arrays import unmix_array_full

    if method == "urdm":
        opts["seed"] = seed
    A, _std, info = unmix_array_full(Y, E, method, **opts)
    return A, info


def evaluate(Y, E, A_ref, methods: list, seed: int, skipped: dict) -> list:
    """One condition: run every method, return rows {method, rmse, sre, seconds, peak_mb, lam}."""
    from urdm_plugin.core.errors import UrdmError
    from urdm_plugin.core.metrics import abundance_rmse, sre_db

    rows = []
    auto = {}
    for m in methods:
        if m in skipped:
            continue
        base = m.replace("_oracle", "")
        t0 = time.perf_counter()
        try:
            with PeakRSS() as mem:
                if m.endswith("_oracle"):
                    key, grid = "lam", (TV_ORACLE_GRID if base == "tv" else URDM_ORACLE_GRID)
                    best = auto.get(base)
                    for lam in grid:
                        A, _info = _solve(base, Y, E, seed, **{key: lam})
                        r = abundance_rmse(A, A_ref)
                        if best is None or r < best[0]:
                            best = (r, A, float(lam))
                    r, A, lam = best
                else:
                    A, info = _solve(m, Y, E, seed)
                    r = abundance_rmse(A, A_ref)
                    lam = info.get("lam") if isinstance(info.get("lam"), (int, float)) else None
                    if base in ("tv", "urdm"):
                        auto[base] = (r, A, lam)
        except UrdmError as exc:  # e.g. urdm without shipped weights: skip it from now on
            skipped[m] = str(exc)
            continue
        rows.append({"method": m, "rmse": r, "sre_db": sre_db(A, A_ref),
                     "seconds": time.perf_counter() - t0, "peak_mb": mem.peak_mb, "lam": lam})
    return rows


def conditions(cfg: dict, have_real: bool):
    """Yield (scene, condition label, seed index, loader) for the profile."""
    from benchmarks import scenes

    if have_real:
        for name in ("samson", "jasper_ridge"):
            yield name, "as shipped", 0, (lambda n=name: _real(scenes, n))
            for kind, snrs in cfg["semi"].items():
                for snr in snrs:
                    for k in range(cfg["seeds"]):
                        yield (f"{name} (semi-synthetic)", f"{kind} {snr:g} dB", k,
                               (lambda n=name, s=snr, k=k, kind=kind: _semi(scenes, n, s, k, kind)))
    syn = cfg["synthetic"]
    for kind in syn["kinds"]:
        for snr in syn["snrs"]:
            for k in range(syn["seeds"]):
                yield f"synthetic-{kind}", f"white {snr:g} dB", k, (lambda s=snr, k=k, kind=kind: _synthetic(syn, kind, s, k))


_REAL_CACHE: dict = {}


def _scene(scenes, name: str):
    if name not in _REAL_CACHE:
        _REAL_CACHE[name] = scenes.load(name)
    return _REAL_CACHE[name]


def _real(scenes, name: str):
    sc = _scene(scenes, name)
    return sc.Y, sc.E, sc.A


def _semi(scenes, name: str, snr: float, k: int, kind: str):
    sc = _scene(scenes, name)
    Y, A = scenes.semisynthetic(sc, snr, NOISE_SEED_BASE + 1000 * int(snr) + k, kind)
    return Y, sc.E, A


def _synthetic(syn: dict, kind: str, snr: float, k: int):
    from urdm_plugin.core.synthetic import make_scene

    seed = SYNTH_SEED_BASE + k  # the same clean scene at every SNR: SNRs are comparable
    sc = make_scene(height=syn["size"], width=syn["size"], n_endmembers=syn["P"], snr_db=snr,
                    seed=seed, kind=kind, n_bands=syn["bands"])
    return sc.Y, sc.E, sc.A


def _paired(rs: list, ref: dict, scene: str, cond: str, relative: bool = False) -> tuple:
    """Paired (mean, lo, hi) of rmse − ref (or rmse/ref − 1 with ``relative``) over seeds."""
    d = [(r["rmse"] / ref[(scene, cond, r["seed"])] - 1.0) if relative else r["rmse"] - ref[(scene, cond, r["seed"])]
         for r in rs if (scene, cond, r["seed"]) in ref]
    return t_interval(np.array(d)) if d else (float("nan"),) * 3


def summarise(runs: list) -> list:
    """Aggregate runs per (scene, condition, method) with paired differences."""
    out = []
    keys = list(dict.fromkeys((r["scene"], r["condition"], r["method"]) for r in runs))
    ref = {m: {(r["scene"], r["condition"], r["seed"]): r["rmse"] for r in runs if r["method"] == m}
           for m in METHODS}
    for scene, cond, method in keys:
        rs = [r for r in runs if (r["scene"], r["condition"], r["method"]) == (scene, cond, method)]
        rm = np.array([r["rmse"] for r in rs])
        row = {"scene": scene, "condition": cond, "method": method, "n": len(rs),
               "rmse_mean": float(rm.mean()), "rmse_sd": float(rm.std(ddof=1)) if rm.size > 1 else 0.0,
               "sre_db_mean": float(np.mean([r["sre_db"] for r in rs])),
               "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
               "peak_rss_mb": float(max(r["peak_mb"] for r in rs))}
        lams = [r["lam"] for r in rs if r.get("lam") is not None]
        row["lam_median"] = float(np.median(lams)) if lams else None
        if method != "fcls":
            m, lo, hi = _paired(rs, ref["fcls"], scene, cond)
            row.update(diff_vs_fcls=m, diff_ci95=[lo, hi])
        if method == "urdm":
            for other, rel in (("tv", False), ("tv_oracle", True), ("urdm_oracle", True)):
                m, lo, hi = _paired(rs, ref[other], scene, cond, relative=rel)
                row[f"vs_{other}"] = [m, lo, hi]
        out.append(row)
    return out


def _ci(v, pct: bool = False) -> str:
    if v is None or math.isnan(v[0]):
        return ""
    f = (lambda x: f"{100 * x:+.1f} %") if pct else (lambda x: f"{x:+.4f}")
    return f"{f(v[0])} [{f(v[1])}, {f(v[2])}]"


def markdown(summary: list, skipped: dict) -> str:
    """One row per (scene, condition): the five methods side by side, then URDM's intervals."""
    by = {}
    for s in summary:
        by.setdefault((s["scene"], s["condition"]), {})[s["method"]] = s
    lines = ["| scene | condition | n | FCLS | TV (auto) | TV (oracle) | **URDM** (auto) | URDM (oracle λ) "
             "| URDM − FCLS [95 % CI] | URDM − TV auto [95 % CI] | URDM vs TV oracle | URDM vs URDM oracle | λ auto |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (scene, cond), ms in by.items():
        def v(m, ms=ms):
            return f"{ms[m]['rmse_mean']:.4f}" if m in ms else "–"
        u = ms.get("urdm", {})
        lam = f"{u['lam_median']:.2g}" if u.get("lam_median") is not None else ""
        n = max(x["n"] for x in ms.values())
        lines.append(f"| {scene} | {cond} | {n} | {v('fcls')} | {v('tv')} | {v('tv_oracle')} | **{v('urdm')}** | "
                     f"{v('urdm_oracle')} | {_ci([u.get('diff_vs_fcls', float('nan'))] + u.get('diff_ci95', [0, 0])) if u else ''} | "
                     f"{_ci(u.get('vs_tv'))} | {_ci(u.get('vs_tv_oracle'), True)} | {_ci(u.get('vs_urdm_oracle'), True)} | {lam} |")
    for m, why in skipped.items():
        lines.append(f"\nSkipped `{m}`: {why}")
    return "\n".join(lines) + "\n"


def run(profile: str = "quick", out_dir: Optional[str] = None, progress: bool = True) -> dict:
    """Run the accuracy benchmark; write ``<out_dir>/accuracy.json`` and return
    ``{"name", "markdown", "json", "summary"}`` (the run_all interface)."""
    from benchmarks import scenes

    cfg = PROFILES[profile]
    out = Path(out_dir) if out_dir else ROOT / "bench_results"
    out.mkdir(parents=True, exist_ok=True)
    methods, skipped = method_list()
    have_real = scenes.available()
    if not have_real:
        skipped["real scenes"] = f"not found at {scenes.SHARED_DATA}"
    conds = list(conditions(cfg, have_real))
    runs = []
    t0 = time.perf_counter()
    try:
        from tqdm import tqdm

        it = tqdm(conds, desc="accuracy", file=sys.stderr, disable=not progress)
    except ImportError:  # pragma: no cover
        it = conds
    for scene, cond, k, loader in it:
        Y, E, A = loader()
        for row in evaluate(Y, E, A, methods, NOISE_SEED_BASE + k, skipped):
            runs.append({"scene": scene, "condition": cond, "seed": k, **row})
    summary = summarise(runs)
    md = f"### Accuracy ({profile} profile, {time.perf_counter() - t0:.0f} s)\n\n" + markdown(summary, skipped)
    result = {
        "profile": profile, "config": cfg, "methods": methods, "skipped": skipped,
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "numpy": np.__version__},
        "seconds": time.perf_counter() - t0, "summary": summary, "runs": runs,
    }
    path = out / "accuracy.json"
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return {"name": "accuracy", "markdown": md, "json": str(path), "summary": summary}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--out", default=None, help="output folder (default bench_results/)")
    a = ap.parse_args(argv)
    res = run(a.profile, a.out)
    print(res["markdown"])
    print(f"wrote {res['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
