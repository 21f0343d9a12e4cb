"""urdm_plugin.core works in a Python without QGIS (scripts, clusters, notebooks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = """
import sys, importlib.abc
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'qgis' or name.startswith('qgis.'):
            raise ImportError('qgis is blocked for this test')
sys.meta_path.insert(0, _Block())
"""


def test_core_imports_with_qgis_blocked():
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "urdm_plugin" / "core").rglob("*.py")  # every module of every core package
    )
    code = BLOCKER + f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
