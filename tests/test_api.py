"""core.engine.arrays.unmix_array: shapes, dtypes, constraints, options, progress and cancel."""

from __future__ import annotations

import numpy as np
import pytest

from urdm_plugin.core.engine.arrays import unmix_array
from urdm_plugin.core.errors import Cancelled, OptionError
from urdm_plugin.core.synthetic import make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene(height=12, width=10, n_endmembers=3, snr_db=float("inf"), seed=1_000_123,
                      n_bands=40)


def test_cube_in_cube_out_float32_and_exact_on_noiseless_data(scene):
    A = unmix_array(scene.Y, scene.E, method="fcls")
    assert A.shape == (3, 12, 10) and A.dtype == np.float32
    np.testing.assert_allclose(A, scene.A, atol=1e-4)


def test_pixels_in_pixels_out(scene):
    Y2 = scene.Y.reshape(scene.Y.shape[0], -1)
    A = unmix_array(Y2, scene.E, method="fcls")
    assert A.shape == (3, 120) and A.dtype == np.float32
    np.testing.assert_allclose(A.reshape(3, 12, 10), unmix_array(scene.Y, scene.E), atol=1e-6)


@pytest.mark.parametrize("method", ["fcls", "scls", "nnls", "ucls"])
def test_constraints_of_each_per_pixel_method(method):
    noisy = make_scene(height=8, width=8, n_endmembers=3, snr_db=15, seed=1_000_124, n_bands=30)
    A = unmix_array(noisy.Y, noisy.E, method=method).reshape(3, -1)
    if method in ("fcls", "nnls"):
        assert A.min() >= -1e-7
    if method in ("fcls", "scls"):
        np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-5)
    if method == "ucls":  # unconstrained at 15 dB: some pixel leaves the simplex
        assert A.min() < 0 or np.abs(A.sum(axis=0) - 1).max() > 1e-3


def test_invalid_pixels_come_back_nan_and_do_not_disturb_others(scene):
    Y = scene.Y.copy()
    Y[:, 0, 0] = np.nan
    valid = np.ones((12, 10), bool)
    valid[5, 5] = False
    A = unmix_array(Y, scene.E, valid=valid)
    assert np.isnan(A[:, 0, 0]).all() and np.isnan(A[:, 5, 5]).all()
    ok = np.isfinite(A[0])
    assert ok.sum() == 118
    np.testing.assert_allclose(A[:, ok], scene.A[:, ok], atol=1e-4)


def test_progress_reaches_one_and_cancel_stops(scene):
    seen = []
    unmix_array(scene.Y, scene.E, progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == pytest.approx(1.0) and all(0 <= f <= 1 for f in seen)
    with pytest.raises(Cancelled):
        unmix_array(scene.Y, scene.E, cancel=lambda: True)


@pytest.mark.parametrize("kwargs, words", [
    ({"method": "nope"}, "Unknown unmixing method"),
    ({"method": "fcls", "bogus": 1}, "Unknown option"),
    ({"method": "tv", "_2d": True}, "spatial"),
])
def test_bad_options_raise_option_error_naming_the_problem(scene, kwargs, words):
    kwargs = dict(kwargs)
    Y = scene.Y.reshape(scene.Y.shape[0], -1) if kwargs.pop("_2d", False) else scene.Y
    with pytest.raises(OptionError, match=words):
        unmix_array(Y, scene.E, **kwargs)


def test_band_mismatch_and_too_few_bands(scene):
    with pytest.raises(OptionError, match="bands"):
        unmix_array(scene.Y[:-1], scene.E)
    with pytest.raises(OptionError, match="at least 4 bands"):
        unmix_array(scene.Y[:3], scene.E[:3])
