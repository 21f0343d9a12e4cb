"""The one output rule (core.io.output_policy): nothing written onto an input or onto a file
this tool did not make; --overwrite replaces only this tool's files, recognised by content."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster
from urdm_plugin.core.errors import OutputError
from urdm_plugin.core.io.output_policy import check_output_file, is_tool_file, mark_map_sheet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import fault_audit  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from urdm_plugin.core.synthetic import make_scene

    d = tmp_path_factory.mktemp("inputs")
    sc = make_scene(height=12, width=10, n_endmembers=3, snr_db=40.0, seed=5, n_bands=30)
    img = fault_audit.write_cube(d / "scene.tif", sc.Y.astype(np.float32), sc.wavelengths_nm)
    lib = fault_audit.write_library(d / "library.csv", sc.wavelengths_nm, sc.E)
    return img, lib


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "urdm_plugin", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)


def _digest(p: Path) -> bytes:
    return p.read_bytes()


def test_vca_never_writes_over_its_image_or_reference_library(inputs, tmp_path):
    img, lib = inputs
    ref = tmp_path / "ref.csv"
    assert _cli("vca", img, "3", ref, "--quiet").returncode == 0  # a CSV this tool wrote
    before = {p: _digest(p) for p in (img, ref)}
    r = _cli("vca", img, "3", img, "--overwrite", "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "input" in r.stderr
    r = _cli("vca", img, "3", ref, "--identify", ref, "--overwrite", "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "input" in r.stderr
    assert {p: _digest(p) for p in before} == before
    # its own earlier output is replaced with --overwrite
    assert _cli("vca", img, "2", ref, "--overwrite", "--quiet").returncode == 0


def test_overwrite_refuses_a_file_it_did_not_write(inputs, tmp_path):
    doc = tmp_path / "thesis.docx"
    doc.write_text("three years of work")
    with pytest.raises(OutputError, match="not written by this tool"):
        check_output_file(doc, overwrite=True)
    fake = tmp_path / "lib.csv"  # a CSV library, but not one this tool wrote
    fake.write_bytes(inputs[1].read_bytes())
    with pytest.raises(OutputError, match="not written by this tool"):
        check_output_file(fake, overwrite=True)
    assert doc.read_text() == "three years of work"


def test_an_edited_run_json_cannot_get_a_users_file_deleted(inputs, tmp_path):
    img, lib = inputs
    run = tmp_path / "run"
    unmix_raster(img, lib, run, UnmixOptions(method="fcls"))
    (run / "thesis.docx").write_text("mine")
    m = json.loads((run / "run.json").read_text())
    m["extra_files"]["notes"] = "thesis.docx"  # the manifest now "lists" the user's file
    (run / "run.json").write_text(json.dumps(m))
    with pytest.raises(OutputError, match="did not write.*thesis.docx"):
        unmix_raster(img, lib, run, UnmixOptions(method="fcls", overwrite=True))
    assert (run / "thesis.docx").read_text() == "mine"
    (run / "thesis.docx").unlink()  # the run's own files only: replaced
    unmix_raster(img, lib, run, UnmixOptions(method="fcls", overwrite=True))
    assert all(is_tool_file(p) for p in run.iterdir())


def test_a_mask_inside_the_previous_run_is_never_replaced(inputs, tmp_path):
    img, lib = inputs
    run = tmp_path / "run"
    unmix_raster(img, lib, run, UnmixOptions(method="fcls"))
    mask = run / "residual_rmse.tif"
    with pytest.raises(OutputError, match="holds an input"):
        unmix_raster(img, lib, run, UnmixOptions(method="fcls", overwrite=True, mask_path=str(mask)))
    assert mask.exists()


def test_an_empty_outdir_is_filled_in_place_keeping_its_mode(inputs, tmp_path):
    img, lib = inputs
    out = tmp_path / "shared"
    out.mkdir()
    os.chmod(out, 0o2770)
    ino = out.stat().st_ino
    unmix_raster(img, lib, out, UnmixOptions(method="fcls"))
    st = out.stat()
    assert st.st_ino == ino and stat.S_IMODE(st.st_mode) == 0o2770
    assert (out / "run.json").is_file() and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_map_sheet_markers_are_recognised(tmp_path):
    png = tmp_path / "a.png"
    from qgis.PyQt.QtGui import QImage

    img = QImage(4, 3, QImage.Format_RGB32)
    img.fill(0xFFFFFF)
    assert img.save(str(png))
    assert not is_tool_file(png)
    mark_map_sheet(png)
    assert is_tool_file(png) and not QImage(str(png)).isNull()
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    assert not is_tool_file(pdf)
    mark_map_sheet(pdf)
    assert is_tool_file(pdf)


@pytest.mark.parametrize("swap", ["reprojected", "png"])
def test_a_run_whose_map_is_not_the_runs_own_is_refused_and_no_dominant_map_written(inputs, tmp_path, swap):
    from osgeo import gdal

    from urdm_plugin.qgis_layers.dominant import prepare_run
    from urdm_plugin.qgis_layers.runs import RunFileError

    img, lib = inputs
    run = tmp_path / "run"
    unmix_raster(img, lib, run, UnmixOptions(method="fcls"))
    m = json.loads((run / "run.json").read_text())
    target = m["endmembers"][1]["file"]
    if swap == "reprojected":
        gdal.Warp(str(run / "moved.tif"), str(run / target), dstSRS="EPSG:4326")
        m["endmembers"][1]["file"] = "moved.tif"
        word = "coordinate reference system"
    else:
        gdal.Translate(str(run / "map.png"), str(run / target), format="PNG", outputType=gdal.GDT_Byte,
                       scaleParams=[[0, 1, 0, 255]])
        m["endmembers"][1]["file"] = "map.png"
        word = "not one of the run's float32 GeoTIFFs"
    (run / "run.json").write_text(json.dumps(m))
    with pytest.raises(RunFileError, match=word):
        prepare_run(str(run / "run.json"))
    assert not (run / "dominant.tif").exists()


def test_a_previous_run_on_a_mount_point_is_refused_before_any_work(inputs, tmp_path, monkeypatch):
    """A mount point cannot be renamed away (EBUSY at commit): refused up front, in one line."""
    from urdm_plugin.core.io import output_policy

    img, lib = inputs
    run = tmp_path / "mnt"
    unmix_raster(img, lib, run, UnmixOptions(method="fcls"))
    monkeypatch.setattr(output_policy.os.path, "ismount", lambda p: str(p) == str(run))
    with pytest.raises(OutputError, match="mount point"):
        output_policy.check_output_folder(run, overwrite=True, inputs=[img, lib])


def test_an_os_error_names_its_cause_once():
    import errno

    from urdm_plugin.core.errors import os_error_cause

    why, _fix = os_error_cause(PermissionError(errno.EACCES, "Permission denied"))
    assert why.lower().count("permission denied") == 1
    why, _fix = os_error_cause(OSError(errno.ENOSPC, "No space left on device"))
    assert why == "No space left on device: the disk is full"
