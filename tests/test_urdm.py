"""URDM: schedule arithmetic, the splitting's building blocks, determinism, tiling, real data."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from urdm_plugin.core import synthetic  # noqa: E402
from urdm_plugin.core.diffusion import sampler as urdm  # noqa: E402
from urdm_plugin.core.diffusion import schedule  # noqa: E402
from urdm_plugin.core.diffusion.sampler import SamplerSettings  # noqa: E402
from urdm_plugin.core.engine.tiling import TileBlender, plan_tiles  # noqa: E402
from urdm_plugin.core.errors import Cancelled, MethodUnavailableError, OptionError  # noqa: E402
from urdm_plugin.core.methods.active_set import fcls, fcls_gram  # noqa: E402
from urdm_plugin.core.methods.context import SceneContext  # noqa: E402
from urdm_plugin.core.methods.linear import project_simplex  # noqa: E402

NFE4 = SamplerSettings(nfe=4)  # a short schedule: the tests check properties, not accuracy


def rmse(a, b):
    return float(np.sqrt(np.nanmean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


# ----------------------------------------------------------------------------- schedule
def test_schedule_matches_ddpm_definition():
    b = schedule.betas()
    assert b.shape == (1000,) and b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    ab = schedule.alphas_cumprod()
    assert np.all(np.diff(ab) < 0)
    assert ab[0] == pytest.approx(1 - 1e-4)
    # ᾱ_t = ∏(1−β_s): check one value by direct product
    assert ab[249] == pytest.approx(np.prod(1 - b[:250]))
    assert schedule.sigma_bar(ab[249]) == pytest.approx(np.sqrt(1 - ab[249]) / np.sqrt(ab[249]))


@pytest.mark.parametrize("t_start,n", [(200, 10), (250, 20), (300, 40), (50, 50), (999, 3)])
def test_sampling_timesteps_descend_from_t_start(t_start, n):
    ts = schedule.sampling_timesteps(t_start, n)
    assert ts[0] == t_start
    assert np.all(np.diff(ts) < 0), "strictly descending, no duplicates"
    assert ts[-1] >= 0 and len(ts) <= n
    assert len(ts) == n or t_start < 2 * n  # only very short ranges lose duplicate steps


# ----------------------------------------------------------------------------- building blocks
def test_data_step_is_the_exact_constrained_minimiser_of_data_plus_prior_term():
    """fcls_gram(EᵀE + ρI, Eᵀy + ρz) = argmin_{a∈Δ} ½‖y − Ea‖² + ρ/2‖a − z‖² (URDM's data step)."""
    rng = np.random.default_rng(0)
    B, P, N = 30, 5, 200
    E = rng.uniform(0.05, 0.9, (B, P))
    Y = rng.uniform(0, 1, (B, N))
    Z = rng.uniform(-0.2, 1, (P, N))
    rho = 0.7
    A = fcls_gram(E.T @ E + rho * np.eye(P), E.T @ Y + rho * Z)
    # the same problem as plain FCLS on the augmented system [E; √ρ I] a ≈ [y; √ρ z]
    A_aug = fcls(np.vstack([Y, np.sqrt(rho) * Z]), np.vstack([E, np.sqrt(rho) * np.eye(P)]))
    np.testing.assert_allclose(A, A_aug, atol=1e-10)
    assert A.min() >= -1e-12 and np.allclose(A.sum(axis=0), 1.0)
    # and no feasible point does better (random feasible perturbations)
    f = lambda a: 0.5 * np.sum((Y - E @ a) ** 2, axis=0) + 0.5 * rho * np.sum((a - Z) ** 2, axis=0)  # noqa: E731
    for _ in range(20):
        trial = project_simplex(A + 0.05 * rng.standard_normal(A.shape))
        assert np.all(f(trial) >= f(A) - 1e-10)


def test_coordinate_noise_is_standard_normal_and_keyed_to_global_position():
    full = urdm.coordinate_noise(7, 3, 2, 3, 0, 0, 40, 50)
    assert full.shape == (2, 3, 40, 50)
    assert abs(full.mean()) < 0.05 and abs(full.std() - 1) < 0.05
    crop = urdm.coordinate_noise(7, 3, 2, 3, 10, 20, 15, 25)
    np.testing.assert_array_equal(crop, full[:, :, 10:25, 20:45])
    assert not np.allclose(urdm.coordinate_noise(8, 3, 2, 3, 0, 0, 40, 50), full)
    assert not np.allclose(urdm.coordinate_noise(7, 4, 2, 3, 0, 0, 40, 50), full)
    # chains and maps get independent noise
    assert abs(np.corrcoef(full[0, 0].ravel(), full[1, 0].ravel())[0, 1]) < 0.1
    assert abs(np.corrcoef(full[0, 0].ravel(), full[0, 1].ravel())[0, 1]) < 0.1


# ----------------------------------------------------------------------------- the sampler
@pytest.fixture(scope="module")
def scene():
    return synthetic.make_scene(48, 48, 4, 25.0, seed=synthetic.BENCHMARK_SEED_BASE + 77)


def test_output_is_feasible_and_beats_fcls_on_a_noisy_synthetic_scene(scene):
    A, std, info = urdm.urdm_unmix(scene.Y, scene.E, quality="fast", ctx=SceneContext(seed=0))
    assert A.shape == (4, 48, 48) and A.dtype == np.float32 and std is None
    assert A.min() >= 0
    np.testing.assert_allclose(A.sum(0), 1, atol=1e-5)
    B = scene.Y.shape[0]
    A_f = fcls(scene.Y.reshape(B, -1), scene.E).reshape(A.shape)
    assert rmse(A, scene.A) < rmse(A_f, scene.A)
    assert info["lam"] > 0 and info["sigma_n"] > 0


def test_same_seed_same_result_and_sampling_noise_follows_the_seed(scene):
    a1, _, _ = urdm.urdm_unmix(scene.Y, scene.E, quality="fast", ctx=SceneContext(seed=5), settings=NFE4)
    a2, _, _ = urdm.urdm_unmix(scene.Y, scene.E, quality="fast", ctx=SceneContext(seed=5), settings=NFE4)
    np.testing.assert_array_equal(a1, a2)
    # with sampling noise (ζ > 0) another seed draws another chain
    s1, _, _ = urdm.urdm_unmix(scene.Y, scene.E, lam=0.3, zeta=1.0, ctx=SceneContext(seed=5), settings=NFE4)
    s2, _, _ = urdm.urdm_unmix(scene.Y, scene.E, lam=0.3, zeta=1.0, ctx=SceneContext(seed=6), settings=NFE4)
    assert not np.array_equal(s1, s2)


def test_the_callers_image_is_left_unchanged(scene):
    """URDM works on its own copy only where it must change the data (noise weighting,
    nodata filled): the array the caller passed is never written to."""
    Y = scene.Y.astype(np.float64)
    Y[:, 5, 7] = np.nan
    before = Y.copy()
    d = np.linspace(0.5, 2.0, Y.shape[0])
    A, _, _ = urdm.urdm_unmix(Y, scene.E, lam=0.3, quality="fast", ctx=SceneContext(band_weights=d),
                              settings=SamplerSettings(nfe=2))
    np.testing.assert_array_equal(Y, before)
    assert np.isnan(A[:, 5, 7]).all() and np.isfinite(A[:, 5, 8]).all()


def test_global_torch_random_state_is_left_alone(scene):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    urdm.urdm_unmix(scene.Y, scene.E, quality="fast", ctx=SceneContext(seed=1), settings=SamplerSettings(nfe=3))
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_tiles_blended_equal_the_untiled_result(scene):
    kw = dict(quality="fast", lam=0.2, settings=SamplerSettings(nfe=5))
    ctx = SceneContext(seed=2, sigma=scene.noise_sigma)
    full, _, _ = urdm.urdm_unmix(scene.Y, scene.E, ctx=ctx, **kw)
    tiles = plan_tiles(48, 48, 32, 8)
    assert len(tiles) > 1
    blender = TileBlender(4, 48, 48)
    for t in tiles:
        Yt = scene.Y[:, t.row0:t.row0 + t.height, t.col0:t.col0 + t.width]
        At, _, _ = urdm.urdm_unmix(Yt, scene.E, ctx=ctx.at(t.row0, t.col0), **kw)
        blender.add(t, At)
    tiled = blender.result()
    assert np.abs(tiled - full).max() < 0.02
    assert rmse(tiled, full) < 2e-3


def test_samples_give_a_feasible_mean_and_an_uncertainty_map(scene):
    A, std, info = urdm.urdm_unmix(scene.Y, scene.E, quality="fast", samples=3, ctx=SceneContext(seed=0), settings=NFE4)
    assert std is not None and std.shape == A.shape
    assert np.all(std >= 0) and std.max() > 0
    np.testing.assert_allclose(A.sum(0), 1, atol=1e-5)
    assert info["samples"] == 3


def test_nodata_pixels_stay_nan_and_do_not_disturb_the_rest(scene):
    valid = np.ones((48, 48), bool)
    valid[:5] = False
    Y = scene.Y.copy()
    Y[:, :5] = np.nan
    A, _, _ = urdm.urdm_unmix(Y, scene.E, valid=valid, quality="fast", settings=NFE4)
    assert np.isnan(A[:, :5]).all()
    assert np.isfinite(A[:, 5:]).all()
    np.testing.assert_allclose(A[:, 5:].sum(0), 1, atol=1e-5)


def test_cancel_and_progress(scene):
    seen = []
    A, _, _ = urdm.urdm_unmix(scene.Y, scene.E, quality="fast", settings=NFE4, progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == pytest.approx(1.0) and all(b >= a for a, b in zip(seen, seen[1:]))
    calls = []
    with pytest.raises(Cancelled):
        urdm.urdm_unmix(scene.Y, scene.E, quality="fast", settings=NFE4, cancel=lambda: calls.append(1) or len(calls) > 2)


@pytest.mark.parametrize("kw", [{"quality": "ultra"}, {"zeta": 1.5}, {"samples": 0}, {"device": "tpu"},
                                {"prior": "gan"}])
def test_bad_options_raise_clear_errors(scene, kw):
    with pytest.raises(OptionError):
        ctx = SceneContext(device=kw.pop("device", "auto"))
        settings = SamplerSettings(prior=kw.pop("prior", "ddpm"))
        urdm.urdm_unmix(scene.Y[:, :8, :8], scene.E, ctx=ctx, settings=settings, **kw)


def test_ablation_priors_run_and_stay_feasible(scene):
    for prior in ("none", "tv"):
        A, _, info = urdm.urdm_unmix(scene.Y, scene.E, lam=0.3, quality="fast",
                                     settings=SamplerSettings(nfe=4, prior=prior, tv_weight=0.02))
        assert info["prior"] == prior
        np.testing.assert_allclose(A.sum(0), 1, atol=1e-5)
        assert A.min() >= 0


# ----------------------------------------------------------------------------- weights
def test_shipped_weights_load_and_match_their_card():
    from urdm_plugin.core.diffusion.weights import (
        WEIGHTS_DIR,
        card_digest,
        load_prior,
        read_card,
        sha256_of,
    )

    card = read_card()
    assert card["digest"].startswith("sha256:")
    assert sha256_of(WEIGHTS_DIR / card["weights_file"]) == card_digest(card)
    model, card2 = load_prior()
    assert card2 == card
    assert sum(p.numel() for p in model.parameters()) == card["parameters"] < 5_000_000
    for key in ("recipe", "final_train_loss", "wall_seconds", "machine"):
        assert key in card
    assert card["recipe"]["seed"] == 0 and card["recipe"]["steps"] > 0


def test_tampered_weights_are_refused(tmp_path):
    import shutil

    from urdm_plugin.core.diffusion.weights import WEIGHTS_DIR, load_prior

    for f in WEIGHTS_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    w = tmp_path / "abundance_prior.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(MethodUnavailableError, match="do not match"):
        load_prior(tmp_path)


def test_a_card_of_the_older_form_still_loads(tmp_path):
    """Cards written before the ``digest`` key recorded the hash as a bare ``sha256``."""
    import json
    import shutil

    from urdm_plugin.core.diffusion.weights import WEIGHTS_DIR, load_prior

    for f in WEIGHTS_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    card = json.loads((tmp_path / "model_card.json").read_text())
    card["sha256"] = card.pop("digest").split(":", 1)[1]
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    model, loaded = load_prior(tmp_path)
    assert loaded["sha256"] == card["sha256"]


def test_training_smoke_resumes_and_exports(tmp_path):
    from urdm_plugin.core.diffusion import train
    from urdm_plugin.core.diffusion.weights import load_prior

    args = ["--steps", "4", "--batch", "4", "--size", "16", "--channels", "8", "--ckpt-every", "2",
            "--out", str(tmp_path / "ck"), "--quiet", "--device", "cpu"]
    r1 = train.train(train.build_parser().parse_args(args))
    assert r1["steps"] == 4 and np.isfinite(r1["train_loss"])
    r2 = train.train(train.build_parser().parse_args(
        [*args[:1], "6", *args[2:], "--export", str(tmp_path / "w")]))
    assert r2["steps"] == 6  # resumed from step 4, not restarted
    model, card = load_prior(tmp_path / "w")
    assert card["recipe"]["steps"] == 6 and card["architecture"]["base_channels"] == 8


# ----------------------------------------------------------------------------- real data
def _jasper(shared_data):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import scenes

    return scenes, scenes.load("jasper_ridge")


def test_splitting_without_prior_converges_to_fcls_on_jasper_ridge(shared_data):
    """No prior (Z = A) or λ = 0: the splitting is exactly its data model's solver — FCLS
    for plain linear mixing, ELMM with the scaling model (which Jasper Ridge's brightness
    variability switches on) — so any gain over those is the prior's."""
    from urdm_plugin.core.methods.elmm import elmm_unmix

    _scenes, s = _jasper(shared_data)
    B, H, W = s.Y.shape
    A_f = fcls(s.Y.reshape(B, -1), s.E).reshape(-1, H, W)
    A_none, _, _ = urdm.urdm_unmix(s.Y, s.E, lam=0.3, variability="none", settings=SamplerSettings(prior="none"))
    assert rmse(A_none, A_f) <= 1e-4
    A_zero, _, _ = urdm.urdm_unmix(s.Y, s.E, lam=0.0, variability="none")
    assert rmse(A_zero, A_f) <= 1e-4
    A_elmm = elmm_unmix(s.Y, s.E)[0]
    A_zero, _, info = urdm.urdm_unmix(s.Y, s.E, lam=0.0)
    assert info["variability_decision"]["model"] == "scaling"
    assert rmse(A_zero, A_elmm) <= 1e-6


def test_jasper_ridge_as_shipped_is_no_worse_than_fcls(shared_data):
    scenes, s = _jasper(shared_data)
    B, H, W = s.Y.shape
    A_f = fcls(s.Y.reshape(B, -1), s.E).reshape(-1, H, W)
    A, _, _ = urdm.urdm_unmix(s.Y, s.E, quality="fast", ctx=SceneContext(seed=0))
    assert rmse(A, s.A) <= 1.02 * rmse(A_f, s.A)


def test_semisynthetic_jasper_20db_auto_weight_beats_fcls_and_auto_tv(shared_data):
    """Real spatial structure with exact truth: the reference maps re-mixed, 20 dB white noise."""
    from urdm_plugin.core.methods.tv import tv_unmix

    scenes, s = _jasper(shared_data)
    Y, A_true = scenes.semisynthetic(s, 20.0, seed=1_010_007, kind="white")
    B, H, W = Y.shape
    A_f = fcls(Y.reshape(B, -1), s.E).reshape(-1, H, W)
    A_tv, tv_info = tv_unmix(Y, s.E)
    A, _, info = urdm.urdm_unmix(Y, s.E, quality="fast", ctx=SceneContext(seed=0))
    assert info["lambda_rule"].startswith("auto") and info["lam"] > 0
    assert tv_info["lam_auto"] and tv_info["lam"] > 0
    e_u, e_f, e_tv = rmse(A, A_true), rmse(A_f, A_true), rmse(A_tv, A_true)
    assert e_u < e_f and e_u < e_tv, (e_u, e_f, e_tv)
