"""Fault injection: signals, a killed run's leftovers, crafted run folders.

Each case asserts what a user relies on: the exit code, one line on stderr, and that
nothing was written or deleted that the run did not own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from urdm_plugin.core.errors import OutputError
from urdm_plugin.core.io.leftovers import PARTIAL_MARKER, remove_stale_partials
from urdm_plugin.core.io.manifest import RunManifest, run_file_path

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def slow_scene(tmp_path_factory):
    """A scene TV needs a few seconds for, so a signal can arrive mid-run."""
    from test_pipeline import write_scene

    return write_scene(tmp_path_factory.mktemp("faults"), H=96, W=96)[:2]


def _partials(folder: Path) -> list:
    return [p for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hung up")])
def test_sigterm_and_sighup_mid_run_leave_nothing(slow_scene, tmp_path, sig, code, word):
    tif, csv = slow_scene
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(csv), str(out),
                             "--method", "tv", "--lam", "0.01", "--max-iter", "3000", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=str(ROOT))
    deadline = time.time() + 60
    while not _partials(tmp_path) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert _partials(tmp_path), "the run never started writing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.count("\n") == 1 and word in err and "no output was written" in err
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _leftover(parent: Path, name: str, pid=None) -> Path:
    d = parent / name
    d.mkdir()
    (d / "Tree.tif").write_bytes(b"half a raster")
    if pid is not None:
        import socket

        (d / PARTIAL_MARKER).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    return d


def test_a_killed_runs_leftovers_are_removed_by_the_next_run_and_nothing_else(tmp_path):
    from test_cli import _scene

    tif, csv, _ = _scene(tmp_path)
    dead_tmp = _leftover(tmp_path, ".out.tmp-k1ll3d", _dead_pid())
    dead_old = _leftover(tmp_path, ".out.old-0badf00d", _dead_pid())
    live = _leftover(tmp_path, ".other.tmp-l1ve", os.getpid())  # a run still going
    unmarked = _leftover(tmp_path, ".mine.tmp-n0mark")  # not this tool's
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(csv), str(tmp_path / "out"),
                        "--method", "fcls", "--quiet"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not dead_tmp.exists() and not dead_old.exists()
    assert live.exists() and unmarked.exists()
    assert not (tmp_path / "out" / PARTIAL_MARKER).exists()  # the committed run carries no marker
    assert remove_stale_partials(tmp_path) == []


def test_outputs_follow_the_umask(tmp_path):
    from test_cli import _scene

    tif, csv, _ = _scene(tmp_path)
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(csv), str(tmp_path / "out"),
                        "--method", "fcls", "--quiet"], capture_output=True, text=True, env=ENV, timeout=120,
                       preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


# ----------------------------------------------------------------------------- crafted run.json
def _crafted(folder: Path, **changes) -> Path:
    from run_fixture import make_run

    run = Path(make_run(folder).folder)
    m = json.loads((run / "run.json").read_text())
    for key, val in changes.items():
        if key == "endmember_file":
            m["endmembers"][0]["file"] = val
        elif key == "image":
            m["inputs"]["image"] = val
        else:
            m[key] = val
    (run / "run.json").write_text(json.dumps(m))
    return run


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret.tif", "sub/../../x.tif", "/vsicurl/http://example.com/a.tif",
                                  "C:\\Windows\\x.tif", "http://example.com/a.tif", ".."])
def test_a_run_json_naming_files_outside_its_folder_is_refused(tmp_path, name):
    run = _crafted(tmp_path, endmember_file=name)
    with pytest.raises(OutputError, match="only ever refers to files inside itself"):
        RunManifest.read(run)


@pytest.mark.parametrize("image", ["/vsicurl/http://example.com/scene.tif", "https://example.com/scene.tif",
                                   "/vsizip//tmp/a.zip/scene.tif"])
def test_a_run_json_with_a_remote_input_image_is_refused(tmp_path, image):
    run = _crafted(tmp_path, image=image)
    with pytest.raises(OutputError, match="network, virtual or remote"):
        RunManifest.read(run)


def test_a_run_file_linked_outside_the_folder_is_not_opened(tmp_path):
    run = _crafted(tmp_path)
    m = json.loads((run / "run.json").read_text())
    first = run / m["endmembers"][0]["file"]
    outside = tmp_path / "elsewhere.tif"
    shutil.move(first, outside)
    first.symlink_to(outside)
    with pytest.raises(OutputError, match="link to a file outside"):
        run_file_path(run, first.name)
    assert run_file_path(run, m["endmembers"][1]["file"]).startswith(str(run))


# ----------------------------------------------------------------------------- messages
def test_long_cjk_names_fit_the_file_system_in_bytes():
    from urdm_plugin.core.io.safe_names import safe_filename

    stem = safe_filename("森" * 300)
    assert len(stem.encode("utf-8")) <= 120 and stem.startswith("森")
    assert len(safe_filename("a" * 300)) == 100


def test_unreadable_wavelength_metadata_is_reported_not_matched_by_order(tmp_path):
    import numpy as np
    from osgeo import gdal

    from urdm_plugin.core.errors import WavelengthError
    from urdm_plugin.core.io.image import open_image

    path = tmp_path / "img.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 4, 3, 3, gdal.GDT_Float32)
    for b, text in enumerate(["450", "5 5 0", "650"]):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(np.full((3, 4), 0.2, np.float32))
        band.SetMetadataItem("wavelength", text)
    ds = None
    with pytest.raises(WavelengthError, match="Band 2 .* '5 5 0', which is not a number"):
        open_image(path)


def test_an_existing_output_folder_names_the_fix_of_each_front_end(tmp_path):
    """The command line says --overwrite; the engine (used by QGIS, which has no such switch)
    only says to choose another folder, never a Python keyword."""
    from test_cli import _scene

    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster
    from urdm_plugin.core.errors import OutputExistsError

    tif, csv, _ = _scene(tmp_path)
    out = tmp_path / "out"
    unmix_raster(tif, csv, out, UnmixOptions(method="fcls"))
    with pytest.raises(OutputExistsError) as err:
        unmix_raster(tif, csv, out, UnmixOptions(method="fcls"))
    assert "overwrite" not in str(err.value).lower()
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(csv), str(out), "--method", "fcls"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--overwrite" in r.stderr
    assert "overwrite=True" not in r.stderr


def test_one_band_names_the_band_count_not_an_internal_option(tmp_path):
    import numpy as np
    from osgeo import gdal

    path = tmp_path / "one.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 5, 4, 1, gdal.GDT_Float32)
    ds.GetRasterBand(1).WriteArray(np.full((4, 5), 0.3, np.float32))
    ds.GetRasterBand(1).SetMetadataItem("wavelength", "500")
    ds = None
    lib = tmp_path / "lib.csv"
    lib.write_text("wavelength_nm,a,b,c\n500,0.1,0.5,0.9\n1000,0.2,0.4,0.8\n1500,0.3,0.3,0.2\n")
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(path), str(lib), str(tmp_path / "o"),
                        "--no-water-mask"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "Only 1 usable band(s) for 3 endmember(s)" in r.stderr and "max_endmembers" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.csv", "one.tif"]


# ----------------------------------------------------------------------------- numerics
def _cube_tif(path: Path, Y, wl) -> Path:
    from osgeo import gdal

    B, H, W = Y.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, B, gdal.GDT_Float32)
    for b in range(B):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(Y[b].astype("float32"))
        band.SetMetadataItem("wavelength", f"{wl[b]:.3f}")
    ds = None
    return path


def test_values_beyond_reflectance_are_refused_with_the_scale_advice(tmp_path):
    import numpy as np
    from test_cli import _scene

    tif, csv, sc = _scene(tmp_path)
    big = _cube_tif(tmp_path / "radiance.tif", sc.Y * 1e9, sc.wavelengths_nm)
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(big), str(csv), str(tmp_path / "o"),
                        "--method", "fcls", "--no-water-mask"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "not reflectance" in r.stderr and "scale factor" in r.stderr
    assert not (tmp_path / "o").exists()
    assert np.isfinite(sc.Y).all()


def test_corrupt_pixels_become_nodata_and_abundances_stay_feasible(tmp_path):
    """A few pixels with garbage (1e30, 1e15) among good ones: a warning, those pixels are
    nodata, every other pixel's abundances are finite, non-negative and sum to one."""
    import numpy as np
    from osgeo import gdal
    from test_cli import _scene

    tif, csv, sc = _scene(tmp_path)
    Y = sc.Y.copy()
    Y[5, 1, 1], Y[:, 4, 7], Y[9, 10, 2] = 1e30, 1e15, -3e13
    bad = _cube_tif(tmp_path / "corrupt.tif", Y, sc.wavelengths_nm)
    for method in ("fcls", "urdm"):
        out = tmp_path / method
        r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(bad), str(csv), str(out), "--method",
                            method, "--no-water-mask", "--lam", "0.3"] if method == "urdm" else
                           [sys.executable, "-m", "urdm_plugin", "unmix", str(bad), str(csv), str(out), "--method",
                            method, "--no-water-mask"], capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 0, r.stderr
        A = np.stack([gdal.Open(str(out / f"{n}.tif")).ReadAsArray() for n in ("Grass", "Asphalt", "Water")])
        nodata = A[0] == -9999.0
        assert nodata[1, 1] and nodata[4, 7] and nodata[10, 2]
        good = A[:, ~nodata]
        assert np.isfinite(good).all() and good.min() >= 0 and np.allclose(good.sum(0), 1, atol=1e-5)


def test_the_array_api_never_returns_abundances_from_out_of_range_pixels():
    import numpy as np

    from urdm_plugin.core.engine.arrays import unmix_array
    from urdm_plugin.core.synthetic import make_scene

    sc = make_scene(height=12, width=10, n_endmembers=3, snr_db=40, seed=1_000_301, n_bands=30)
    Y = sc.Y.copy()
    Y[:, 2, 3] *= 1e15
    for method in ("fcls", "nnls", "tv"):
        A = unmix_array(Y, sc.E, method=method, **({"lam": 0.01, "max_iter": 30} if method == "tv" else {}))
        assert np.isnan(A[:, 2, 3]).all()
        rest = np.delete(A.reshape(3, -1), 2 * 10 + 3, axis=1)
        assert np.isfinite(rest).all()


# ----------------------------------------------------------------------------- responsiveness
def test_a_refused_output_folder_is_reported_before_any_reading(tmp_path, monkeypatch):
    from test_cli import _scene

    from urdm_plugin.core.engine import pipeline
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster
    from urdm_plugin.core.errors import OutputExistsError

    tif, csv, _ = _scene(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    def no_planning(*a, **k):
        raise AssertionError("the run was planned before its output folder was checked")

    monkeypatch.setattr(pipeline, "plan_run", no_planning)
    with pytest.raises(OutputExistsError):
        unmix_raster(tif, csv, out, UnmixOptions(method="fcls"))
    assert (out / "notes.txt").read_text() == "mine"


def test_automatic_selection_reports_progress_and_can_be_cancelled():
    import numpy as np

    from urdm_plugin.core.errors import Cancelled
    from urdm_plugin.core.methods.selection import select_endmembers

    rng = np.random.default_rng(0)
    E = rng.uniform(0.05, 0.9, (40, 300))
    Y = E[:, :3] @ rng.dirichlet(np.ones(3), 400).T
    seen = []
    select_endmembers(Y, E, max_endmembers=5, progress=lambda f, m: seen.append(f))
    assert len(seen) >= 5 and seen == sorted(seen)  # every greedy step and stage reports
    calls = []
    with pytest.raises(Cancelled):
        select_endmembers(Y, E, max_endmembers=5, cancel=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3  # stopped at the third check, not after the whole sample


def test_control_characters_in_names_never_reach_the_terminal(tmp_path):
    from test_cli import _scene

    tif, csv, _ = _scene(tmp_path)
    text = csv.read_text().replace("Grass", "Gr\x1b[31mass", 1)
    evil = tmp_path / "evil.csv"
    evil.write_text(text)
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(evil), str(tmp_path / "o"),
                        "--method", "fcls"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x1b" not in r.stderr and "Gr?[31mass" in r.stdout


def test_a_failed_run_removes_the_parent_folders_it_created(tmp_path):
    """A run that fails after its output writer started (here: every pixel is nodata)."""
    import numpy as np
    from osgeo import gdal
    from test_cli import _scene

    tif, csv, _ = _scene(tmp_path)
    empty = tmp_path / "empty.tif"
    gdal.Translate(str(empty), str(tif))
    ds = gdal.Open(str(empty), gdal.GA_Update)
    for b in range(ds.RasterCount):
        ds.GetRasterBand(b + 1).WriteArray(np.full((ds.RasterYSize, ds.RasterXSize), -9999.0, np.float32))
    ds = None
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(empty), str(csv),
                        str(tmp_path / "new" / "deeper" / "out"), "--method", "fcls"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and "nodata" in r.stderr, r.stderr
    assert not (tmp_path / "new").exists()


def test_a_symlinked_output_folder_gets_the_results_and_a_dangling_one_is_refused_first(slow_scene, tmp_path):
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster

    tif, csv = slow_scene
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    res = unmix_raster(tif, csv, tmp_path / "link", UnmixOptions(method="fcls"))
    assert Path(res.out_dir) == real.resolve() and (tmp_path / "link").is_symlink()
    assert (tmp_path / "link" / "run.json").is_file()  # seen through the link, as the user named it
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="symbolic link to .* not an existing folder"):
        unmix_raster(tif, csv, tmp_path / "dangling", UnmixOptions(method="fcls"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "link", "real"]


def test_an_output_name_too_long_for_the_file_system_is_a_clear_refusal(tmp_path):
    from urdm_plugin.core.io.output_policy import check_output_folder, output_folder_target

    name = tmp_path / ("x" * 300)
    for check in (output_folder_target, check_output_folder):
        with pytest.raises(OutputError, match="300 bytes long; file systems allow 255"):
            check(name)
    assert list(tmp_path.iterdir()) == []


def test_a_write_past_the_file_size_limit_names_the_limit():
    import errno

    from urdm_plugin.core.errors import os_error_cause

    why, fix = os_error_cause(OSError(errno.EFBIG, "File too large"))
    assert "file-size limit" in why and "FAT32" in why and "Raise the limit" in fix
    why, fix = os_error_cause(OSError(errno.ENOSPC, "No space left on device"))
    assert "disk is full" in why and "Free disk space" in fix


def test_a_truncated_image_gives_one_line_without_gdal_noise(tmp_path):
    from test_pipeline import write_scene

    tif, csv = write_scene(tmp_path)[:2]
    data = tif.read_bytes()
    tif.write_bytes(data[: len(data) // 3])
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(csv), str(tmp_path / "out"),
                        "--method", "fcls", "--quiet"], capture_output=True, text=True, env=ENV, cwd=str(ROOT),
                       timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "failed (" in r.stderr and "Check that the file is complete" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_dead_band_is_left_out_and_named_and_the_run_goes_on(tmp_path):
    """One band of NaN everywhere would make every pixel nodata: the band is dropped and
    named (warnings, match report) and the run goes on; an image that is all nodata keeps
    the general refusal."""
    import numpy as np
    from osgeo import gdal
    from test_pipeline import write_scene

    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster
    from urdm_plugin.core.errors import InputImageError

    tif, csv = write_scene(tmp_path)[:2]
    ds = gdal.Open(str(tif), gdal.GA_Update)
    band = ds.GetRasterBand(12)
    band.WriteArray(np.full((ds.RasterYSize, ds.RasterXSize), np.nan, np.float32))
    wl = float(band.GetMetadataItem("wavelength"))
    ds = None
    res = unmix_raster(tif, csv, tmp_path / "out", UnmixOptions(method="fcls", mask_water_bands=False))
    m = res.manifest
    assert any(f"band 12 ({wl:.1f} nm)" in w for w in m["warnings"]), m["warnings"]
    assert 12 not in m["inputs"]["bands_used"] and m["valid_pixels"] > 0
    assert [11, "no usable value"] == [m["match"]["dropped"][-1][0], m["match"]["dropped"][-1][2][:15]]
    (tmp_path / "all").mkdir()
    tif2, csv2 = write_scene(tmp_path / "all", all_nodata=True)[:2]
    with pytest.raises(InputImageError, match="Every pixel in the image is nodata; there is nothing"):
        unmix_raster(tif2, csv2, tmp_path / "out2", UnmixOptions(method="fcls"))


def test_a_new_subfolder_of_a_folder_that_takes_no_files_is_refused_before_any_work(unwritable_folder):
    """The run's folder does not exist yet: its nearest existing ancestor is checked
    (os.access and a probe file), so a run fails now, not after its work with "Operation not
    permitted"."""
    from urdm_plugin.core.io.folders import check_folder_creatable
    from urdm_plugin.core.io.output_policy import check_output_folder

    for check in (check_folder_creatable, check_output_folder):
        with pytest.raises(OutputError, match="cannot be made: .*locked.* (is not writable for you|nothing can "
                                              "be written).* Choose a folder you can write to"):
            check(unwritable_folder / "new" / "run")
    with pytest.raises(OutputError, match="cannot be used: .*(not writable|nothing can be written)"):
        check_folder_creatable(unwritable_folder)
    assert list(unwritable_folder.iterdir()) == []  # no probe left behind


def test_a_folder_whose_permission_bits_say_writable_is_still_probed(unwritable_folder, monkeypatch):
    """Permission bits can say yes where writing fails (ACLs on a share, a server that
    refuses): with os.access answering yes, the probe file still finds the truth."""
    from urdm_plugin.core.io import folders

    monkeypatch.setattr(folders.os, "access", lambda *a, **k: True)
    with pytest.raises(OutputError, match=r"nothing can be written in .*locked.* \((Operation not permitted|"
                                          r"Permission denied).*\)\. Choose a folder you can write to"):
        folders.check_folder_creatable(unwritable_folder / "new")
    assert list(unwritable_folder.iterdir()) == []
