"""Weights chosen from the scene alone (SURE): the estimate, the choice, the no-prior limit."""

from __future__ import annotations

import numpy as np
import pytest

from urdm_plugin.core import synthetic
from urdm_plugin.core.methods import noise, tv
from urdm_plugin.core.methods import weight_selection as ws
from urdm_plugin.core.methods.active_set import fcls


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


@pytest.fixture(scope="module")
def scene():
    return synthetic.make_scene(48, 48, 4, 22.0, seed=synthetic.BENCHMARK_SEED_BASE + 4242,
                                n_bands=80, kind="regions")


def _fcls(Y, E):
    B = Y.shape[0]
    return fcls(Y.reshape(B, -1), E).reshape(E.shape[1], *Y.shape[1:])


def _tv(Y, E, lam):
    return tv.tv_unmix(Y, E, lam=lam, max_iter=80, tol=0.0)[0]


def test_sure_choice_is_close_to_the_truth_tuned_weight(scene):
    """With the true noise level, the weight SURE prefers costs at most 10 % more MSE than the
    truth-tuned one, and SURE sees which weights beat FCLS. (SURE values share a
    noise-dependent offset; only their differences matter for the choice.)"""
    valid = np.ones(scene.Y.shape[1:], bool)
    sb = np.full(scene.Y.shape[0], scene.noise_sigma)
    probe = ws.make_probe(scene.Y, scene.E, valid, sb, seed=3)
    true, est = {}, {}
    for lam in (0.0, 1e-3, 4e-3, 1e-2, 2e-2, 1e-1):
        f = (lambda Y, lam=lam: _fcls(Y, scene.E)) if lam == 0 else (lambda Y, lam=lam: _tv(Y, scene.E, lam))
        A = f(scene.Y)
        est[lam] = ws.sure_value(A, f(scene.Y + probe.eps * probe.n), probe)
        true[lam] = rmse(A, scene.A) ** 2
    assert true[min(est, key=est.get)] <= 1.1 * min(true.values())
    for lam in est:
        if abs(true[lam] - true[0.0]) > 0.2 * true[0.0]:
            assert np.sign(est[lam] - est[0.0]) == np.sign(true[lam] - true[0.0])


def test_band_noise_is_estimated_per_band(scene):
    rng = np.random.default_rng(0)
    prof = np.linspace(1.0, 5.0, scene.E.shape[0])
    Y = scene.clean + 0.004 * prof[:, None, None] * rng.standard_normal(scene.clean.shape)
    sb = noise.estimate_band_sigma(Y, scene.E)
    assert sb.shape == (scene.E.shape[0],)
    np.testing.assert_allclose(sb / (0.004 * prof), 1.0, atol=0.2)


def test_noise_free_mixtures_keep_the_no_prior_limit(scene):
    """Nothing to remove: the choice is weight 0 and the result is FCLS itself."""
    A, info = tv.tv_unmix(scene.clean, scene.E)
    assert info["lam"] == 0.0 and info["lambda_selection"]["chosen"] == 0.0
    np.testing.assert_allclose(A, _fcls(scene.clean, scene.E), atol=1e-9)


def test_selection_reports_every_candidate_and_refines_around_the_best(scene):
    calls = []

    def solve(Y, w):
        calls.append(w)
        return _fcls(Y, scene.E) if w == 0 else _tv(Y, scene.E, w)

    probe = ws.make_probe(scene.Y, scene.E, np.ones((48, 48), bool), np.full(80, scene.noise_sigma))
    sel = ws.select_weight(solve, scene.Y, probe, [1e-3, 1e-2, 1e-1])
    tried = sorted(sel.table)
    assert tried[0] == 0.0 and {1e-3, 1e-2, 1e-1} <= set(tried)
    assert len(tried) == 6  # 0, the grid, two neighbours of the best
    assert sel.weight == min(sel.table, key=sel.table.get)
    assert len(calls) == 2 * len(tried)  # each weight: one run and one probe run
    rep = sel.report()
    assert rep["chosen"] == sel.weight and len(rep["candidates"]) == 6


def test_scene_weight_is_chosen_once_for_tiles(scene):
    from urdm_plugin.core.engine.arrays import unmix_array_full

    A, _, info = unmix_array_full(scene.Y, scene.E, "tv", tile_size=32, max_iter=60)
    assert info["tiles"] > 1
    assert len(set(info["lam_per_tile"])) == 1
    assert info["lambda_selection"]["chosen"] == pytest.approx(info["lam_per_tile"][0], abs=1e-11)
    assert rmse(A, scene.A) < rmse(_fcls(scene.Y, scene.E), scene.A)


def test_urdm_declines_a_prior_that_cannot_help():
    """Spatially white abundances (every pixel drawn independently): a spatial prior has
    nothing to offer, and the chosen weight keeps URDM at FCLS's error (within 1 %)."""
    pytest.importorskip("torch")
    from urdm_plugin.core.diffusion import sampler as urdm

    rng = np.random.default_rng(0)
    P, h, w = 4, 40, 40
    A = rng.dirichlet(np.full(P, 0.7), size=h * w).T.reshape(P, h, w)
    E = synthetic.synthetic_spectra(P, np.linspace(400, 2500, 80), rng)
    Y, _ = synthetic.add_noise(np.einsum("bp,phw->bhw", E, A), 25.0, rng)
    Au, _, info = urdm.urdm_unmix(Y, E, quality="fast")
    assert rmse(Au, A) <= 1.01 * rmse(_fcls(Y, E), A)
    assert info["lam"] <= 0.1


def test_band_weights_only_where_the_noise_is_band_dependent(scene):
    """White noise keeps the plain fit (so URDM's no-prior limit stays FCLS); noise that
    varies ×5 across bands gets the noise-weighted fit, which SURE confirms is better."""
    valid = np.ones(scene.Y.shape[1:], bool)
    sb = noise.estimate_band_sigma(scene.Y, scene.E)
    d, rep = ws.choose_band_weights(scene.Y, scene.E, valid, sb)
    assert d is None and rep["weighted"] is False
    rng = np.random.default_rng(1)
    prof = 5.0 ** np.linspace(-1, 1, scene.E.shape[0]) ** 2
    Y = scene.clean + 0.01 * prof[:, None, None] * rng.standard_normal(scene.clean.shape)
    d, rep = ws.choose_band_weights(Y, scene.E, valid, noise.estimate_band_sigma(Y, scene.E))
    assert rep["weighted"] is True and rep["sure_mse_weighted_fcls"] < rep["sure_mse_fcls"]
    B = Y.shape[0]
    plain = fcls(Y.reshape(B, -1), scene.E)
    weighted = fcls(Y.reshape(B, -1) / d[:, None], scene.E / d[:, None])
    truth = scene.A.reshape(scene.E.shape[1], -1)
    assert rmse(weighted, truth) < rmse(plain, truth)


def test_the_choice_reports_each_candidate_as_a_step_with_its_count(scene):
    """Each candidate is two full runs of the method (minutes for URDM): the bar moves one
    step per candidate and the text says which of how many runs now (issue #24)."""
    seen = []
    probe = ws.make_probe(scene.Y, scene.E, np.ones((48, 48), bool), np.full(80, scene.noise_sigma))
    ws.select_weight(lambda Y, w: _fcls(Y, scene.E) if w == 0 else _tv(Y, scene.E, w), scene.Y, probe,
                     [1e-3, 1e-2, 1e-1], progress=lambda f, m: seen.append((f, m)))
    assert [m for _f, m in seen[:6]] == [f"choosing the weight: {k} of 6 candidates" for k in range(1, 7)]
    assert [f for f, _m in seen[:6]] == pytest.approx([k / 6 for k in range(6)])
    assert seen[-1][0] == 1.0 and seen[-1][1].startswith("choosing the weight: 6 candidates tried, λ = ")


def test_a_tiled_run_shows_the_scene_weight_choice_on_the_bar_before_the_tiles(scene):
    from urdm_plugin.core.engine.arrays import unmix_array_full

    seen = []
    unmix_array_full(scene.Y, scene.E, "tv", tile_size=32, max_iter=40, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _m in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)  # never backwards
    choice = [f for f, m in seen if m.startswith("choosing the weight: ")]
    assert len(choice) >= 6 and 0.0 < max(choice) < 1.0  # the choice's own part of the bar
    assert [m for _f, m in seen if "of 6 candidates" in m][-1] == "choosing the weight: 6 of 6 candidates"
