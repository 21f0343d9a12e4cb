"""Qt6-clean (QGIS 4): no unscoped Qt or QGIS enum and no exec_() in the plugin; the check
(scripts/qt6_scoped.py, `make qt6-fix` applies it) finds and fixes each kind."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "qt6_scoped.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen",
                                            "PYTHONPATH": ":".join(sys.path)})


def test_the_plugin_has_no_unscoped_enum_and_no_exec_():
    r = _run(ROOT / "urdm_plugin")
    assert r.returncode == 0, f"run make qt6-fix:\n{r.stdout}"


def test_the_check_finds_and_fixes_unscoped_qgis_and_qt_enums(tmp_path):
    src = tmp_path / "old.py"
    src.write_text("from qgis.core import Qgis, QgsUnitTypes  # « non-ASCII before »\n"
                   "from qgis.PyQt.QtCore import Qt\n"
                   "from qgis.PyQt.QtWidgets import QMessageBox, QSizePolicy\n\n\n"
                   "def f(box):\n"
                   "    note = '…'; level = Qgis.Warning\n"
                   "    return (level, QgsUnitTypes.LayoutMillimeters, Qt.AlignLeft | Qt.AlignTop,\n"
                   "            QSizePolicy.Expanding, QgsUnitTypes.LayoutUnit.LayoutPixels, box.exec_(), note)\n",
                   encoding="utf-8")
    r = _run(src)
    assert r.returncode == 1
    for old in ("Qgis.Warning", "QgsUnitTypes.LayoutMillimeters", "Qt.AlignLeft", "Qt.AlignTop",
                "QSizePolicy.Expanding", "box.exec_"):
        assert f": {old} -> " in r.stdout, r.stdout
    assert "LayoutPixels" not in r.stdout  # already scoped
    assert _run("--fix", src).returncode == 0
    fixed = src.read_text(encoding="utf-8")
    for new in ("Qgis.MessageLevel.Warning", "QgsUnitTypes.LayoutUnit.LayoutMillimeters",
                "Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop", "QSizePolicy.Policy.Expanding",
                "box.exec()", "note = '…'"):
        assert new in fixed, fixed
    assert _run(src).returncode == 0
    # the scoped forms are the same values in this QGIS (3.22 is the minimum)
    from qgis.core import Qgis, QgsUnitTypes
    from qgis.PyQt.QtCore import Qt

    assert Qgis.MessageLevel.Warning == Qgis.Warning
    assert QgsUnitTypes.LayoutUnit.LayoutMillimeters == QgsUnitTypes.LayoutMillimeters
    assert Qt.AlignmentFlag.AlignLeft == Qt.AlignLeft


@pytest.mark.skipif(sys.version_info < (3, 12), reason="QGIS's migration tool (qgis-pyqt5to6) needs Python >= 3.12: "
                    "it runs in make test's QGIS 3.40 run (Python 3.13, requirements-qgis340.txt)")
def test_qgis_migration_tool_would_make_no_edit(tmp_path):
    """QGIS's own Qt5-to-Qt6 script (PyPI qgis-pyqt5to6, with PyQt6) on a copy of the
    plugin: it edits files in place, so a clean plugin is one it leaves unchanged."""
    copy = tmp_path / "urdm_plugin"
    shutil.copytree(ROOT / "urdm_plugin", copy, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pyqt5to6.pyqt5to6", str(copy)], capture_output=True, text=True,
                       timeout=600, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen",
                                                      "PYTHONPATH": ":".join(sys.path)})
    assert "No module named" not in r.stderr, r.stderr
    changed = [str(f.relative_to(copy)) for f in sorted(copy.rglob("*.py"))
               if not filecmp.cmp(f, ROOT / "urdm_plugin" / f.relative_to(copy), shallow=False)]
    assert not changed and r.returncode == 0, (changed, r.stderr[-2000:])
