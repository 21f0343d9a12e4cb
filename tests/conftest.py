"""Shared fixtures: the benchmark scenes in ../shared/data and small generated rasters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("URDM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pytest_report_header(config):
    """Which QGIS, Python, numpy, GDAL and torch these results are from (``make test`` runs
    the suite on two QGIS versions)."""
    import sys

    import numpy
    from osgeo import gdal

    try:
        from qgis.core import Qgis
        qgis = Qgis.version()
    except ImportError:
        qgis = "absent"
    from importlib.metadata import PackageNotFoundError, version

    try:  # not imported: tests check what importing the plugin pulls in
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "absent"
    return (f"URDM suite on QGIS {qgis}, Python {sys.version.split()[0]}, numpy {numpy.__version__}, "
            f"GDAL {gdal.__version__}, torch {torch_version}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark scenes; tests skip (with the reason) only when the folder is absent.

    In CI the folder is present, so these tests run. Set URDM_SHARED_DATA to point elsewhere.
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark scenes not found at {SHARED_DATA} (a fresh clone has none; CI has them)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def write_demo_scene():
    """scripts/make_demo_scene.py's ``write_scene`` (a georeferenced GeoTIFF + library CSV)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo_scene", ROOT / "scripts" / "make_demo_scene.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_scene


def run_group(root, input_name: str, method: str = ""):
    """The layer-tree group of a run of ``input_name`` (named ``<input> – <method> <time>``)."""
    prefix = f"{input_name} – {method}"
    found = [g for g in root.findGroups() if g.name().startswith(prefix)]
    return found[0] if found else None


@pytest.fixture()
def unwritable_folder(tmp_path):
    """A folder nothing can be written into, although ``os.access`` may say otherwise: made
    immutable (``chattr +i``) when running as root — root passes every permission check, as
    a user does on some shares and mounts — else read-only by its permission bits."""
    import shutil
    import subprocess

    folder = tmp_path / "locked"
    folder.mkdir()
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if as_root:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                           capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here (no immutable folders to test with)")
    else:
        folder.chmod(0o555)
    yield folder
    if as_root:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    else:
        folder.chmod(0o755)
