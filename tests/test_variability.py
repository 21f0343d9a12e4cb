"""Endmember variability (issue #21): ELMM, URDM's scaling data term and its automatic use."""

from __future__ import annotations

import json

import numpy as np
import pytest

from urdm_plugin.core.engine.arrays import unmix_array_full
from urdm_plugin.core.methods import elmm
from urdm_plugin.core.methods.active_set import fcls, nnls, nnls_gram
from urdm_plugin.core.metrics import abundance_rmse
from urdm_plugin.core.synthetic import gaussian_field, make_scene


def _varied(seed: int, snr_db: float, size: int = 40, spread: float = 0.2):
    """A synthetic scene whose endmembers are scaled per pixel by smooth factors in
    [1 − spread, 1 + spread] (library unchanged): (Y (B, h, w), E (B, P), A (P, h, w))."""
    sc = make_scene(height=size, width=size, n_endmembers=3, snr_db=np.inf, seed=seed, n_bands=80)
    rng = np.random.default_rng(seed + 1)
    f = 1.0 + spread * np.tanh(gaussian_field(3, size, size, 10.0, rng) / 1.5)
    clean = np.einsum("bp,phw->bhw", sc.E, sc.A * f)
    sigma = np.sqrt(np.mean(clean ** 2) / 10 ** (snr_db / 10)) if np.isfinite(snr_db) else 0.0
    return clean + sigma * rng.standard_normal(clean.shape), sc.E, sc.A


def test_nnls_gram_is_nnls():
    sc = make_scene(height=8, width=8, n_endmembers=4, snr_db=25, seed=1_000_900, n_bands=40)
    Y = sc.Y.reshape(40, -1) * 1.3
    assert np.allclose(nnls_gram(sc.E.T @ sc.E, sc.E.T @ Y), nnls(Y, sc.E), atol=1e-12)


def test_elmm_without_variability_is_fcls():
    """Where every scaling is 1 (no variability, no noise), ELMM returns FCLS's maps — the
    truth here — and ψ = 1: the scaling model only departs from FCLS where the data ask."""
    Y, E, A = _varied(1_000_901, np.inf, spread=0.0)
    a, psi, _b = elmm.elmm_unmix(Y, E)
    A_fcls = fcls(Y.reshape(Y.shape[0], -1), E).reshape(A.shape)
    assert np.abs(a - A_fcls).max() < 1e-6
    assert np.abs(a - A).max() < 1e-6
    assert np.abs(psi - 1.0).max() < 1e-6


def test_elmm_recovers_brightness_variability():
    """Noise-free scaled endmembers: FCLS's error is the model's; ELMM removes most of it,
    its fractions sum to one and its scalings follow the true factors' range."""
    Y, E, A = _varied(1_000_902, np.inf)
    a, psi, _b = elmm.elmm_unmix(Y, E)
    r_fcls = abundance_rmse(fcls(Y.reshape(Y.shape[0], -1), E).reshape(A.shape), A)
    assert abundance_rmse(a, A) < 0.5 * r_fcls
    assert np.allclose(a.sum(axis=0), 1.0) and a.min() >= 0
    assert 0.7 < np.percentile(psi, 5) and np.percentile(psi, 95) < 1.3


def test_variability_test_tells_noise_from_variability():
    from urdm_plugin.core.methods.noise import estimate_noise_sigma

    for spread, expected in ((0.0, False), (0.2, True)):
        Y, E, _A = _varied(1_000_903, 30.0, spread=spread)
        valid = np.ones(Y.shape[1:], bool)
        got = elmm.variability_test(Y, E, valid, estimate_noise_sigma(Y, E, valid=valid))
        assert got["use"] is expected, got


def test_elmm_method_reports_scaling_maps():
    Y, E, A = _varied(1_000_904, 35.0)
    A_hat, std, info = unmix_array_full(Y, E, "elmm")
    assert std is None and info["scaling"].shape == A.shape
    assert abundance_rmse(A_hat, A) < abundance_rmse(unmix_array_full(Y, E, "fcls")[0], A)


@pytest.mark.slow
def test_urdm_under_variability_beats_fcls_and_tv():
    pytest.importorskip("torch")
    errs = {}
    for m in ("fcls", "tv", "urdm"):
        e = []
        for seed in (1_000_905, 1_000_906):
            Y, E, A = _varied(seed, 30.0)
            A_hat, _s, info = unmix_array_full(Y, E, m, **({"quality": "fast"} if m == "urdm" else {}))
            e.append(abundance_rmse(A_hat, A))
            if m == "urdm":
                assert info["variability_decision"]["model"] == "scaling"
                assert info["scaling"].shape == A.shape
        errs[m] = np.mean(e)
    assert errs["urdm"] < 0.8 * errs["fcls"], errs
    assert errs["urdm"] < 0.8 * errs["tv"], errs


@pytest.mark.slow
def test_urdm_on_white_noise_is_not_made_worse_by_the_variability_model():
    pytest.importorskip("torch")
    sc = make_scene(height=40, width=40, n_endmembers=3, snr_db=25, seed=1_000_907, n_bands=80)
    auto, _s, info = unmix_array_full(sc.Y, sc.E, "urdm", quality="fast")
    plain, _s, _i = unmix_array_full(sc.Y, sc.E, "urdm", quality="fast", variability="none")
    assert info["variability_decision"]["model"] == "none"
    assert abundance_rmse(auto, sc.A) <= 1.01 * abundance_rmse(plain, sc.A)


def test_cli_elmm_writes_styled_scaling_layers(tmp_path):
    from tests.test_cli import NAMES, _scene, run_cli

    tif, csv, _sc = _scene(tmp_path)
    out = tmp_path / "run"
    r = run_cli("unmix", tif, csv, out, "--method", "elmm")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "run.json").read_text())
    files = [d["file"] for d in manifest["extra_files"]["scaling"]]
    assert files == [f"scaling_{n}.tif" for n in NAMES]
    for f in files:
        assert (out / f).is_file()


@pytest.mark.slow
def test_cli_urdm_writes_scaling_layers_only_where_it_found_variability(tmp_path):
    pytest.importorskip("torch")
    from tests.test_cli import _scene, run_cli

    tif, csv, _sc = _scene(tmp_path)  # no variability: white noise only
    out = tmp_path / "run"
    r = run_cli("unmix", tif, csv, out, "--method", "urdm", "--quality", "fast", "--lam", "0.3")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["parameters"]["variability_decision"]["model"] == "none"
    assert "scaling" not in manifest["extra_files"]
    assert not list(out.glob("scaling_*.tif"))
