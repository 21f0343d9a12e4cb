#!/usr/bin/env python3
"""Build the plugin zip that QGIS's "Install from ZIP" accepts, or deploy into a profile.

    python scripts/package.py zip [--out dist/urdm_plugin.zip]
    python scripts/package.py deploy PROFILE_DIR      # PROFILE_DIR/python/plugins/urdm_plugin

The zip has one top folder ``urdm_plugin/`` holding the package, ``metadata.txt``,
``LICENSE`` and ``icon.svg``; no caches, tests or benchmark data. The zip is checked
against the plugin repository's upload rules (scripts/plugin_checks.py: metadata keys,
25 MB, no compiled files, licence, one top folder, icon) and not written when it breaks one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_checks import structure_problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PKG = "urdm_plugin"
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".tmp", ".ts"}  # .ts: translation sources; .qm ship


def plugin_files():
    """(source path, path inside the plugin folder) for everything the plugin needs."""
    for src in sorted((ROOT / PKG).rglob("*")):
        rel = src.relative_to(ROOT / PKG)
        if src.is_dir() or SKIP_DIRS.intersection(rel.parts) or src.suffix in SKIP_SUFFIXES:
            continue
        yield src, rel
    yield ROOT / "metadata.txt", Path("metadata.txt")
    yield ROOT / "LICENSE", Path("LICENSE")
    yield ROOT / "README.md", Path("README.md")
    yield ROOT / "docs" / "USAGE.md", Path("USAGE.md")  # the dialog's Help button opens it
    yield ROOT / "resources" / "icon.svg", Path("icon.svg")


def build_zip(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for src, rel in plugin_files():
            zf.write(src, f"{PKG}/{rel.as_posix()}")
    size = tmp.stat().st_size
    problems = structure_problems(tmp)
    if problems:
        tmp.unlink()
        sys.exit(f"error: the plugin zip breaks the plugin repository's rules: {'; '.join(problems)}")
    tmp.replace(out)
    print(f"{out} ({size / 1e6:.2f} MB)")
    return out


def deploy(profile_dir: Path) -> Path:
    dest = profile_dir / "python" / "plugins" / PKG
    if dest.exists():
        shutil.rmtree(dest)
    for src, rel in plugin_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    print(f"deployed to {dest}")
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    z = sub.add_parser("zip")
    z.add_argument("--out", type=Path, default=ROOT / "dist" / f"{PKG}.zip")
    d = sub.add_parser("deploy")
    d.add_argument("profile_dir", type=Path)
    a = p.parse_args(argv)
    if a.cmd == "zip":
        build_zip(a.out)
    else:
        deploy(a.profile_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
