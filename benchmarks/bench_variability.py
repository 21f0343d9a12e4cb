"""Where real errors come from: endmember variability and signal-dependent noise (issue #21).

Scenes (exact truth; ``benchmarks.scenes.semisynthetic`` and ``core.synthetic``):
- **variability**: the Samson / Jasper Ridge reference maps re-mixed with their endmembers,
  each endmember scaled per pixel by a smooth random factor in [0.8, 1.2] (library
  unchanged), white noise;
- **shape**: the same brightness variability plus a smooth ±4 % spectral-shape change per
  endmember and pixel;
- **signal**: no variability; signal-dependent noise (σ ∝ √signal, ×2 beyond 1000 nm);
- **white** (no-regression row): white noise only;
- **synthetic variability**: a ``core.synthetic`` scene (seeds disjoint from the prior's
  training) with the same brightness variability.
SNR 20 / 30 / 40 dB (10·log10(mean(EA)²/mean σ²)), ``seeds`` noise draws each.

Methods with their defaults (weights chosen from the scene's own data): ``fcls``, ``tv``
(auto), ``elmm``, ``urdm`` (auto: the variability model is used when the data show it).
Ablations: ``urdm_plain`` (URDM without ψ: variability "none"), ``urdm_scaling`` (ψ forced
on, to show what it costs where there is no variability). References no user can reach:
``tv_oracle`` and ``urdm_oracle`` (weight chosen on a grid with the truth).

Reported per (scene, condition, method): RMSE mean over seeds; for URDM the paired 95 %
t-intervals of URDM − FCLS, URDM − TV auto, URDM − ELMM and of URDM / best-of(FCLS, TV auto,
ELMM) − 1, and URDM / FCLS. JSON: ``bench_results/variability.json``.

    .venv/bin/python -m benchmarks.bench_variability --profile full   # the README table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_accuracy import NOISE_SEED_BASE, SYNTH_SEED_BASE, t_interval  # noqa: E402

PROFILES = {
    # quick (`make bench`, within its 15-min budget): one real scene, the rows the targets name, 2 seeds
    "quick": {"scenes": ("jasper_ridge",),
              "kinds": {"variability": [20.0, 40.0], "signal": [20.0], "white": [30.0]},
              "seeds": 2, "oracles": False,
              "synthetic": {"size": 64, "P": 4, "bands": 120, "snrs": [20.0], "seeds": 2}},
    # full (`make bench-full`): the README table (≈ 70 min on 2 shared cores); oracles off there —
    # run with --oracles to add the truth-tuned references (about twice the time)
    "full": {"scenes": ("jasper_ridge", "samson"),
             "kinds": {"variability": [20.0, 30.0, 40.0], "shape": [20.0, 40.0], "signal": [20.0, 25.0],
                       "white": [20.0, 30.0]},
             "seeds": 5, "oracles": False,
             "synthetic": {"size": 64, "P": 4, "bands": 120, "snrs": [20.0, 40.0], "seeds": 5}},
}
TV_ORACLE_GRID = tuple(float(x) for x in np.geomspace(2e-4, 1.6e-2, 5))
URDM_ORACLE_GRID = (0.1, 0.3, 1.0, 3.0)
#: method id -> (registry method, fixed options)
METHODS = {
    "fcls": ("fcls", {}), "tv": ("tv", {}), "elmm": ("elmm", {}), "urdm": ("urdm", {}),
    "urdm_plain": ("urdm", {"variability": "none"}), "urdm_scaling": ("urdm", {"variability": "scaling"}),
}


def _solve(method: str, Y, E, seed: int, **opts):
    from urdm_plugin.core.engine.arrays import unmix_array_full

    base, fixed = METHODS[method]
    if base == "urdm":
        opts["seed"] = seed
    A, _std, info = unmix_array_full(Y, E, base, **fixed, **opts)
    return A, info


def _row(method, A, A_ref, t0, info=None, lam=None):
    from urdm_plugin.core.metrics import abundance_rmse

    info = info or {}
    var = info.get("variability_decision") or {}
    if lam is None and isinstance(info.get("lam"), (int, float)):
        lam = float(info["lam"])
    return {"method": method, "rmse": abundance_rmse(A, A_ref), "seconds": time.perf_counter() - t0,
            "lam": lam, "scaling_used": var.get("model") == "scaling" if var else None}


def evaluate(Y, E, A_ref, seed: int, oracles: bool, scaling_ablation: bool = True) -> list:
    """Every method on one scene; rows {method, rmse, seconds, lam, scaling_used}.
    ``scaling_ablation``: also run URDM with ψ forced on (where the scene has no variability
    this shows what the model would cost if it were not decided from the data)."""
    from urdm_plugin.core.metrics import abundance_rmse

    rows = []
    for m in METHODS:
        if m == "urdm_scaling" and not scaling_ablation:
            continue
        t0 = time.perf_counter()
        A, info = _solve(m, Y, E, seed)
        rows.append(_row(m, A, A_ref, t0, info))
    if oracles:
        for base, grid in (("tv", TV_ORACLE_GRID), ("urdm", URDM_ORACLE_GRID)):
            t0 = time.perf_counter()
            best = min(((abundance_rmse(_solve(base, Y, E, seed, lam=lam)[0], A_ref), lam) for lam in grid),
                       key=lambda x: x[0])
            auto = next(r for r in rows if r["method"] == base)
            rmse, lam = min(best, (auto["rmse"], auto["lam"]), key=lambda x: x[0])
            rows.append({"method": f"{base}_oracle", "rmse": rmse, "seconds": time.perf_counter() - t0,
                         "lam": lam, "scaling_used": None})
    return rows


def conditions(cfg: dict, have_real: bool):
    """Yield (scene label, condition, seed index, loader)."""
    from benchmarks import scenes

    if have_real:
        for name in cfg["scenes"]:
            for kind, snrs in cfg["kinds"].items():
                for snr in snrs:
                    for k in range(cfg["seeds"]):
                        yield (f"{name} (semi-synthetic)", f"{kind} {snr:g} dB", k,
                               lambda n=name, s=snr, k=k, kind=kind: _semi(scenes, n, s, k, kind))
    syn = cfg["synthetic"]
    for snr in syn["snrs"]:
        for k in range(syn["seeds"]):
            yield "synthetic-mixed", f"variability {snr:g} dB", k, lambda s=snr, k=k: _synthetic(syn, s, k)


_SCENES: dict = {}


def _semi(scenes, name, snr, k, kind):
    if name not in _SCENES:
        _SCENES[name] = scenes.load(name)
    sc = _SCENES[name]
    Y, A = scenes.semisynthetic(sc, snr, NOISE_SEED_BASE + 1000 * int(snr) + 97 * k + 7, kind)
    return Y, sc.E, A


def _synthetic(syn, snr, k):
    from benchmarks.scenes import variability_factors
    from urdm_plugin.core.synthetic import make_scene

    sc = make_scene(height=syn["size"], width=syn["size"], n_endmembers=syn["P"], snr_db=np.inf,
                    seed=SYNTH_SEED_BASE + 500 + k, kind="mixed", n_bands=syn["bands"])
    rng = np.random.default_rng(NOISE_SEED_BASE + 31 * k + int(snr))
    P, H, W = sc.A.shape
    clean = np.einsum("bp,phw->bhw", sc.E, sc.A * variability_factors(P, H, W, rng))
    sigma = float(np.sqrt(np.mean(clean * clean) / 10 ** (snr / 10)))
    return clean + sigma * rng.standard_normal(clean.shape), sc.E, sc.A


def summarise(runs: list) -> list:
    """Per (scene, condition, method): mean RMSE; for urdm the paired intervals."""
    out = []
    idx = {(r["scene"], r["condition"], r["seed"], r["method"]): r["rmse"] for r in runs}
    keys = list(dict.fromkeys((r["scene"], r["condition"], r["method"]) for r in runs))
    for scene, cond, method in keys:
        rs = [r for r in runs if (r["scene"], r["condition"], r["method"]) == (scene, cond, method)]
        row = {"scene": scene, "condition": cond, "method": method, "n": len(rs),
               "rmse_mean": float(np.mean([r["rmse"] for r in rs])),
               "seconds_mean": float(np.mean([r["seconds"] for r in rs]))}
        lams = [r["lam"] for r in rs if r.get("lam") is not None]
        row["lam_median"] = float(np.median(lams)) if lams else None
        used = [r["scaling_used"] for r in rs if r.get("scaling_used") is not None]
        row["scaling_used"] = f"{sum(used)}/{len(used)}" if used else None
        if method in ("urdm", "urdm_plain", "urdm_scaling", "elmm"):
            seeds = [r["seed"] for r in rs]

            def paired(f, seeds=seeds, scene=scene, cond=cond, method=method):
                d = [f(idx[(scene, cond, s, method)], s) for s in seeds]
                return list(t_interval(np.array(d)))

            def ref(m, s, scene=scene, cond=cond):
                return idx[(scene, cond, s, m)]

            row["minus_fcls"] = paired(lambda u, s: u - ref("fcls", s))
            row["minus_tv"] = paired(lambda u, s: u - ref("tv", s))
            row["minus_elmm"] = paired(lambda u, s: u - ref("elmm", s))
            row["vs_best_rel"] = paired(lambda u, s: u / min(ref(m, s) for m in ("fcls", "tv", "elmm")) - 1.0)
            row["ratio_fcls"] = paired(lambda u, s: u / ref("fcls", s))
        out.append(row)
    return out


def _ci(v, pct=False) -> str:
    if not v:
        return ""
    f = (lambda x: f"{100 * x:+.1f} %") if pct else (lambda x: f"{x:+.4f}")
    return f"{f(v[0])} [{f(v[1])}, {f(v[2])}]"


def markdown(summary: list) -> str:
    by: dict = {}
    for s in summary:
        by.setdefault((s["scene"], s["condition"]), {})[s["method"]] = s
    cols = ("fcls", "tv", "elmm", "urdm", "urdm_plain", "urdm_scaling", "tv_oracle", "urdm_oracle")
    lines = ["| scene | condition | n | FCLS | TV auto | ELMM | **URDM** | URDM w/o ψ | URDM ψ forced | TV oracle "
             "| URDM oracle | URDM − ELMM [95 % CI] | URDM vs best of FCLS/TV/ELMM | URDM / FCLS | ψ used | λ |",
             "|" + "---|" * 16]
    for (scene, cond), ms in by.items():
        def v(m, ms=ms):
            return f"{ms[m]['rmse_mean']:.4f}" if m in ms else "–"
        u = ms.get("urdm", {})
        lam = f"{u['lam_median']:.2g}" if u.get("lam_median") is not None else ""
        ratio = f"{u['ratio_fcls'][0]:.2f}" if u.get("ratio_fcls") else ""
        lines.append(f"| {scene} | {cond} | {u.get('n', '')} | " + " | ".join(
            (f"**{v(c)}**" if c == "urdm" else v(c)) for c in cols)
            + f" | {_ci(u.get('minus_elmm'))} | {_ci(u.get('vs_best_rel'), True)} | {ratio} | "
              f"{u.get('scaling_used') or ''} | {lam} |")
    return "\n".join(lines) + "\n"


def run(profile: str = "quick", out_dir: Optional[str] = None, progress: bool = True) -> dict:
    """Run the benchmark; write ``<out_dir>/variability.json``; return the run_all dict."""
    from benchmarks import scenes

    cfg = PROFILES[profile]
    out = Path(out_dir) if out_dir else ROOT / "bench_results"
    out.mkdir(parents=True, exist_ok=True)
    have_real = scenes.available()
    conds = list(conditions(cfg, have_real))
    t0 = time.perf_counter()
    try:
        from tqdm import tqdm

        it = tqdm(conds, desc="variability", file=sys.stderr, disable=not progress)
    except ImportError:  # pragma: no cover
        it = conds
    runs = []
    for scene, cond, k, loader in it:
        Y, E, A = loader()
        for row in evaluate(Y, E, A, NOISE_SEED_BASE + k, cfg["oracles"],
                            scaling_ablation=cond.split()[0] in ("white", "signal")):
            runs.append({"scene": scene, "condition": cond, "seed": k, **row})
    summary = summarise(runs)
    md = (f"### Variability and signal-dependent noise ({profile} profile, {time.perf_counter() - t0:.0f} s, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)\n\n" + markdown(summary))
    if not have_real:
        md += f"\nSemi-synthetic rows skipped: real scenes not found at {scenes.SHARED_DATA}\n"
    path = out / "variability.json"
    path.write_text(json.dumps({"profile": profile, "config": cfg, "seconds": time.perf_counter() - t0,
                                "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                                "numpy": np.__version__},
                                "summary": summary, "runs": runs}, indent=1, default=float) + "\n")
    return {"name": "variability", "markdown": md, "json": str(path), "summary": summary}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--out", default=None)
    ap.add_argument("--oracles", action="store_true", help="also run the truth-tuned TV and URDM references")
    a = ap.parse_args(argv)
    if a.oracles:
        PROFILES[a.profile]["oracles"] = True
    res = run(a.profile, a.out)
    print(res["markdown"])
    print(f"wrote {res['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
