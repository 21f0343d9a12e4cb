#!/usr/bin/env python3
"""Longest main-thread stall while an UnmixTask runs in QGIS's task manager.

A QTimer fires every 10 ms on the main thread; the largest gap between two ticks minus the
period is the longest stall a user would feel (target: ≤ 250 ms). The run includes adding
and styling the result layers in ``finished()`` (main thread).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui_stall.py [--size 256] [--method fcls]

Prints a markdown table and writes bench_results/gui_stall.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--bands", type=int, default=120)
    ap.add_argument("--methods", default="fcls,tv,urdm,urdm",
                    help="comma-separated method ids (repeat one to see the cost of its first run)")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "gui_stall.json"))
    a = ap.parse_args(argv)

    from qgis.core import QgsApplication, QgsProject
    from qgis.PyQt.QtCore import QCoreApplication, QTimer

    app = QgsApplication([], False)
    app.initQgis()
    from urdm_plugin.core.engine.pipeline import UnmixOptions
    from urdm_plugin.core.methods.registry import method_available
    from urdm_plugin.gui.task import UnmixTask

    spec = importlib.util.spec_from_file_location("mds", ROOT / "scripts" / "make_demo_scene.py")
    mds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mds)
    tmp = Path(tempfile.mkdtemp(prefix="urdm_bench_stall_"))
    scene = mds.write_scene(tmp, height=a.size, width=a.size, n_bands=a.bands, n_endmembers=5, stem="bench")

    rows = []
    for i_run, method in enumerate([m.strip() for m in a.methods.split(",") if m.strip()]):
        if not method_available(method)[0]:
            print(f"skipping {method}: {method_available(method)[1]}")
            continue
        QgsProject.instance().clear()
        gaps = []
        last = [time.perf_counter()]

        where = []
        phase = ["start"]

        def tick(gaps=gaps, last=last, where=where, phase=phase):
            now = time.perf_counter()
            where.append(phase[0])
            gaps.append(now - last[0])
            last[0] = now

        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(tick)
        ended = []
        task = UnmixTask(scene["image"], scene["library"], str(tmp / f"run{i_run}_{method}"),
                         UnmixOptions(method=method, params={"quality": "fast"} if method == "urdm" else {}), "bench scene")
        task.on_finished = ended.append
        task.message.connect(lambda m, phase=phase: phase.__setitem__(0, m[:60]))
        t0 = time.perf_counter()
        last[0] = t0
        timer.start()
        QgsApplication.taskManager().addTask(task)
        while not ended:
            QCoreApplication.processEvents()
            time.sleep(0.002)
        phase[0] = "after finished()"
        # a few more ticks after finished() (layers added and styled) so its cost is measured
        t_end = time.perf_counter() + 0.3
        while time.perf_counter() < t_end:
            QCoreApplication.processEvents()
            time.sleep(0.002)
        timer.stop()
        wall = time.perf_counter() - t0
        stall_ms = max(0.0, (max(gaps) - 0.010) * 1000) if gaps else float("nan")
        ok = task.result is not None
        rows.append({"method": method, "pixels": a.size * a.size, "bands": a.bands, "ok": ok,
                     "error": task.error, "run_s": round(wall, 2), "ticks": len(gaps),
                     "max_stall_ms": round(stall_ms, 1),
                     "p99_gap_ms": round(sorted(gaps)[int(0.99 * (len(gaps) - 1))] * 1000, 1) if gaps else None,
                     "layers_added": len(task.layers),
                     "longest_stall_during": where[gaps.index(max(gaps))] if gaps else ""})

    print("| method | pixels | bands | run (s) | layers | longest stall (ms) | p99 tick gap (ms) | ≤ 250 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['pixels']} | {r['bands']} | {r['run_s']} | {r['layers_added']} | "
              f"{r['max_stall_ms']} | {r['p99_gap_ms']} | {'yes' if r['max_stall_ms'] <= 250 else 'NO'} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"benchmark": "gui_stall", "rows": rows}, indent=2) + "\n")
    for r in rows:
        print(f"{r['method']}: longest stall during '{r['longest_stall_during']}'")
    print(f"\nwrote {a.out}")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
