"""Run every benchmark of a profile and write ``bench_results/summary.md``.

    .venv/bin/python -m benchmarks.run_all --profile quick     # what `make bench` runs
    .venv/bin/python -m benchmarks.run_all --profile full --only accuracy cancel

Discovers ``benchmarks/bench_*.py`` modules that define ``run(profile) -> dict`` (see
benchmarks/README.md for the interface) and runs each in its own Python process, so one
script's memory peak or crash cannot distort or stop another. Modules without that
function are listed as skipped. The quick profile is meant to finish within 15 minutes on
a 2-core machine; the summary reports each script's wall time and flags an overrun.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
QUICK_BUDGET_S = 15 * 60


def discover() -> list:
    """[(name, module, has_run_profile)] for benchmarks/bench_*.py, sorted by name.

    ``has_run_profile`` is read from the source (a top-level ``def run(profile, ...)``) so
    discovery imports nothing.
    """
    out = []
    for path in sorted(HERE.glob("bench_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        ok = any(isinstance(n, ast.FunctionDef) and n.name == "run" and n.args.args
                 and n.args.args[0].arg == "profile" for n in tree.body)
        out.append((path.stem[len("bench_"):], f"benchmarks.{path.stem}", ok))
    return out


def _run_one(module: str, profile: str, result_file: str) -> int:
    """Child process: import ``module``, call ``run(profile)``, dump the dict as JSON."""
    import importlib

    mod = importlib.import_module(module)
    res = mod.run(profile)
    Path(result_file).write_text(json.dumps(res, default=str))
    return 0


def run_script(module: str, profile: str, timeout_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="urdm-bench-") as tmp:
        rf = os.path.join(tmp, "result.json")
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        t0 = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--child", module,
                                "--profile", profile, "--result-file", rf],
                               cwd=str(ROOT), env=env, timeout=timeout_s, stdout=subprocess.PIPE,
                               stderr=None, text=True)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            return {"ok": False, "seconds": time.perf_counter() - t0, "error": f"timed out after {timeout_s:.0f} s"}
        sec = time.perf_counter() - t0
        if rc != 0 or not os.path.exists(rf):
            return {"ok": False, "seconds": sec, "error": f"exit code {rc}"}
        res = json.loads(Path(rf).read_text())
        return {"ok": True, "seconds": sec, "result": res}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=("quick", "full"), default="quick")
    ap.add_argument("--only", nargs="*", default=None, metavar="NAME",
                    help="run only these benchmarks (names without 'bench_', e.g. accuracy cancel)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds allowed per script (default: 15 min quick, 3 h full)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return _run_one(a.child, a.profile, a.result_file)

    timeout = a.timeout or (QUICK_BUDGET_S if a.profile == "quick" else 3 * 3600)
    out_dir = ROOT / "bench_results"
    out_dir.mkdir(exist_ok=True)
    found = discover()
    if a.only:
        unknown = set(a.only) - {n for n, _, _ in found}
        if unknown:
            print(f"error: no benchmark named {', '.join(sorted(unknown))}; "
                  f"have: {', '.join(n for n, _, _ in found)}", file=sys.stderr)
            return 2
        found = [f for f in found if f[0] in a.only]
    t_all = time.perf_counter()
    sections, rows, failed = [], [], 0
    for name, module, ok in found:
        if not ok:
            rows.append(f"| {name} | skipped: no `run(profile)` | | |")
            continue
        print(f"== {name} ({a.profile}) ==", file=sys.stderr, flush=True)
        r = run_script(module, a.profile, timeout)
        if r["ok"]:
            res = r["result"] or {}
            md = res.get("markdown") or f"```\n{json.dumps(res, indent=1)[:4000]}\n```\n"
            sections.append(md)
            print(md, flush=True)
            rows.append(f"| {name} | ok | {r['seconds']:.0f} | {res.get('json', '')} |")
        else:
            failed += 1
            rows.append(f"| {name} | FAILED: {r['error']} | {r['seconds']:.0f} | |")
    total = time.perf_counter() - t_all
    head = [f"# Benchmark summary ({a.profile} profile)", "",
            f"Total {total / 60:.1f} min on {os.cpu_count()} CPU(s)."]
    if a.profile == "quick" and total > QUICK_BUDGET_S:
        head.append(f"**Over the quick budget of {QUICK_BUDGET_S // 60} min.**")
    head += ["", "| benchmark | status | seconds | JSON |", "|---|---|---|---|", *rows, ""]
    text = "\n".join(head) + "\n" + "\n".join(sections)
    (out_dir / "summary.md").write_text(text)
    print("\n".join(head))
    print(f"wrote {out_dir / 'summary.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
