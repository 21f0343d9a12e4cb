"""Headless ``qgis_process``: the deployed plugin lists its algorithms and runs urdm:unmix."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QP = ROOT / "scripts" / "qgis_process.sh"

pytestmark = [
    pytest.mark.qgis_process,
    pytest.mark.skipif(shutil.which("qgis_process.bin") is None, reason="qgis_process.bin is not installed"),
]


def _qp(profile: Path, *args, timeout=180):
    env = dict(os.environ)
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    return subprocess.run(["bash", str(QP), "--profile", str(profile), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(ROOT))


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    prof = tmp_path_factory.mktemp("qgis_profile")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "deploy",
                    str(prof / "profiles" / "default")], check=True, capture_output=True)
    r = _qp(prof, "plugins", "enable", "urdm_plugin")
    assert r.returncode == 0, r.stdout + r.stderr
    return prof


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("make_demo_scene", ROOT / "scripts" / "make_demo_scene.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_scene(tmp_path_factory.mktemp("qp_scene"), height=30, width=36, n_bands=30,
                           n_endmembers=3, seed=3, stem="qp")


def test_list_shows_provider_algorithms(profile):
    r = _qp(profile, "list")
    assert r.returncode == 0, r.stderr
    assert "urdm:unmix" in r.stdout and "urdm:vca" in r.stdout


def test_run_unmix_headless(profile, scene, tmp_path):
    out = tmp_path / "out"
    r = _qp(profile, "run", "urdm:unmix", "--", f"INPUT={scene['image']}", f"LIBRARY={scene['library']}",
            "METHOD=0", f"OUTPUT_FOLDER={out}")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    m = json.loads((out / "run.json").read_text())
    assert [e["name"] for e in m["endmembers"]] == scene["names"]
    for e in m["endmembers"]:
        assert (out / e["file"]).is_file()
    assert (out / m["extra_files"]["dominant"]).is_file()
    assert f"RUN_JSON:\t{out / 'run.json'}" in r.stdout


def test_run_unmix_headless_error_is_readable(profile, scene, tmp_path):
    r = _qp(profile, "run", "urdm:unmix", "--", f"INPUT={scene['image']}", f"LIBRARY={tmp_path / 'missing.csv'}",
            "METHOD=0", f"OUTPUT_FOLDER={tmp_path / 'o'}")
    assert r.returncode != 0
    assert "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "o").exists()
