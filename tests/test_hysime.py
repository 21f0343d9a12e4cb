"""HySime: number of endmembers and noise level (core.methods.hysime)."""

from __future__ import annotations

import numpy as np
import pytest

from urdm_plugin.core.errors import OptionError
from urdm_plugin.core.methods.hysime import estimate_noise, hysime
from urdm_plugin.core.synthetic import BENCHMARK_SEED_BASE, make_scene


def _clean_power(sc) -> np.ndarray:
    """Signal power along the clean data's eigenvectors, in units of the noise variance."""
    C = sc.clean.reshape(sc.clean.shape[0], -1)
    return np.linalg.eigvalsh(C @ C.T / C.shape[1])[::-1] / sc.noise_sigma ** 2


@pytest.mark.parametrize("P", list(range(3, 11)))
def test_hysime_finds_the_number_of_endmembers_at_30db(P):
    exact = 0
    for s in range(4):
        sc = make_scene(64, 64, P, 30.0, seed=BENCHMARK_SEED_BASE + 100 * P + s)
        lam = _clean_power(sc)
        res = hysime(sc.Y)
        assert abs(res.sigma / sc.noise_sigma - 1) < 0.05  # noise estimate within 5 %
        if lam[P - 1] > 1.5:  # every endmember direction carries more power than the noise
            assert res.n_endmembers == P, (s, res.report)
            exact += 1
        elif lam[P - 1] < 0.7:
            # by design of HySime's MSE criterion a direction weaker than the noise is dropped:
            # the estimate is then the number of directions above the noise, no more
            assert res.n_endmembers == int((lam > 1).sum()) < P, (s, res.report)
    assert exact >= 1  # each P has scenes where it is exactly identifiable (and found)


def test_weak_direction_explains_an_underestimate():
    # 9 smooth spectra at 30 dB whose 9th signal direction holds 0.08 σ²: HySime says 8
    sc = make_scene(64, 64, 9, 30.0, seed=BENCHMARK_SEED_BASE + 902)
    assert _clean_power(sc)[8] < 0.2
    assert hysime(sc.Y).n_endmembers == 8


def test_noise_estimate_per_band_and_deterministic():
    sc = make_scene(60, 60, 5, 30.0, seed=BENCHMARK_SEED_BASE + 11, n_bands=120)
    Y = sc.Y.reshape(120, -1)
    noise, Rn = estimate_noise(Y)
    assert noise.shape == Y.shape and Rn.shape == (120, 120)
    true = Y - sc.clean.reshape(120, -1)
    assert np.corrcoef(noise.ravel(), true.ravel())[0, 1] > 0.95
    np.testing.assert_allclose(np.sqrt(np.diag(Rn)), sc.noise_sigma, rtol=0.12)
    a, b = hysime(Y), hysime(Y)
    assert a.n_endmembers == b.n_endmembers == 5 and np.array_equal(a.noise_sigma, b.noise_sigma)
    assert a.noise_sigma.shape == (120,) and a.eigenvectors.shape == (120, 120)
    assert "5 endmembers" in a.report and "noise σ" in a.report
    assert a.as_dict()["n_endmembers"] == 5


def test_band_dependent_noise_is_followed():
    rng = np.random.default_rng(3)
    sc = make_scene(64, 64, 4, float("inf"), seed=BENCHMARK_SEED_BASE + 12, n_bands=100)
    sig = np.linspace(0.002, 0.02, 100)
    Y = sc.clean.reshape(100, -1) + sig[:, None] * rng.standard_normal((100, 64 * 64))
    res = hysime(Y)
    np.testing.assert_allclose(res.noise_sigma, sig, rtol=0.2)
    assert np.median(np.abs(res.noise_sigma / sig - 1)) < 0.05
    assert res.n_endmembers == 4


def test_too_few_pixels_is_refused():
    with pytest.raises(OptionError, match="more valid pixels"):
        hysime(np.random.default_rng(0).random((50, 20)))


def test_jasper_ridge_estimate(shared_data):
    from urdm_plugin.core.bands import usable_image_bands
    from urdm_plugin.core.io.image import open_image, sample_pixels

    info = open_image(shared_data / "jasper_ridge" / "jasper_ridge.tif")
    keep, _ = usable_image_bands(info, True)
    Y = sample_pixels(info, [int(b) for b in np.flatnonzero(keep)], n=200000, seed=0).astype(float)
    res = hysime(Y)
    assert 4 <= res.n_endmembers <= 20  # 4 reference materials plus their variability
    assert 0.001 < res.sigma < 0.01  # reflectance
