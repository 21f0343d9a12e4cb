"""Naming extracted endmembers from a reference library (core.methods.identify) and VCA with
an automatic number of endmembers (core.engine.extraction)."""

from __future__ import annotations

import numpy as np
import pytest

from urdm_plugin.core.engine.extraction import extract_endmembers, identify_library, parse_n
from urdm_plugin.core.errors import OptionError
from urdm_plugin.core.io.library import SpectralLibrary, read_library
from urdm_plugin.core.methods.identify import continuum_removed, identify, spectral_angles
from urdm_plugin.core.synthetic import BENCHMARK_SEED_BASE, synthetic_spectra

VEG = ("Aspen", "Blackbrush", "Spruce", "Cheatgrass", "Grass", "Fir_Tree", "Juniper", "Lawn", "Maple",
       "Pinon", "Rabbitbrush", "Olive", "Sage", "Saltbrush", "Tumbleweed", "Walnut")


def test_library_spectra_plus_noise_get_their_names():
    rng = np.random.default_rng(BENCHMARK_SEED_BASE + 21)
    wl = np.linspace(400, 2500, 150)
    R = synthetic_spectra(60, wl, rng)
    names = [f"mat{i}" for i in range(60)]
    pick = [5, 17, 42, 17]
    E = R[:, pick] * rng.uniform(0.5, 1.5, 4) + 0.003 * rng.standard_normal((150, 4))
    E = np.column_stack([E, np.full(150, 0.3) + 0.05 * np.sin(wl / 50.0)])  # a non-library shape
    res = identify(E, R, names, wavelengths_nm=wl)
    assert res.names[:4] == ["mat5", "mat17", "mat42", "mat17_2"]  # unique: _2 for a repeat
    assert res.names[4] == "unidentified_5"
    assert all(m["identified"] for m in res.matches[:4]) and not res.matches[4]["identified"]
    assert all(m["angle"] < 0.05 for m in res.matches[:4])
    assert all(len(m["candidates"]) == 4 for m in res.matches)  # best + 3 next
    assert "next:" in res.report and "unidentified_5" in res.report
    assert res.as_dict()["names"] == res.names


def test_angles_and_continuum_removal():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(spectral_angles(a, a), [[0, np.pi / 2], [np.pi / 2, 0]], atol=1e-12)
    x = np.linspace(0, 1, 50)
    s = 0.5 + 0.2 * x - 0.1 * np.exp(-0.5 * ((x - 0.5) / 0.05) ** 2)
    cr = continuum_removed(s, x)
    assert cr.max() <= 1 + 1e-12 and cr[0] == pytest.approx(1) and cr[25] < 0.85


def test_identify_refuses_bad_inputs():
    with pytest.raises(OptionError):
        identify(np.ones((5, 2)), np.ones((6, 3)), ["a", "b", "c"])
    with pytest.raises(OptionError):
        identify(np.ones((5, 2)), np.ones((5, 3)), ["a", "b", "c"], max_angle=3.0)
    assert parse_n("auto") == "auto" and parse_n(0) == "auto" and parse_n("4") == 4
    with pytest.raises(OptionError):
        parse_n("many")


def test_identify_library_resamples_the_reference():
    rng = np.random.default_rng(BENCHMARK_SEED_BASE + 22)
    wl_ref = np.linspace(400, 2500, 400)
    ref = SpectralLibrary([f"r{i}" for i in range(10)], wl_ref, synthetic_spectra(10, wl_ref, rng))
    wl = np.linspace(420, 2400, 90)
    em = SpectralLibrary(["endmember_1", "endmember_2"], wl,
                         np.column_stack([np.interp(wl, wl_ref, ref.spectra[:, 3]),
                                          np.interp(wl, wl_ref, ref.spectra[:, 8])]))
    lib, res = identify_library(em, ref)
    assert lib.names == ["r3", "r8"] and res.n_bands == 90


@pytest.fixture(scope="module")
def jasper_auto(shared_data):
    ref = read_library(shared_data / "usgs_1995" / "usgs_1995.csv")
    lib = extract_endmembers(shared_data / "jasper_ridge" / "jasper_ridge.tif", "auto", reference=ref)
    gt = read_library(shared_data / "jasper_ridge" / "jasper_ridge_endmembers.csv")
    return lib, gt


def test_jasper_vca_auto_names_vegetation_and_leaves_water_road_unidentified(jasper_auto):
    from urdm_plugin.core.bands import resample_spectra

    lib, gt = jasper_auto
    assert lib.hysime is not None and lib.n_requested == "auto"
    assert len(lib) == lib.hysime.n_endmembers and 4 <= len(lib) <= 20
    assert 0.001 < lib.noise_sigma < 0.01 and "HySime" in lib.report
    G = resample_spectra(gt.wavelengths_nm, gt.spectra, lib.wavelengths_nm)[0]
    ang = spectral_angles(lib.spectra, G)
    closest = [gt.names[int(i)] for i in ang.argmin(axis=1)]
    tree = [n for n, c in zip(lib.names, closest) if c == "Tree"]
    assert any(any(v in n for v in VEG) for n in tree), (lib.names, closest)
    # water and road are not in the 1995 library: no mineral name for them
    for n, c in zip(lib.names, closest):
        if c in ("Water", "Road"):
            assert n.startswith("unidentified_"), (n, c)
    assert lib.identification.as_dict()["max_angle_rad"] == pytest.approx(0.13)


def test_required_feature_fit_is_graded_by_the_angle():
    from urdm_plugin.core.methods.identify import MAX_ANGLE, MIN_FEATURE_FIT, required_feature_fit

    assert required_feature_fit(MAX_ANGLE) == pytest.approx(MIN_FEATURE_FIT)
    assert required_feature_fit(0.0) == pytest.approx(MIN_FEATURE_FIT - 0.35)
    assert required_feature_fit(0.3) == pytest.approx(MIN_FEATURE_FIT)  # beyond the angle: no relief
    assert required_feature_fit(0.01, min_feature_fit=-1) == -1  # disabled


def test_the_demo_scene_names_its_materials_and_misnames_none(tmp_path, write_demo_scene):
    """The demo scene (5 materials, one of them dark, 30 dB): single-pixel VCA in its
    projective mode found 3 of 5 and named 1; both modes with averaged picks, the better fit
    kept, name at least 4, and no endmember gets another material's name."""
    from urdm_plugin.core.bands import resample_spectra

    scene = write_demo_scene(tmp_path)
    ref = read_library(scene["library"])
    res = extract_endmembers(scene["image"], "auto", reference=ref)
    assert res.hysime.n_endmembers == 5
    named = [m for m in res.identification.matches if m["identified"]]
    assert len(named) >= 4 and len({m["best"] for m in named}) == len(named)
    truth = read_library(scene["library"])
    T, _ = resample_spectra(truth.wavelengths_nm, truth.spectra, res.wavelengths_nm)
    for j, m in enumerate(res.identification.matches):  # a name is the closest true material
        if m["identified"]:
            closest = truth.names[int(np.argmin(spectral_angles(res.spectra[:, [j]], T)[0]))]
            assert m["best"] == closest
