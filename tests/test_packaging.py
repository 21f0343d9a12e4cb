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
    # QGIS 4 (Qt6) lists and loads the plugin only with a maximum of 4.x; QGIS dropped the
    # supportsQt6 key, which the plugin site now reads as a stale declaration.
    assert md["qgisMaximumVersion"] == "4.99" and "supportsQt6" not in md
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


def _checks():
    sys.path.insert(0, str(ROOT / "scripts"))
    import plugin_checks

    return plugin_checks


def test_the_plugin_repositorys_security_scans_find_nothing(plugin_zip):
    """bandit and detect-secrets with plugins.qgis.org's settings, on the zip as uploaded."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "plugin_checks.py"), str(plugin_zip)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr


def test_the_security_scans_report_a_finding(tmp_path):
    """The scans are live: a try/except/pass and a bare hex digest are each reported."""
    pkg = tmp_path / "src"
    (pkg / "demo").mkdir(parents=True)
    (pkg / "demo" / "mod.py").write_text("def f():\n    try:\n        g()\n    except Exception:\n        pass\n")
    (pkg / "demo" / "card.json").write_text('{"sha256": "f0ce75acbee90709c6d8c23f358a61cf7b3150e02e173a11aec6cb5b91e2eb35"}\n')
    z = tmp_path / "demo.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in ("mod.py", "card.json"):
            zf.write(pkg / "demo" / f, f"demo/{f}")
    found = _checks().security_findings(z)
    assert any(f.startswith("bandit B110 demo/mod.py:4") for f in found), found
    assert any(f.startswith("detect-secrets Hex High Entropy String demo/card.json:1") for f in found), found


def test_package_refuses_a_zip_that_breaks_the_upload_rules(plugin_zip, tmp_path):
    """What the upload validator refuses is named: a cache, a second top folder, a missing
    metadata key; the shipped zip passes."""
    checks = _checks()
    assert checks.structure_problems(plugin_zip) == []
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(plugin_zip) as src, zipfile.ZipFile(bad, "w") as dst:
        for n in src.namelist():
            data = src.read(n)
            if n == "urdm_plugin/metadata.txt":
                data = b"\n".join(ln for ln in data.splitlines() if not ln.startswith(b"email="))
            dst.writestr(n, data)
        dst.writestr("urdm_plugin/core/__pycache__/x.cpython-311.pyc", b"")
        dst.writestr("stray.txt", b"")
    problems = checks.structure_problems(bad)
    assert any("one top folder" in p for p in problems), problems
    problems = checks.structure_problems(_without(bad, "stray.txt", tmp_path))
    assert any("__pycache__" in p for p in problems) and any("'email'" in p for p in problems), problems


def _without(zip_path, name, tmp_path):
    out = tmp_path / "without.zip"
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(out, "w") as dst:
        for n in src.namelist():
            if n != name:
                dst.writestr(n, src.read(n))
    return out
