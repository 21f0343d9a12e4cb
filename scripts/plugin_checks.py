#!/usr/bin/env python3
"""The plugin repository's (plugins.qgis.org) checks on a plugin zip, run here first.

    python scripts/plugin_checks.py dist/urdm_plugin.zip            # structure + security scans
    python scripts/plugin_checks.py --structure-only dist/urdm_plugin.zip

Structure (what the upload validator refuses): one top folder with a plain package name,
``metadata.txt`` in it with the required keys, a LICENSE, the icon it names, ``__init__.py``
with ``classFactory``, no compiled files, caches or VCS folders, at most 25 MB.

Security (what the upload scan flags, with the site's settings): bandit with the rules the
site enables, all severities, and detect-secrets ``scan --all-files`` with its enabled
plugins, ``metadata.txt`` excluded. Exit 1 and one line per finding when anything is found.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MAX_BYTES = 25 * 1024 * 1024
#: metadata.txt keys the upload validator requires.
REQUIRED_METADATA = ("name", "description", "about", "version", "qgisMinimumVersion", "author",
                     "email", "tracker", "repository")
FORBIDDEN_PARTS = {"__pycache__", ".git", "__MACOSX", ".pytest_cache", ".DS_Store"}
FORBIDDEN_SUFFIXES = {".pyc", ".pyo", ".so", ".dll", ".dylib", ".exe", ".pyd"}
LICENSE_NAMES = {"LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING"}

#: Bandit tests the site enables (its rule table: every rule but B109, B404, B410, B411).
BANDIT_TESTS = (
    "B101,B102,B103,B104,B105,B106,B107,B108,B110,B111,B112,B113,B201,B202,B301,B302,B303,"
    "B304,B305,B306,B307,B308,B310,B311,B312,B313,B314,B315,B316,B317,B318,B319,B320,B321,"
    "B323,B324,B401,B402,B403,B405,B406,B407,B408,B409,B412,B413,B501,B502,B503,B504,B505,"
    "B506,B507,B508,B509,B601,B602,B603,B604,B605,B606,B607,B608,B609,B610,B611,B612,B613,"
    "B614,B615,B701,B702,B703,B704")
#: detect-secrets plugins the site disables (rated "info").
SECRETS_DISABLED = ("IPPublicDetector",)


def structure_problems(zip_path: Path) -> list:
    """One line per rule of the upload validator that the zip breaks; [] when it passes."""
    problems = []
    size = zip_path.stat().st_size
    if size > MAX_BYTES:
        problems.append(f"the zip is {size / 1e6:.1f} MB, over the repository's 25 MB limit")
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        return [f"{zip_path} is not a zip file"]
    names = zf.namelist()
    tops = {n.split("/")[0] for n in names}
    if len(tops) != 1:
        return problems + [f"the zip must hold one top folder, it holds {sorted(tops)}"]
    top = tops.pop()
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", top):
        problems.append(f"the top folder '{top}' is not a Python package name (letters, digits, _)")
    for n in names:
        parts = set(n.rstrip("/").split("/"))
        if parts & FORBIDDEN_PARTS or Path(n).suffix in FORBIDDEN_SUFFIXES:
            problems.append(f"{n}: compiled files, caches and VCS folders are refused")
    if not LICENSE_NAMES & {n[len(top) + 1:] for n in names}:
        problems.append(f"no LICENSE file in {top}/")
    if f"{top}/metadata.txt" not in names:
        return problems + [f"no {top}/metadata.txt"]
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    try:
        cp.read_string(zf.read(f"{top}/metadata.txt").decode("utf-8"))
        md = cp["general"]
    except (configparser.Error, KeyError, UnicodeDecodeError) as exc:
        return problems + [f"metadata.txt has no readable [general] section ({exc})"]
    for key in REQUIRED_METADATA:
        if not md.get(key, "").strip():
            problems.append(f"metadata.txt lacks the required key '{key}'")
    icon = md.get("icon", "").strip()
    if icon and f"{top}/{icon}" not in names:
        problems.append(f"metadata.txt names the icon '{icon}', which the zip does not hold")
    init = f"{top}/__init__.py"
    if init not in names or b"def classFactory" not in zf.read(init):
        problems.append(f"{init} must define classFactory(iface)")
    return problems


def _tool(name: str) -> str:
    """The console script ``name`` next to this Python (the venv's), else on PATH."""
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        sys.exit(f"error: {name} is not installed; run 'make setup' (requirements.txt pins it)")
    return found


def security_findings(zip_path: Path) -> list:
    """bandit and detect-secrets on the unpacked zip, as the site runs them: one line per finding."""
    findings = []
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(zip_path).extractall(tmp)
        r = subprocess.run([_tool("bandit"), "-r", tmp, "-f", "json", "--quiet", "-t", BANDIT_TESTS],
                           capture_output=True, text=True, timeout=600)
        try:
            results = json.loads(r.stdout)["results"]
        except (ValueError, KeyError):
            return [f"bandit gave no report (exit {r.returncode}): {r.stderr.strip()[:300]}"]
        for f in results:
            findings.append(f"bandit {f['test_id']} {Path(f['filename']).relative_to(tmp)}:{f['line_number']}: "
                            f"{f['issue_text']}")
        cmd = [_tool("detect-secrets"), "scan", "--all-files", "--exclude-files", r"metadata\.txt"]
        for plugin in SECRETS_DISABLED:
            cmd += ["--disable-plugin", plugin]
        r = subprocess.run([*cmd, "."], cwd=tmp, capture_output=True, text=True, timeout=600)
        try:
            results = json.loads(r.stdout)["results"]
        except (ValueError, KeyError):
            return findings + [f"detect-secrets gave no report (exit {r.returncode}): {r.stderr.strip()[:300]}"]
        for path, secrets in sorted(results.items()):
            for s in secrets:
                findings.append(f"detect-secrets {s['type']} {path}:{s['line_number']}")
    return findings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("zip", type=Path)
    p.add_argument("--structure-only", action="store_true", help="skip bandit and detect-secrets")
    a = p.parse_args(argv)
    problems = structure_problems(a.zip)
    if not problems and not a.structure_only:
        problems = security_findings(a.zip)
    for line in problems:
        print(f"plugin check: {line}", file=sys.stderr)
    if problems:
        print(f"error: {a.zip} would be refused or flagged by plugins.qgis.org ({len(problems)} "
              "finding(s) above); fix them before uploading", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
