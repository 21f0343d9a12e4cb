"""core.engine.plan.plan_run: what a run will do, decided before any output exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_pipeline import NAMES, write_scene

from urdm_plugin.core.engine.plan import AUTO_SELECT_ABOVE, UnmixOptions, plan_run
from urdm_plugin.core.errors import LibraryError, OptionError
from urdm_plugin.core.io.library import SpectralLibrary
from urdm_plugin.core.window import Window


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("plan"))


def test_plan_names_bands_endmembers_and_parameters(scene):
    tif, csv, sc = scene
    plan = plan_run(tif, csv, UnmixOptions(method="tv", params={"lam": 0.01}))
    assert plan.ok and plan.names == NAMES and plan.selection["mode"] == "all"
    assert plan.E.shape == (len(plan.bands), 3) and plan.extent == Window.from_xywh((0, 0, 24, 20))
    assert plan.params == {"lam": 0.01, "max_iter": 300}
    assert plan.sample is not None and plan.sample.shape[0] == len(plan.bands)


def test_problems_are_recorded_or_raised(scene):
    tif, csv, _ = scene
    with pytest.raises(LibraryError, match="Nope"):
        plan_run(tif, csv, UnmixOptions(endmembers=["Nope"]))
    plan = plan_run(tif, csv, UnmixOptions(endmembers=["Nope"]), strict=False)
    assert not plan.ok and "Nope" in plan.problems[0]
    plan = plan_run(tif, csv, UnmixOptions(method="urdm", params={"lam": -1}), strict=False)
    assert "outside its range" in plan.problems[0]
    with pytest.raises(OptionError, match="window"):
        plan_run(tif, csv, UnmixOptions(window=(0, 0, 100, 5)))


def test_metadata_only_plan_defers_automatic_selection(scene, tmp_path):
    tif, _csv, sc = scene
    # a library larger than the selection cap: spectra of the scene plus scaled copies
    copies = [sc.E * f for f in np.linspace(0.5, 1.5, 9)]
    E = np.concatenate(copies, axis=1)
    names = [f"s{i}" for i in range(E.shape[1])]
    lib = SpectralLibrary(names, sc.wavelengths_nm, E)
    assert len(lib) > AUTO_SELECT_ABOVE
    quick = plan_run(tif, lib, UnmixOptions(), read_pixels=False)
    assert quick.ok and quick.sample is None
    assert quick.selection == {"mode": "automatic-pending", "from": len(lib), "max": AUTO_SELECT_ABOVE,
                               "subset": False}
    full = plan_run(tif, lib, UnmixOptions())
    assert full.selection["mode"] == "automatic" and 1 <= len(full.names) <= AUTO_SELECT_ABOVE
    assert any("selected" in w for w in full.warnings)
    assert not list(Path(tmp_path).iterdir())  # planning writes nothing


def test_sample_spreads_over_the_extent_in_few_blocks(tmp_path):
    """The pixel sample of a tiled file comes from blocks spread top to bottom, and its size
    is about SAMPLE_ROWS rows."""
    from osgeo import gdal

    from urdm_plugin.core.engine.sample import SAMPLE_BLOCKS, SAMPLE_ROWS, read_sample
    from urdm_plugin.core.io.image import block_height, open_image

    H, W, B = 400, 32, 5
    path = tmp_path / "tiled.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, B, gdal.GDT_Float32,
                                              ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"])
    rows = np.repeat(np.arange(H, dtype=np.float32)[:, None], W, axis=1)  # value = row index
    for b in range(B):
        ds.GetRasterBand(b + 1).WriteArray(rows)
    ds = None
    info = open_image(path)
    assert block_height(info) == 16
    Y = read_sample(info, [0, 1], Window.whole(H, W))
    seen = np.unique(Y[0])
    assert Y.shape[1] == SAMPLE_ROWS * W
    assert seen.min() < 16 and seen.max() >= H - 16  # first and last block rows
    assert len(np.unique(seen // 16)) == SAMPLE_BLOCKS


def test_too_many_given_spectra_are_selected_from_not_refused(tmp_path):
    """A subset larger than the run can use (the dialog's ticked rows) goes through automatic
    selection among those spectra only, and says so."""
    from test_cli import _scene

    from urdm_plugin.core.engine.plan import UnmixOptions, plan_run
    from urdm_plugin.core.io.library import SpectralLibrary, read_library

    tif, csv, sc = _scene(tmp_path)
    lib = read_library(csv)
    rng = np.random.default_rng(3)
    extra = np.clip(lib.spectra[:, :1] + rng.normal(0, 0.05, (lib.spectra.shape[0], 30)), 0.01, 1)
    big = SpectralLibrary(list(lib.names) + [f"decoy {i}" for i in range(30)], lib.wavelengths_nm,
                          np.hstack([lib.spectra, extra]))
    ticked = list(lib.names) + [f"decoy {i}" for i in range(25)]  # 28 > 20
    plan = plan_run(tif, big, UnmixOptions(method="fcls", endmembers=ticked))
    assert plan.selection["mode"] == "automatic" and plan.selection["subset"] is True
    assert set(plan.names) <= set(ticked) and 1 <= len(plan.names) <= 20
    assert any(w.startswith("28 spectra were given, more than the 20") for w in plan.warnings)


def test_a_library_missing_a_material_of_the_scene_is_a_poor_fit_warning(scene):
    tif, csv, sc = scene
    good = plan_run(tif, csv, UnmixOptions())
    assert good.fit["pixels"] > 100 and not good.fit["poor"]
    assert good.fit["relative_residual"] < 0.1
    assert not any("Poor fit" in w for w in good.warnings)
    # two of the three materials: the third's pixels are forced onto the others
    worse = plan_run(tif, csv, UnmixOptions(endmembers=NAMES[:1]))
    assert worse.fit["poor"] and worse.fit["relative_residual"] > good.fit["relative_residual"]
    msg = next(w for w in worse.warnings if w.startswith("Poor fit"))
    assert "of a pixel's reflectance" in msg and "vca" in msg


def test_poor_fit_on_a_real_scene_without_its_water(shared_data):
    """Jasper Ridge: its four reference endmembers fit (residual ~12 % of a pixel's reflectance);
    without Water the lake is forced onto land spectra and the plan warns."""
    jr = shared_data / "jasper_ridge"
    img, lib = jr / "jasper_ridge.tif", jr / "jasper_ridge_endmembers.csv"
    ok = plan_run(img, lib, UnmixOptions())
    assert not ok.fit["poor"] and ok.fit["relative_residual"] < 0.2
    assert not any("stands in" in w for w in ok.warnings)
    bad = plan_run(img, lib, UnmixOptions(endmembers=["Tree", "Soil", "Road"]))
    assert bad.fit["poor"] and any(w.startswith("Poor fit: with the endmembers") for w in bad.warnings)
    # the lake goes to Tree, the darkest land spectrum: named as the stand-in
    assert [w.split(":")[0] for w in bad.warnings if "stands in" in w] == ["Tree"]


def test_automatic_selection_from_the_usgs_library_is_few_and_flags_its_stand_ins(shared_data):
    """Jasper Ridge (trees, water, soil, road) against the 498 USGS 1995 spectra, which hold
    no water and no asphalt: at most 8 spectra, vegetation among them, the spectrum holding
    the lake flagged, and the run warned of the poor fit."""
    plan = plan_run(shared_data / "jasper_ridge" / "jasper_ridge.tif", shared_data / "usgs_1995" / "usgs_1995.csv",
                    UnmixOptions())
    sel = plan.selection
    assert sel["mode"] == "automatic" and sel["from"] == 498 and 2 <= len(plan.names) <= 8
    assert any(k in n for n in plan.names for k in ("Grass", "Lawn", "brush", "Leaves", "Tree"))
    stand_ins = [f for f in sel["flags"] if "stands in" in f]
    assert stand_ins and all(f.split(":")[0] in plan.names for f in stand_ins)
    assert plan.fit["poor"] and any(w.startswith("Poor fit: with the spectra selected") for w in plan.warnings)


def test_a_selection_is_checked_on_other_pixel_samples(tmp_path, shared_data):
    """The true materials of a scene are kept whichever pixels are looked at; a spectrum
    only some random pixel subsets keep is flagged (Samson + USGS 1995: one such)."""
    tif, csv, sc = write_scene(tmp_path, H=40, W=100, seed=1_000_231)
    rng = np.random.default_rng(7)
    base = SpectralLibrary(NAMES, sc.wavelengths_nm, sc.E)
    extra = np.clip(rng.uniform(0.05, 0.6, (sc.E.shape[0], 30)), 0, 1)
    lib = SpectralLibrary(NAMES + [f"decoy {i}" for i in range(30)], sc.wavelengths_nm,
                          np.concatenate([base.spectra, extra], axis=1))
    plan = plan_run(tif, lib, UnmixOptions())
    assert plan.selection["mode"] == "automatic" and plan.sample.shape[1] > 2000
    assert set(NAMES) <= set(plan.names)
    assert not any("unstable" in f and f.split(":")[0] in NAMES for f in plan.selection["flags"])
    samson = plan_run(shared_data / "samson" / "samson.img", shared_data / "usgs_1995" / "usgs_1995.csv",
                      UnmixOptions())
    unstable = [f for f in samson.selection["flags"] if "random pixel samples (unstable)" in f]
    assert unstable and all(f.split(":")[0] in samson.names for f in unstable)


def test_bands_fitting_far_worse_than_the_others_are_named(tmp_path, scene):
    """Two bands whose values the library does not describe (here scaled ×1.6, as a band
    bridged across a library hole or miscalibrated) are named in the plan's warnings; the
    clean scene names none."""
    from osgeo import gdal

    tif, csv, _ = scene
    assert not any("fit far worse" in w for w in plan_run(tif, csv).warnings)
    bad = tmp_path / "bad.tif"
    gdal.Translate(str(bad), str(tif))
    ds = gdal.Open(str(bad), gdal.GA_Update)
    for b in (20, 31):
        band = ds.GetRasterBand(b)
        a = band.ReadAsArray()
        band.WriteArray(np.where(a == -9999, a, a * 1.6))
    ds = None
    plan = plan_run(bad, csv)
    loud = [w for w in plan.warnings if "fit far worse" in w]
    assert len(loud) == 1 and "band 20 (" in loud[0] and "band 31 (" in loud[0] and loud[0].startswith("2 band(s)")
    assert [plan.bands[e["position"]] + 1 for e in plan.fit["loud_bands"]] == [20, 31]


def test_the_stability_check_reports_itself_not_a_selection_starting_over(tmp_path):
    """After "selecting endmembers: 3 chosen" the bar said "checking the selection: selecting
    endmembers: 0 chosen", as if the selection had restarted (issue #24)."""
    tif, csv, sc = write_scene(tmp_path, H=40, W=100, seed=1_000_231)
    lib = SpectralLibrary(NAMES + [f"copy {i}" for i in range(24)], sc.wavelengths_nm,
                          np.concatenate([sc.E] + [sc.E * f for f in np.linspace(0.6, 1.4, 8)], axis=1))
    seen = []
    plan = plan_run(tif, lib, UnmixOptions(), progress=lambda f, m: seen.append((f, m)))
    assert plan.selection["mode"] == "automatic" and plan.sample.shape[1] > 2000
    checks = [m for _f, m in seen if m.startswith("checking the selection")]
    assert checks and set(checks) == {"checking the selection on another pixel sample (1 of 2)",
                                      "checking the selection on another pixel sample (2 of 2)"}
    assert [f for f, _m in seen] == sorted(f for f, _m in seen)


def test_problems_and_warnings_are_typed_by_the_rule_that_made_them(scene):
    """A front end orders and filters the plan's messages by kind, never by their text."""
    import pickle

    from urdm_plugin.core.engine.findings import Finding, Kind, Severity, in_order

    tif, csv, _ = scene
    unknown = plan_run(tif, csv, UnmixOptions(endmembers=["Nope"]), strict=False)
    assert unknown.problems[0].kind == Kind.INPUT and unknown.problems[0].severity == Severity.PROBLEM
    window = plan_run(tif, csv, UnmixOptions(window=(0, 0, 100, 5)), strict=False)
    assert len(window.problems) == 1 and window.problems[0].kind == Kind.INPUT
    worse = plan_run(tif, csv, UnmixOptions(endmembers=NAMES[:1]))
    poor = next(w for w in worse.warnings if w.startswith("Poor fit"))
    assert poor.kind == Kind.FIT and poor.severity == Severity.WARNING
    assert all(isinstance(w, Finding) for w in worse.warnings)
    back = pickle.loads(pickle.dumps(poor))  # a run's plan crosses to worker processes
    assert back == poor and back.kind == Kind.FIT and back.severity == Severity.WARNING
    assert in_order([poor, *unknown.problems]) == [unknown.problems[0], poor]  # problems first


def test_a_sample_cache_reads_the_pixels_once_and_the_selection_can_wait(scene, monkeypatch):
    """The dialog plans on every change of its choices: the pixels are read once per image,
    bands and extent; with ``auto_select=False`` the selection stays pending and the sample's
    scale is checked against every candidate spectrum."""
    from urdm_plugin.core.engine import sample as sample_module
    from urdm_plugin.core.engine.findings import Kind
    from urdm_plugin.core.engine.sample import SampleCache

    tif, _csv, sc = scene
    reads = []
    real = sample_module.read_sample
    monkeypatch.setattr(sample_module, "read_sample", lambda *a, **k: reads.append(a[1]) or real(*a, **k))
    E = np.concatenate([100 * sc.E * f for f in np.linspace(0.5, 1.5, 9)], axis=1)  # percent, too many
    lib = SpectralLibrary([f"s{i}" for i in range(E.shape[1])], sc.wavelengths_nm, E)
    cache = SampleCache()
    first = plan_run(tif, lib, UnmixOptions(), auto_select=False, samples=cache)
    again = plan_run(tif, lib, UnmixOptions(method="nnls"), auto_select=False, samples=cache)
    assert len(reads) == 1 and np.array_equal(again.sample, first.sample) and first.held is None
    assert first.selection["mode"] == "automatic-pending" and first.fit is None
    assert any(w.kind == Kind.SCALE and "percent" in w for w in first.warnings)
    plan_run(tif, lib, UnmixOptions(window=(0, 0, 10, 10)), auto_select=False, samples=cache)
    assert len(reads) == 2  # another extent: another sample


def test_a_sample_cache_finds_dead_bands_once(tmp_path, monkeypatch):
    """A band of NaN leaves the sample empty: the plan finds the dead band (reading it whole)
    once per cache, whatever the choices planned after."""
    from osgeo import gdal

    from urdm_plugin.core.engine.findings import Kind
    from urdm_plugin.core.engine.sample import SampleCache
    from urdm_plugin.core.io import image as image_module

    tif, csv = write_scene(tmp_path)[:2]
    ds = gdal.Open(str(tif), gdal.GA_Update)
    ds.GetRasterBand(12).WriteArray(np.full((ds.RasterYSize, ds.RasterXSize), np.nan, np.float32))
    ds = None
    scans = []
    real = image_module.dead_bands
    monkeypatch.setattr(image_module, "dead_bands", lambda *a, **k: scans.append(1) or real(*a, **k))
    cache = SampleCache()
    for method in ("fcls", "nnls", "scls"):
        plan = plan_run(tif, csv, UnmixOptions(method=method, mask_water_bands=False), samples=cache)
        assert plan.ok and 11 not in plan.bands and plan.sample.shape[1] > 0
        assert any(w.kind == Kind.BANDS and "no usable value" in w for w in plan.warnings)
    assert len(scans) == 1
