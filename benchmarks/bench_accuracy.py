"""Accuracy benchmark: every available method on the real scenes and synthetic scenes.

Scenes
- Samson and Jasper Ridge (../shared/data) as shipped, and with white Gaussian noise at
  SNR = 10·log10(mean(Y²)/σ²) of 20/30(/40) dB, several noise seeds each.
- Synthetic scenes from core.synthetic.make_scene (seeds ≥ BENCHMARK_SEED_BASE = 1 000 000,
  disjoint from the prior's training seeds) at the same SNRs.

Methods: every registry method that can run here (``fcls scls nnls ucls tv urdm``), with
TV and URDM weights chosen automatically from each scene, plus ``tv_oracle``: TV with the
weight that gives the lowest RMSE against the truth, from a λ grid together with the
automatic choice — an upper reference no real run can reach.

Reported per (scene, condition, method): abundance RMSE mean ± sd over seeds, the paired
difference to FCLS (same noise draw) with a 95 % t-interval, SRE (dB), seconds and the peak
RSS (MiB, sampled while the method ran). Prints markdown tables and writes
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
    # quick: must fit (with the other quick benchmarks) in 15 min on 2 shared CPU cores
    "quick": {
        "real_snrs": [20.0, 30.0],
        "seeds": 5,
        "synthetic": {"size": 64, "P": 4, "bands": 120, "snrs": [20.0, 30.0], "seeds": 5,
                      "kinds": ["mixed"]},
        "tv_grid": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
        "urdm_quality": "balanced",  # the shipped default setting
        "urdm_conditions": ["as shipped", "20 dB", "30 dB"],  # the conditions the targets name
    },
    "full": {
        "real_snrs": [20.0, 30.0, 40.0],
        "seeds": 10,
        "synthetic": {"size": 96, "P": 5, "bands": 200, "snrs": [20.0, 30.0, 40.0], "seeds": 10,
                      "kinds": ["mixed", "regions"]},
        "tv_grid": [float(x) for x in np.geomspace(1e-6, 1.0, 13)],
        "urdm_quality": "balanced",
        "urdm_conditions": None,  # all
    },
}

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
    from urdm_plugin.core.api import method_ready
    from urdm_plugin.core.methods import METHOD_IDS

    run, skipped = [], {}
    for mid in METHOD_IDS:
        ok, why = method_ready(mid)
        if ok:
            run.append(mid)
            if mid == "tv":
                run.append("tv_oracle")
        else:
            skipped[mid] = why
    return run, skipped


def _solve(method: str, Y, E, cfg: dict, seed: int):
    """(A (P,H,W), info) for one method id (tv_oracle handled by the caller)."""
    from urdm_plugin.core.api import unmix_array_full

    opts = {}
    if method == "urdm":
        opts = {"quality": cfg["urdm_quality"], "seed": seed}
    A, _std, info = unmix_array_full(Y, E, method, **opts)
    return A, info


def evaluate(Y, E, A_ref, methods: list, cfg: dict, seed: int, skipped: dict,
             condition: str = "") -> list:
    """One condition: run every method, return rows {method, rmse, sre, seconds, peak_mb, lam}."""
    from urdm_plugin.core.errors import UrdmError
    from urdm_plugin.core.metrics import abundance_rmse, sre_db

    rows = []
    tv_auto = None
    for m in methods:
        if m in skipped:
            continue
        if m == "urdm" and cfg.get("urdm_conditions") and condition not in cfg["urdm_conditions"]:
            continue
        if m == "tv_oracle":
            t0 = time.perf_counter()
            best = tv_auto
            with PeakRSS() as mem:
                from urdm_plugin.core.api import unmix_array_full

                for lam in cfg["tv_grid"]:
                    A, _s, _i = unmix_array_full(Y, E, "tv", lam_tv=lam)
                    r = abundance_rmse(A, A_ref)
                    if best is None or r < best[0]:
                        best = (r, A, float(lam))
            rows.append({"method": m, "rmse": best[0], "sre_db": sre_db(best[1], A_ref),
                         "seconds": time.perf_counter() - t0, "peak_mb": mem.peak_mb, "lam": best[2]})
            continue
        t0 = time.perf_counter()
        try:
            with PeakRSS() as mem:
                A, info = _solve(m, Y, E, cfg, seed)
        except UrdmError as exc:  # e.g. urdm without shipped weights: skip it from now on
            skipped[m] = str(exc)
            continue
        sec = time.perf_counter() - t0
        r = abundance_rmse(A, A_ref)
        lam = info.get("lam") if isinstance(info.get("lam"), (int, float)) else None
        rows.append({"method": m, "rmse": r, "sre_db": sre_db(A, A_ref), "seconds": sec,
                     "peak_mb": mem.peak_mb, "lam": lam})
        if m == "tv":
            tv_auto = (r, A, lam)
    return rows


def conditions(cfg: dict, have_real: bool):
    """Yield (scene, condition label, seed index, loader) for the profile."""
    from benchmarks import scenes

    if have_real:
        for name in ("samson", "jasper_ridge"):
            yield name, "as shipped", 0, (lambda n=name: _real(scenes, n, None, 0))
            for snr in cfg["real_snrs"]:
                for k in range(cfg["seeds"]):
                    yield name, f"{snr:g} dB", k, (lambda n=name, s=snr, k=k: _real(scenes, n, s, k))
    syn = cfg["synthetic"]
    for kind in syn["kinds"]:
        for snr in syn["snrs"]:
            for k in range(syn["seeds"]):
                yield f"synthetic-{kind}", f"{snr:g} dB", k, (lambda s=snr, k=k, kind=kind: _synthetic(syn, kind, s, k))


_REAL_CACHE: dict = {}


def _real(scenes, name: str, snr: Optional[float], k: int):
    if name not in _REAL_CACHE:
        _REAL_CACHE[name] = scenes.load(name)
    sc = _REAL_CACHE[name]
    Y = sc.Y if snr is None else scenes.with_noise(sc.Y, snr, NOISE_SEED_BASE + 1000 * int(snr) + k)
    return Y, sc.E, sc.A


def _synthetic(syn: dict, kind: str, snr: float, k: int):
    from urdm_plugin.core.synthetic import make_scene

    seed = SYNTH_SEED_BASE + k  # the same clean scene at every SNR: SNRs are comparable
    sc = make_scene(height=syn["size"], width=syn["size"], n_endmembers=syn["P"], snr_db=snr,
                    seed=seed, kind=kind, n_bands=syn["bands"])
    return sc.Y, sc.E, sc.A


def summarise(runs: list) -> list:
    """Aggregate runs per (scene, condition, method) with paired differences to FCLS."""
    out = []
    keys = []
    for r in runs:
        key = (r["scene"], r["condition"], r["method"])
        if key not in keys:
            keys.append(key)
    fcls = {(r["scene"], r["condition"], r["seed"]): r["rmse"] for r in runs if r["method"] == "fcls"}
    tv = {(r["scene"], r["condition"], r["seed"]): r["rmse"] for r in runs if r["method"] == "tv"}
    for scene, cond, method in keys:
        rs = [r for r in runs if (r["scene"], r["condition"], r["method"]) == (scene, cond, method)]
        rm = np.array([r["rmse"] for r in rs])
        d = np.array([r["rmse"] - fcls[(scene, cond, r["seed"])] for r in rs
                      if (scene, cond, r["seed"]) in fcls])
        dm, lo, hi = t_interval(d) if d.size else (float("nan"),) * 3
        dt = np.array([r["rmse"] - tv[(scene, cond, r["seed"])] for r in rs
                       if (scene, cond, r["seed"]) in tv]) if method not in ("tv", "fcls") else np.array([])
        tm, tlo, thi = t_interval(dt) if dt.size else (float("nan"),) * 3
        lams = [r["lam"] for r in rs if r.get("lam") is not None]
        out.append({
            "scene": scene, "condition": cond, "method": method, "n": len(rs),
            "rmse_mean": float(rm.mean()), "rmse_sd": float(rm.std(ddof=1)) if rm.size > 1 else 0.0,
            "diff_vs_fcls": dm, "diff_ci95": [lo, hi],
            "diff_vs_tv": tm, "diff_vs_tv_ci95": [tlo, thi],
            "sre_db_mean": float(np.mean([r["sre_db"] for r in rs])),
            "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
            "peak_rss_mb": float(max(r["peak_mb"] for r in rs)),
            "lam_median": float(np.median(lams)) if lams else None,
        })
    return out


def markdown(summary: list, skipped: dict) -> str:
    lines = ["| scene | condition | method | n | RMSE mean ± sd | Δ vs FCLS [95 % CI] | Δ vs TV [95 % CI] | SRE dB | s | peak RSS MiB | λ |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        if s["method"] == "fcls":
            delta = "—"
        elif s["n"] > 1:
            delta = f"{s['diff_vs_fcls']:+.4f} [{s['diff_ci95'][0]:+.4f}, {s['diff_ci95'][1]:+.4f}]"
        else:
            delta = f"{s['diff_vs_fcls']:+.4f}"
        if math.isnan(s["diff_vs_tv"]):
            dtv = ""
        elif s["n"] > 1:
            dtv = f"{s['diff_vs_tv']:+.4f} [{s['diff_vs_tv_ci95'][0]:+.4f}, {s['diff_vs_tv_ci95'][1]:+.4f}]"
        else:
            dtv = f"{s['diff_vs_tv']:+.4f}"
        lam = f"{s['lam_median']:.2g}" if s["lam_median"] is not None else ""
        lines.append(f"| {s['scene']} | {s['condition']} | {s['method']} | {s['n']} | "
                     f"{s['rmse_mean']:.4f} ± {s['rmse_sd']:.4f} | {delta} | {dtv} | {s['sre_db_mean']:.2f} | "
                     f"{s['seconds_mean']:.2f} | {s['peak_rss_mb']:.0f} | {lam} |")
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
        for row in evaluate(Y, E, A, methods, cfg, NOISE_SEED_BASE + k, skipped, cond):
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
