"""The real QGIS desktop under Xvfb with the deployed plugin (scripts/qgis_desktop_check.py):
result groups shown expanded in the Layers panel, nothing of the plugin left alive after
unloading, and a clean exit after QApplication.quit()."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("qgis.bin") is None or shutil.which("xvfb-run") is None,
                       reason="the QGIS desktop (qgis.bin) or xvfb-run is not installed"),
]


def _desktop_run(tmp_path: Path, **env_extra) -> tuple:
    """Deploy the plugin into a new profile, run the check script in QGIS under Xvfb at
    1366 × 768; returns (exit status, report, output)."""
    prof = tmp_path / "qgis-config"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "deploy",
                    str(prof / "profiles" / "default")], check=True, capture_output=True)
    (prof / "profiles" / "default" / "QGIS").mkdir(parents=True, exist_ok=True)
    (prof / "profiles" / "default" / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\nurdm_plugin=true\n")
    report = tmp_path / "check.json"
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "QGIS_CUSTOM_CONFIG_PATH")}
    env.update(URDM_ROOT=str(ROOT), URDM_CHECK_OUT=str(report), **env_extra)
    cmd = (f"source {ROOT / 'scripts' / 'qgis_env.sh'} && unset QT_QPA_PLATFORM && exec qgis --profiles-path "
           f"{prof} --noversioncheck --nologo --code {ROOT / 'scripts' / 'qgis_desktop_check.py'}")
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1366x768x24", "bash", "-c", cmd], capture_output=True,
                       text=True, timeout=300, env=env, cwd=str(tmp_path))
    steps = {s["step"]: s for s in json.loads(report.read_text())["steps"]} if report.is_file() else {}
    return r.returncode, steps, r.stdout[-3000:] + r.stderr[-3000:]


def test_result_groups_show_expanded_and_the_plugin_leaves_nothing_behind(tmp_path):
    code, steps, out = _desktop_run(tmp_path)
    assert "unloaded" in steps, out
    for step in ("preview", "run"):
        assert steps[step]["finished"], out
        for name, node_expanded, panel_expanded in steps[step]["groups"]:
            assert node_expanded and panel_expanded, (step, name)  # the preview group was collapsed
    assert len(steps["run"]["groups"]) == 2
    gone = steps["unloaded"]
    assert gone["plugin_objects"] == [] and gone["tasks"] == [] and not gone["provider_registered"]
    assert gone["map_tool"] != "PixelMapTool"
    assert code == 0, out  # QApplication.quit() after unloading: no crash
