"""Endmember selection from a library and VCA (core.methods.selection)."""

from __future__ import annotations

import numpy as np
import pytest

from urdm_plugin.core.errors import OptionError
from urdm_plugin.core.methods.selection import select_endmembers, vca
from urdm_plugin.core.metrics import spectral_angle_deg
from urdm_plugin.core.synthetic import BENCHMARK_SEED_BASE, make_scene, synthetic_spectra


def test_selection_finds_true_materials_among_distractors():
    rng = np.random.default_rng(BENCHMARK_SEED_BASE + 3)
    wl = np.linspace(400, 2500, 120)
    lib = synthetic_spectra(40, wl, rng)
    truth = [3, 17, 25, 31]
    sc = make_scene(30, 30, 4, 30.0, seed=BENCHMARK_SEED_BASE + 4, endmembers=lib[:, truth],
                    wavelengths_nm=wl)
    names = [f"m{i}" for i in range(40)]
    res = select_endmembers(sc.Y.reshape(120, -1), lib, names, n_sample=400)
    assert sorted(res.indices.tolist()) == truth
    assert res.names == [names[i] for i in res.indices]
    assert "Selected 4 of 40" in res.report
    assert np.asarray(res).tolist() == res.indices.tolist()
    capped = select_endmembers(sc.Y.reshape(120, -1), lib, names, max_endmembers=2, n_sample=200)
    assert len(capped) == 2 and set(capped.indices) <= set(truth)


def test_selection_refuses_more_endmembers_than_bands():
    rng = np.random.default_rng(0)
    with pytest.raises(OptionError, match="at most 9"):
        select_endmembers(rng.random((10, 50)), rng.random((10, 30)), max_endmembers=12)


@pytest.mark.parametrize("snr", [40.0, 25.0])
def test_vca_recovers_endmembers_with_pure_pixels(snr):
    sc = make_scene(40, 40, 4, snr, seed=BENCHMARK_SEED_BASE + 9, kind="patches", n_bands=100)
    Y = sc.Y.reshape(100, -1)
    A = sc.A.reshape(4, -1)
    assert (A.max(axis=1) > 0.99).all()  # the scene has pure pixels
    E, idx = vca(Y, 4, seed=0)
    assert E.shape == (100, 4) and len(set(idx.tolist())) == 4
    np.testing.assert_allclose(E, Y[:, idx])
    ang = np.array([[spectral_angle_deg(E[:, i], sc.E[:, j])[0] for j in range(4)] for i in range(4)])
    assert sorted(ang.argmin(axis=1).tolist()) == [0, 1, 2, 3]  # each true material found once
    assert ang.min(axis=1).max() < (3.0 if snr > 30 else 8.0)


def test_selection_flags_collinear_and_noise_level_spectra():
    rng = np.random.default_rng(BENCHMARK_SEED_BASE + 31)
    wl = np.linspace(400, 2500, 100)
    lib = synthetic_spectra(30, wl, rng)
    truth = [2, 9, 20]
    sc = make_scene(40, 40, 3, 30.0, seed=BENCHMARK_SEED_BASE + 32, endmembers=lib[:, truth], wavelengths_nm=wl)
    res = select_endmembers(sc.Y.reshape(100, -1), lib, n_sample=800)
    assert sorted(res.indices.tolist()) == truth and res.flags == []
    assert res.noise_sigma == pytest.approx(sc.noise_sigma, rel=0.1)
    assert res.as_dict()["flags"] == []
    from urdm_plugin.core.methods import selection as sel

    # a look-alike of a true material, forced in: flagged near-collinear
    flags = sel._plausibility(sc.Y.reshape(100, -1)[:, :400],
                              np.column_stack([lib[:, truth], lib[:, 2] * 1.01 + 0.001]),
                              [0, 1, 2, 3], ["a", "b", "c", "a2"], sc.noise_sigma ** 2)
    assert any("near-collinear with a" in f for f in flags)
    assert any("a2" in f and "noise level" in f for f in flags)


def test_selection_reports_progress_and_cancels():
    from urdm_plugin.core.errors import Cancelled

    rng = np.random.default_rng(5)
    lib = synthetic_spectra(20, np.linspace(400, 2500, 60), rng)
    Y = lib[:, :3] @ rng.dirichlet(np.ones(3), 300).T + 0.002 * rng.standard_normal((60, 300))
    seen = []
    select_endmembers(Y, lib, progress=lambda f, m: seen.append(f))
    assert len(seen) >= 3 and all(0 <= f <= 1 for f in seen)
    with pytest.raises(Cancelled):
        select_endmembers(Y, lib, cancel=lambda: True)


def test_jasper_selection_from_usgs_keeps_few_and_vegetation(shared_data):
    import time

    from urdm_plugin.core.bands import match_library
    from urdm_plugin.core.io.image import open_image, sample_pixels
    from urdm_plugin.core.io.library import read_library

    info = open_image(shared_data / "jasper_ridge" / "jasper_ridge.tif")
    m = match_library(info, read_library(shared_data / "usgs_1995" / "usgs_1995.csv"))
    Y = sample_pixels(info, [int(b) for b in m.band_indices], n=10000, seed=0).astype(float)
    t = time.perf_counter()
    res = select_endmembers(Y, m.E, m.names, n_sample=2000)
    assert time.perf_counter() - t < 30
    assert 1 <= len(res) <= 8, res.report
    assert any(v in n for n in res.names for v in ("Grass", "Leaf", "Leaves", "brush", "Spruce", "Pine"))
    assert res.noise_sigma is not None and "noise σ" in res.report
    assert isinstance(res.flags, list)
