"""The plugin zip installs into a QGIS profile, and metadata.txt passes the repository's rules."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ["name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
            "tracker", "repository", "homepage", "tags", "category", "icon", "hasProcessingProvider"]
PLACEHOLDERS = ("example.com", "your", "todo", "tbd", "xxx", "<", "changeme", "placeholder")


def _metadata():
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(ROOT / "metadata.txt", encoding="utf-8")
    return cp["general"]


def test_metadata_has_every_required_key_with_real_values():
    md = _metadata()
    for key in REQUIRED:
        value = md.get(key, "").strip()
        assert value, f"metadata.txt lacks {key}"
        assert not any(p in value.lower() for p in PLACEHOLDERS), f"{key} looks like a placeholder: {value}"
    assert md["qgisMinimumVersion"] == "3.22"
    assert md["hasProcessingProvider"] == "yes"
    for key in ("tracker", "repository", "homepage"):
        assert md[key].startswith("https://github.com/"), key
    assert (ROOT / "resources" / md["icon"]).is_file()


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "urdm_plugin.zip"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "zip", "--out", str(out)],
                   check=True, capture_output=True)
    return out


def test_zip_layout(plugin_zip):
    assert plugin_zip.stat().st_size <= 25 * 1024 * 1024
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert {n.split("/")[0] for n in names} == {"urdm_plugin"}
    for required in ("__init__.py", "metadata.txt", "LICENSE", "icon.svg", "plugin.py",
                     "processing/provider.py", "core/__init__.py"):
        assert f"urdm_plugin/{required}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("urdm_plugin/tests") or "shared/data" in n]


def test_zip_installs_into_a_profile_and_imports(plugin_zip, tmp_path):
    plugins = tmp_path / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    code = (f"import sys; sys.path.insert(0, {str(plugins)!r}); import urdm_plugin, urdm_plugin.plugin, urdm_plugin.core;"
            "from urdm_plugin.paths import plugin_version, icon_path;"
            f"assert urdm_plugin.__file__.startswith({str(plugins)!r}), urdm_plugin.__file__;"
            "assert icon_path().is_file(); print(plugin_version())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _metadata()["version"]
