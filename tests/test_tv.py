"""TV-regularised ADMM baseline and the noise estimate (core.methods.tv, core.methods.noise)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import dctn, idctn

from urdm_plugin.core.errors import Cancelled, OptionError
from urdm_plugin.core.methods import tv
from urdm_plugin.core.methods.active_set import fcls
from urdm_plugin.core.methods.noise import estimate_noise_sigma
from urdm_plugin.core.metrics import abundance_rmse
from urdm_plugin.core.synthetic import BENCHMARK_SEED_BASE, make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene(48, 48, 4, 20.0, seed=BENCHMARK_SEED_BASE + 77, kind="regions", n_bands=60)


def _fcls_map(sc):
    B = sc.Y.shape[0]
    return fcls(sc.Y.reshape(B, -1), sc.E).reshape(sc.A.shape)


def test_neumann_laplacian_is_diagonal_in_dct():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 7, 9))
    lap = tv._dxT(tv._dx(A), A.shape) + tv._dyT(tv._dy(A), A.shape)
    via_dct = idctn(dctn(A, type=2, axes=(1, 2), norm="ortho") * tv._laplacian_eigs(7, 9),
                    type=2, axes=(1, 2), norm="ortho")
    np.testing.assert_allclose(lap, via_dct, atol=1e-12)


def test_tv_is_feasible_and_beats_fcls_with_auto_weight(scene):
    A, info = tv.tv_unmix(scene.Y, scene.E, None, lam="auto")
    assert info["lam_auto"] and info["lam"] > 0 and info["iterations"] > 0
    assert A.min() >= 0
    np.testing.assert_allclose(A.sum(0), 1.0, atol=1e-9)
    assert abundance_rmse(A, scene.A) < 0.8 * abundance_rmse(_fcls_map(scene), scene.A)


def test_tv_zero_weight_is_fcls_and_weight_smooths(scene):
    A0, _ = tv.tv_unmix(scene.Y, scene.E, lam=0.0)
    np.testing.assert_allclose(A0, _fcls_map(scene), atol=1e-12)
    A1, _ = tv.tv_unmix(scene.Y, scene.E, lam=0.05, max_iter=100)
    tv0 = np.abs(tv._dx(A0)).sum() + np.abs(tv._dy(A0)).sum()
    tv1 = np.abs(tv._dx(A1)).sum() + np.abs(tv._dy(A1)).sum()
    assert tv1 < 0.5 * tv0


def test_invalid_pixels_do_not_pull_on_valid_ones(scene):
    valid = np.ones(scene.A.shape[1:], bool)
    valid[10:20, 10:20] = False
    Y = scene.Y.copy()
    Y[:, ~valid] = 50.0  # garbage where nodata
    A, _ = tv.tv_unmix(Y, scene.E, valid, lam=0.01, max_iter=150)
    assert np.isnan(A[:, ~valid]).all()
    Yc = scene.Y.copy()
    Yc[:, ~valid] = 0.0  # different garbage: same answer on valid pixels
    A2, _ = tv.tv_unmix(Yc, scene.E, valid, lam=0.01, max_iter=150)
    np.testing.assert_allclose(A[:, valid], A2[:, valid], atol=1e-10)
    assert A[:, valid].min() >= 0
    np.testing.assert_allclose(A[:, valid].sum(0), 1.0, atol=1e-9)


def test_cancel_and_bad_weight(scene):
    with pytest.raises(Cancelled):
        tv.tv_unmix(scene.Y, scene.E, lam=0.01, cancel=lambda: True)
    with pytest.raises(OptionError):
        tv.tv_unmix(scene.Y, scene.E, lam=-1.0)
    seen = []
    tv.tv_unmix(scene.Y, scene.E, lam=0.01, max_iter=20, progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)


@pytest.mark.parametrize("snr", [20.0, 35.0])
def test_noise_sigma_estimates(snr):
    sc = make_scene(40, 40, 5, snr, seed=BENCHMARK_SEED_BASE + 5, kind="mixed", n_bands=80)
    for est in (estimate_noise_sigma(sc.Y, sc.E),                        # spatial MAD
                estimate_noise_sigma(sc.Y.reshape(80, -1), sc.E),        # residual dof
                estimate_noise_sigma(sc.Y)):                             # HySime regression
        assert abs(est / sc.noise_sigma - 1) < 0.15
