"""``python -m urdm_plugin``: end to end through a subprocess, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from option_cases import BAD_RUNS, builder_message
from osgeo import gdal, osr

from urdm_plugin import cli
from urdm_plugin.core.synthetic import make_scene

ROOT = Path(__file__).resolve().parents[1]
GT = (300000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
NAMES = ["Grass", "Asphalt", "Water"]


def _scene(folder: Path):
    """18×16-pixel, 60-band float32 GeoTIFF (EPSG:32617, wavelengths per band in nm, nodata
    at pixel (2, 3)) and its CSV library of the three true endmembers."""
    sc = make_scene(height=18, width=16, n_endmembers=3, snr_db=35, seed=1_000_300, n_bands=60)
    tif, csv = folder / "cube.tif", folder / "lib.csv"
    ds = gdal.GetDriverByName("GTiff").Create(str(tif), 16, 18, 60, gdal.GDT_Float32)
    ds.SetGeoTransform(GT)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32617)
    ds.SetProjection(srs.ExportToWkt())
    Y = sc.Y.astype(np.float32)
    Y[:, 2, 3] = -9999.0
    for b in range(60):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(Y[b])
        band.SetNoDataValue(-9999.0)
        band.SetMetadataItem("wavelength", f"{sc.wavelengths_nm[b]:.3f}")
        band.SetMetadataItem("wavelength_units", "Nanometers")
    ds = None
    rows = ["wavelength_nm," + ",".join(NAMES)]
    rows += [f"{sc.wavelengths_nm[b]:.3f}," + ",".join(f"{v:.8f}" for v in sc.E[:, :][b]) for b in range(60)]
    csv.write_text("\n".join(rows) + "\n")
    return tif, csv, sc


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return _scene(tmp_path_factory.mktemp("cli"))


def run_cli(*args, env=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "urdm_plugin", *map(str, args)], capture_output=True,
                          text=True, env=e, cwd=str(ROOT), timeout=120)


def test_unmix_end_to_end(scene, tmp_path):
    tif, csv, sc = scene
    out = tmp_path / "out"
    r = run_cli("unmix", tif, csv, out, "--method", "fcls", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout and "fcls" in r.stdout
    m = json.loads((out / "run.json").read_text())
    assert m["method"] == "fcls" and [e["name"] for e in m["endmembers"]] == NAMES
    assert m["parameters"]["options"]["seed"] == 3
    src = gdal.Open(str(tif))
    for k, e in enumerate(m["endmembers"]):
        ds = gdal.Open(str(out / e["file"]))
        assert ds.GetGeoTransform() == GT and ds.GetProjection() == src.GetProjection()
        assert ds.GetRasterBand(1).GetDescription() == e["name"]
        a = ds.GetRasterBand(1).ReadAsArray()
        assert a[2, 3] == -9999.0
        ok = a != -9999.0
        assert np.sqrt(np.mean((a[ok] - sc.A[k][ok]) ** 2)) < 0.03
    assert (out / m["residual_file"]).exists() and (out / "endmembers_used.csv").exists()


def test_quiet_prints_nothing_and_overwrite_is_required(scene, tmp_path):
    tif, csv, _ = scene
    out = tmp_path / "o"
    r = run_cli("unmix", tif, csv, out, "--method", "nnls", "--quiet", "--endmember", "Water",
                "--endmember", "grass")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    assert json.loads((out / "run.json").read_text())["endmembers"] == [
        {"name": "Water", "file": "Water.tif"}, {"name": "Grass", "file": "Grass.tif"}]
    r = run_cli("unmix", tif, csv, out, "--method", "fcls")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "already exists" in r.stderr and "overwrite" in r.stderr
    assert json.loads((out / "run.json").read_text())["method"] == "nnls"  # untouched
    r = run_cli("unmix", tif, csv, out, "--method", "fcls", "--overwrite", "--quiet")
    assert r.returncode == 0
    assert json.loads((out / "run.json").read_text())["method"] == "fcls"


@pytest.mark.parametrize("case, words", [
    ("missing_image", "Image not found"),
    ("unknown_method", "Unknown unmixing method"),
    ("unknown_endmember", "Gold"),
    ("bad_option", "--tile-size"),
])
def test_bad_input_exits_2_with_one_line(scene, tmp_path, case, words):
    tif, csv, _ = scene
    out = tmp_path / "out"
    args = {
        "missing_image": ["unmix", tmp_path / "nope.tif", csv, out],
        "unknown_method": ["unmix", tif, csv, out, "--method", "magic"],
        "unknown_endmember": ["unmix", tif, csv, out, "--endmember", "Gold"],
        "bad_option": ["unmix", tif, csv, out, "--tile-size", "many"],
    }[case]
    r = run_cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


@pytest.mark.parametrize("case, values, args, _proc", BAD_RUNS, ids=[c[0] for c in BAD_RUNS])
def test_bad_options_get_the_options_builders_message(scene, tmp_path, capsys, case, values, args, _proc):
    """The command line refuses what Processing refuses, with the builder's one message."""
    tif, csv, _ = scene
    code = cli.main(["unmix", str(tif), str(csv), str(tmp_path / "o"), *args])
    assert code == 2 and capsys.readouterr().err == f"error: {builder_message(values, cli._flag)}\n"
    assert not (tmp_path / "o").exists()


def test_methods_help_and_light_import():
    r = run_cli("methods")
    assert r.returncode == 0
    for mid in ("fcls", "scls", "nnls", "ucls", "tv", "urdm"):
        assert any(line.startswith(mid) for line in r.stdout.splitlines())
    assert "available" in r.stdout
    h = run_cli("unmix", "--help")
    assert h.returncode == 0
    for opt in ("--method", "--endmember", "--max-endmembers", "--quality", "--lam", "--seed", "--device",
                "--memory-mb", "--tile-size", "--samples", "--no-water-mask", "--overwrite", "--quiet",
                "example"):
        assert opt in h.stdout
    code = ("import sys, urdm_plugin.cli as c; c.build_parser(); "
            "print('torch' in sys.modules, any(m == 'qgis' or m.startswith('qgis.') for m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert p.stdout.split() == ["False", "False"], p.stderr


def test_unavailable_method_says_so_in_one_line(scene, tmp_path, monkeypatch, capsys):
    from urdm_plugin.core.methods import registry as methods

    monkeypatch.setattr(methods, "_installed", lambda name: name != "torch")
    tif, csv, _ = scene
    code = cli.main(["unmix", str(tif), str(csv), str(tmp_path / "o"), "--method", "urdm"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "PyTorch" in err
    assert not (tmp_path / "o").exists()


def test_ctrl_c_exits_130_and_leaves_nothing(scene, tmp_path, monkeypatch, capsys):
    tif, csv, _ = scene
    calls = []

    def interrupted(self, fraction, message):
        calls.append(message)
        if message.startswith("Unmixed rows"):
            raise KeyboardInterrupt

    monkeypatch.setattr(cli._CliProgress, "__call__", interrupted)
    code = cli.main(["unmix", str(tif), str(csv), str(tmp_path / "o"), "--method", "fcls"])
    assert code == 130 and "cancelled" in capsys.readouterr().err
    assert any(c.startswith("Unmixed rows") for c in calls)
    assert list(tmp_path.iterdir()) == []


def test_unexpected_error_is_one_line_with_debug_hint(scene, tmp_path, monkeypatch, capsys):
    from urdm_plugin.core.engine import pipeline

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline, "unmix_raster", boom)
    tif, csv, _ = scene
    code = cli.main(["unmix", str(tif), str(csv), str(tmp_path / "o"), "--method", "fcls"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "disk on fire" in err and "URDM_DEBUG=1" in err


def test_vca_writes_a_library_the_unmix_command_reads(scene, tmp_path):
    tif, _, sc = scene
    lib = tmp_path / "vca.csv"
    r = run_cli("vca", tif, 3, lib, "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "projection, each pick averaged with its 9 nearest pixels" in r.stdout  # how they were found
    header = lib.read_text().splitlines()[0]
    assert header == "wavelength_nm,endmember_1,endmember_2,endmember_3"
    r = run_cli("vca", tif, 3, lib)
    assert r.returncode == 2 and "exists" in r.stderr
    r = run_cli("unmix", tif, lib, tmp_path / "o", "--method", "fcls", "--quiet")
    assert r.returncode == 0, r.stderr


def test_workers_give_the_same_outputs(scene, tmp_path):
    from osgeo import gdal

    tif, csv, _ = scene
    for tag, extra in (("one", []), ("two", ["--workers", "2"])):
        r = run_cli("unmix", tif, csv, tmp_path / tag, "--method", "fcls", "--memory-mb", "1", "--quiet", *extra)
        assert r.returncode == 0, r.stderr
    for f in sorted(p.name for p in (tmp_path / "one").glob("*.tif")):
        a, b = (gdal.Open(str(tmp_path / d / f)).ReadAsArray() for d in ("one", "two"))
        assert (a == b).all(), f
    r = run_cli("unmix", tif, csv, tmp_path / "bad", "--workers", "0")
    assert r.returncode == 2 and "--workers" in r.stderr and not (tmp_path / "bad").exists()


def test_overwrite_never_deletes_inputs_or_documents(scene, tmp_path):
    """--overwrite pointed at the folder holding the image, the library and a document, or
    at the current folder, is refused in one line and deletes nothing."""
    import shutil

    tif, csv, _ = scene
    d = tmp_path / "work"
    d.mkdir()
    shutil.copy(tif, d / "img.tif")
    shutil.copy(csv, d / "lib.csv")
    (d / "thesis.docx").write_text("four years")
    before = sorted(p.name for p in d.iterdir())
    r = run_cli("unmix", d / "img.tif", d / "lib.csv", d, "--method", "fcls", "--overwrite")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "holds an input of this run" in r.stderr
    assert sorted(p.name for p in d.iterdir()) == before
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(d / "img.tif"), str(d / "lib.csv"), ".",
                        "--method", "fcls", "--overwrite"], capture_output=True, text=True, cwd=str(d),
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode == 2 and "current folder" in r.stderr
    assert sorted(p.name for p in d.iterdir()) == before


def test_a_failed_raster_write_is_not_committed(tmp_path):
    """A file-size limit (like a full disk or quota) that breaks a GeoTIFF only when GDAL
    flushes it: exit 2 naming the file, no output folder, no temporary folder left."""
    import resource

    from test_pipeline import write_scene

    tif, csv, _ = write_scene(tmp_path, H=60, W=80)
    limit = 8 * 1024  # bytes: smaller than one output raster

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(csv), str(tmp_path / "out"),
                        "--method", "fcls", "--quiet"], capture_output=True, text=True, preexec_fn=small_files,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode == 2, r.stderr
    assert "error: Writing '" in r.stderr and "disk space" in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr  # GDAL's own ERROR lines are folded into ours
    assert sorted(p.name for p in tmp_path.iterdir()) == ["library.csv", "scene.tif"]


def test_vca_auto_with_identify_end_to_end(scene, tmp_path):
    tif, csv, sc = scene
    out = tmp_path / "auto.csv"
    r = run_cli("vca", tif, "auto", out, "--identify", csv)
    assert r.returncode == 0, r.stderr
    assert "estimated 3 endmembers (HySime)" in r.stdout and "noise sigma" in r.stdout
    header = out.read_text().splitlines()[0].split(",")
    assert len(header) == 4 and set(header[1:]) <= set(NAMES) | {f"unidentified_{k}" for k in (1, 2, 3)}
    assert len(set(header[1:]) & set(NAMES)) >= 2
    report = (tmp_path / "auto.report.txt").read_text()
    assert "HySime" in report and "Identified" in report
    r = run_cli("vca", tif, "0", tmp_path / "zero.csv")
    assert r.returncode == 2 and "at least 1" in r.stderr


def _flat_tif(path: Path, Y: np.ndarray) -> Path:
    """Y (B, H, W) as a float32 GeoTIFF with wavelengths 400–2400 nm (no nodata)."""
    B, H, W = Y.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, B, gdal.GDT_Float32)
    ds.SetGeoTransform((500000.0, 30.0, 0.0, 4100000.0, 0.0, -30.0))
    for b, w in enumerate(np.linspace(400, 2400, B)):
        ds.GetRasterBand(b + 1).WriteArray(Y[b])
        ds.GetRasterBand(b + 1).SetMetadataItem("wavelength", f"{w:.1f}")
    ds = None
    return path


def test_an_image_without_signal_is_refused_by_unmix_and_vca(scene, tmp_path, capsys):
    """An all-zero image is not 100 % of one material (exit 0), nor VCA endmembers of zeros
    with noise σ nan: one line each, exit 2, nothing written."""
    _, csv, _ = scene
    zero = _flat_tif(tmp_path / "zero.tif", np.zeros((60, 6, 7), np.float32))
    assert cli.main(["unmix", str(zero), str(csv), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds no signal" in err and "zero.tif" in err and err.count("\n") == 1
    assert cli.main(["vca", str(zero), "3", str(tmp_path / "em.csv")]) == 2
    assert "holds no signal" in capsys.readouterr().err
    assert cli.main(["vca", str(zero), "auto", str(tmp_path / "em.csv")]) == 2
    assert "holds no signal" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "em.csv").exists()


def test_vca_on_too_few_distinct_pixels_is_refused(tmp_path, capsys):
    """A 2×2 image has 4 pixels: 4 endmembers from it would be the pixels' one average
    four times (refused); 3 come out distinct."""
    Y = np.random.default_rng(5).uniform(0.05, 0.6, (60, 2, 2)).astype(np.float32)
    tif = _flat_tif(tmp_path / "tiny.tif", Y)
    assert cli.main(["vca", str(tif), "4", str(tmp_path / "em.csv")]) == 2
    assert "only 4 distinct pixel spectra" in capsys.readouterr().err
    assert cli.main(["vca", str(tif), "3", str(tmp_path / "em3.csv")]) == 0
    E = np.loadtxt(tmp_path / "em3.csv", delimiter=",", skiprows=1)[:, 1:]
    assert np.unique(E.T.round(6), axis=0).shape[0] == 3


def test_gdal_virtual_paths_are_opened_not_called_missing(scene, tmp_path, capsys):
    """/vsizip/, /vsigzip/ and NETCDF:"…":var name what GDAL reads: they are opened (only a
    plain path can be "not found")."""
    import gzip
    import shutil
    import zipfile

    tif, csv, _ = scene
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        z.write(tif, "inner/cube.tif")
    with open(tif, "rb") as src, gzip.open(tmp_path / "cube.tif.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    for i, path in enumerate([f"/vsizip/{tmp_path}/s.zip/inner/cube.tif", f"/vsigzip/{tmp_path}/cube.tif.gz"]):
        code = cli.main(["unmix", path, str(csv), str(tmp_path / f"o{i}"), "--method", "fcls", "--quiet"])
        assert code == 0, capsys.readouterr().err
    nc = tmp_path / "cube.nc"
    gdal.Translate(str(nc), str(tif), format="netCDF", bandList=[1])
    code = cli.main(["unmix", f'NETCDF:"{nc}":Band1', str(csv), str(tmp_path / "o3"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "not found" not in err and "does not exist" not in err, err
    code = cli.main(["unmix", f"/vsizip/{tmp_path}/none.zip/cube.tif", str(csv), str(tmp_path / "o4"), "--quiet"])
    assert code == 2 and "none.zip" in capsys.readouterr().err  # a missing zip is named


def test_the_fix_names_the_command_lines_switch_not_the_python_option(tmp_path, capsys):
    """Only water-vapour bands: the advice is --no-water-mask (mask_water_bands=False is
    the Python API's spelling)."""
    Y = np.random.default_rng(2).uniform(0.1, 0.5, (10, 4, 5)).astype(np.float32)
    tif = tmp_path / "water.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(tif), 5, 4, 10, gdal.GDT_Float32)
    for b in range(10):
        ds.GetRasterBand(b + 1).WriteArray(Y[b])
        ds.GetRasterBand(b + 1).SetMetadataItem("wavelength", f"{1350 + 10 * b}")
    ds = None
    lib = tmp_path / "lib.csv"
    lib.write_text("wavelength_nm,A,B\n" + "".join(f"{w},0.2,0.4\n" for w in range(1300, 1500, 10)))
    assert cli.main(["unmix", str(tif), str(lib), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--no-water-mask" in err and "mask_water_bands" not in err, err


def test_a_sigterm_python_cannot_raise_is_recorded_not_printed():
    """SIGTERM inside a finalizer (one ran while modules loaded, 0.14 s after start, in CI):
    Python would print "Exception ignored in ..." and a traceback; the signal is recorded
    instead and the command still ends with its one line and 143."""
    code = ("import os, signal, time\n"
            "from urdm_plugin import startup, cli\n"
            "startup.install()\n"
            "with cli._termination_signals():\n"
            "    class Slow:\n"
            "        def __del__(self):\n"
            "            os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.05)\n"
            "    s = Slow(); del s\n"
            "    print(cli._received == [signal.SIGTERM])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert p.stdout.split() == ["True"] and p.stderr == "", p.stderr


def test_a_sigterm_during_an_import_is_recorded_for_the_next_poll(tmp_path):
    """A library may catch the exception during its import and print (scipy's import through
    the decorator package printed "Error in generated code" and its source in CI): inside an
    import the signal is only recorded, and the run's next cancel poll ends it."""
    (tmp_path / "noisy_lib.py").write_text(
        "import os, signal, sys, time\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.05)\n"
        "except BaseException:\n"
        "    print('Error in generated code', file=sys.stderr)\n"
        "    raise\n", encoding="utf-8")
    code = ("import signal, sys\n"
            "from urdm_plugin import startup, cli\n"
            "startup.install()\n"
            f"sys.path.insert(0, {str(tmp_path)!r})\n"
            "with cli._termination_signals():\n"
            "    import noisy_lib\n"
            "    print(cli._received == [signal.SIGTERM], cli._CtrlC()())\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert p.stdout.split() == ["True", "True"] and p.stderr == "", p.stderr
