"""Termination signals reach the run: held where they must wait, given back where a library
loaded with torch took them over (core.signals, core.diffusion.runtime.torch_module)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=300)


def test_a_signal_inside_a_held_block_runs_its_handler_when_the_block_ends():
    p = _run("import os, signal\n"
             "from urdm_plugin.core.signals import held\n"
             "seen = []\n"
             "signal.signal(signal.SIGTERM, lambda s, f: seen.append('handler'))\n"
             "with held():\n"
             "    os.kill(os.getpid(), signal.SIGTERM)\n"
             "    seen.append('block end')\n"
             "print(seen)\n")
    assert p.stdout.strip() == "['block end', 'handler']", p.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed in this Python")
def test_sighup_still_reaches_python_after_torch_is_loaded():
    """Debian's torch (QGIS 3.40 root) links UCX, which took SIGHUP as it loaded: a URDM run
    went on after its terminal hung up and wrote its outputs. The handler must still run."""
    p = _run("import os, signal, time\n"
             "seen = []\n"
             "for name in ('SIGHUP', 'SIGTERM'):\n"
             "    signal.signal(getattr(signal, name), lambda s, f: seen.append(signal.Signals(s).name))\n"
             "from urdm_plugin.core.diffusion.runtime import torch_module\n"
             "torch_module()\n"
             "os.kill(os.getpid(), signal.SIGHUP); os.kill(os.getpid(), signal.SIGTERM)\n"
             "time.sleep(0.1)\n"
             "print('seen:', seen)\n")
    seen = [ln for ln in p.stdout.splitlines() if ln.startswith("seen:")]  # UCX may print its own lines
    assert seen == ["seen: ['SIGHUP', 'SIGTERM']"], p.stdout + p.stderr
