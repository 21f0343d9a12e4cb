"""Exactness and constraints of the per-pixel solvers (core.methods.active_set)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls

from urdm_plugin.core.errors import OptionError
from urdm_plugin.core.methods.active_set import fcls, nnls
from urdm_plugin.core.methods.linear import project_simplex, scls, ucls

DELTA = 1e4


def _scene(rng, B=40, P=4, N=300, noise=0.02):
    E = rng.uniform(0.02, 0.9, (B, P))
    A = rng.dirichlet(np.full(P, 0.4), N).T
    Y = E @ A + noise * rng.standard_normal((B, N))
    Y[:, : N // 5] += rng.normal(0, 0.2, (B, 1))  # some pixels far off the simplex
    return Y, E


def _reference_fcls(Y, E):
    """Per-pixel scipy NNLS on the δ-augmented system [δ·1ᵀ; E] a ≈ [δ; y]."""
    P = E.shape[1]
    Ea = np.vstack([DELTA * np.ones((1, P)), E])
    return np.stack([scipy_nnls(Ea, np.r_[DELTA, y])[0] for y in Y.T], axis=1)


def _objective(Y, E, A):
    return 0.5 * np.sum((Y - E @ A) ** 2, axis=0)


def _assert_fcls_kkt(Y, E, A, tol=1e-7):
    """a ≥ 0, 1ᵀa = 1, and g_i − ν ≥ 0 with equality where a_i > 0 (g = Eᵀ(Ea − y))."""
    assert A.min() >= -1e-12
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-9)
    g = E.T @ (E @ A - Y)
    scale = np.abs(E.T @ E).max() + np.abs(E.T @ Y).max(axis=0)
    for k in range(Y.shape[1]):
        free = A[:, k] > 1e-9
        nu = g[free, k].mean()
        assert np.all(np.abs(g[free, k] - nu) <= tol * scale[k])
        assert np.all(g[~free, k] - nu >= -tol * scale[k])


@pytest.mark.parametrize("P", [2, 3, 4, 7, 10])
def test_fcls_matches_scipy_reference_and_kkt(P):
    rng = np.random.default_rng(P)
    Y, E = _scene(rng, P=P)
    A = fcls(Y, E)
    ref = _reference_fcls(Y, E)
    np.testing.assert_allclose(A, ref, atol=1e-4)
    # never worse than the reference (which only approximately satisfies sum-to-one)
    assert np.all(_objective(Y, E, A) <= _objective(Y, E, ref) + 1e-6)
    _assert_fcls_kkt(Y, E, A)


def test_fcls_is_optimal_against_random_feasible_points():
    rng = np.random.default_rng(1)
    Y, E = _scene(rng, P=5, N=50)
    A = fcls(Y, E)
    f = _objective(Y, E, A)
    for _ in range(200):
        Z = rng.dirichlet(np.ones(5), 50).T
        assert np.all(_objective(Y, E, Z) >= f - 1e-10)


def test_fcls_degenerate_cases():
    rng = np.random.default_rng(2)
    B = 30
    e = rng.uniform(0.1, 0.8, (B, 3))
    # P = 1: the only feasible answer is 1
    Y = rng.uniform(0, 1, (B, 20))
    np.testing.assert_allclose(fcls(Y, e[:, :1]), 1.0)
    # duplicate and collinear endmembers: feasible, optimal objective
    Ed = np.column_stack([e[:, 0], e[:, 1], e[:, 0], 2 * e[:, 1], e[:, 2]])
    Y = Ed[:, [0, 1, 4]] @ rng.dirichlet(np.ones(3), 100).T + 0.01 * rng.standard_normal((B, 100))
    A = fcls(Y, Ed)
    assert A.min() >= -1e-12
    np.testing.assert_allclose(A.sum(0), 1.0, atol=1e-9)
    ref = _reference_fcls(Y, Ed)
    assert np.all(_objective(Y, Ed, A) <= _objective(Y, Ed, ref) + 1e-6)
    # zero pixels and no pixels
    Z = fcls(np.zeros((B, 4)), e)
    np.testing.assert_allclose(Z.sum(0), 1.0)
    assert Z.min() >= 0
    assert fcls(np.zeros((B, 0)), e).shape == (3, 0)


def test_fcls_float32_input_and_nonfinite_pixels():
    rng = np.random.default_rng(3)
    Y, E = _scene(rng, P=4, N=100)
    Y32 = Y.astype(np.float32)
    Y32[:, 7] = np.nan
    A = fcls(Y32, E, chunk=16)  # several chunks
    assert np.isnan(A[:, 7]).all()
    keep = np.ones(100, bool)
    keep[7] = False
    np.testing.assert_allclose(A[:, keep], fcls(Y32[:, keep].astype(np.float64), E), atol=1e-12)


def test_nnls_matches_scipy():
    rng = np.random.default_rng(4)
    Y, E = _scene(rng, P=6, N=200)
    A = nnls(Y, E)
    ref = np.stack([scipy_nnls(E, y)[0] for y in Y.T], axis=1)
    assert A.min() >= 0
    np.testing.assert_allclose(A, ref, atol=1e-8)


def test_scls_sums_to_one_and_ucls_is_least_squares():
    rng = np.random.default_rng(5)
    Y, E = _scene(rng, P=4, N=50)
    S = scls(Y, E)
    np.testing.assert_allclose(S.sum(0), 1.0, atol=1e-10)
    U = ucls(Y, E)
    np.testing.assert_allclose(U, np.linalg.lstsq(E, Y, rcond=None)[0], atol=1e-10)
    # SCLS is the best sum-to-one solution: projecting the gradient on 1⊥ gives zero
    g = E.T @ (E @ S - Y)
    np.testing.assert_allclose(g - g.mean(0), 0, atol=1e-9 * np.abs(E.T @ Y).max())


def test_band_mismatch_is_a_user_error():
    with pytest.raises(OptionError, match="bands"):
        fcls(np.zeros((10, 5)), np.ones((12, 3)))


def test_project_simplex_feasible_and_optimal():
    rng = np.random.default_rng(6)
    X = rng.normal(0, 2, (6, 500))
    Pj = project_simplex(X)
    assert Pj.min() >= 0
    np.testing.assert_allclose(Pj.sum(0), 1.0, atol=1e-12)
    # optimality: the projection is FCLS with E = I (y = x), checked via KKT
    _assert_fcls_kkt(X, np.eye(6), Pj, tol=1e-10)
    # and no random simplex point is closer
    for _ in range(50):
        Z = rng.dirichlet(np.ones(6), 500).T
        assert np.all(np.sum((Z - X) ** 2, 0) >= np.sum((Pj - X) ** 2, 0) - 1e-12)
    # points already on the simplex stay put
    S = rng.dirichlet(np.ones(6), 20).T
    np.testing.assert_allclose(project_simplex(S), S, atol=1e-12)


@pytest.mark.parametrize("solver", [fcls, nnls])
def test_face_enumeration_agrees_with_active_set(solver, monkeypatch):
    """Small P is solved by testing every face; the active-set path must give the same."""
    from urdm_plugin.core.methods import active_set

    rng = np.random.default_rng(7)
    for P in (2, 3, 4, 5):
        Y, E = _scene(rng, P=P, N=400)
        A_enum = solver(Y, E)
        monkeypatch.setattr(active_set, "ENUM_MAX_P", 0)
        A_as = solver(Y, E)
        monkeypatch.undo()
        np.testing.assert_allclose(A_enum, A_as, atol=1e-10)


def test_fcls_wide_library_matches_scipy():
    """P beyond the look-up table of free sets (grouping by unique free sets instead)."""
    from urdm_plugin.core.methods import active_set

    rng = np.random.default_rng(8)
    P = active_set._FaceOperators.LUT_MAX_P + 3
    Y, E = _scene(rng, B=80, P=P, N=120)
    A = fcls(Y, E)
    np.testing.assert_allclose(A, _reference_fcls(Y, E), atol=1e-4)
    _assert_fcls_kkt(Y, E, A)
    ref = np.stack([scipy_nnls(E, y)[0] for y in Y.T], axis=1)
    np.testing.assert_allclose(nnls(Y, E), ref, atol=1e-8)


@pytest.mark.parametrize("solver", [fcls, nnls, scls, ucls])
def test_infinite_values_give_nan_pixels(solver):
    """±inf (also where an endmember is 0, and +inf with −inf) marks only that pixel."""
    rng = np.random.default_rng(9)
    Y, E = _scene(rng, B=30, P=4, N=40)
    E[5] = 0.0  # a band where every endmember is zero: 0·inf must still flag the pixel
    Y32 = Y.astype(np.float32)
    Y32[5, 3] = np.inf
    Y32[0, 11], Y32[1, 11] = np.inf, -np.inf
    Y32[2, 20] = -np.inf
    Y32[:, 30] = np.nan
    A = solver(Y32, E, chunk=16)
    bad = [3, 11, 20, 30]
    assert np.isnan(A[:, bad]).all()
    good = np.setdiff1d(np.arange(40), bad)
    assert np.isfinite(A[:, good]).all()
    np.testing.assert_allclose(A[:, good], solver(Y32[:, good].astype(np.float64), E), atol=1e-12)


@pytest.mark.parametrize("solver", [fcls, nnls])
def test_threaded_chunks_equal_serial(solver, monkeypatch):
    """Chunks solved on worker threads (shared, locked face operators) give the serial
    result: same chunks, same arithmetic."""
    from urdm_plugin.core.methods import active_set

    rng = np.random.default_rng(10)
    for P in (4, 8):
        Y, E = _scene(rng, P=P, N=3000)
        Y32 = Y.astype(np.float32)
        Y32[:, 5] = np.nan
        monkeypatch.setattr(active_set, "WORKERS", 1)
        A1 = solver(Y32, E, chunk=256)
        monkeypatch.setattr(active_set, "WORKERS", 2)
        monkeypatch.setattr(active_set, "PARALLEL_MIN_N", 0)
        A2 = solver(Y32, E, chunk=256)
        monkeypatch.undo()
        np.testing.assert_allclose(A2, A1, atol=1e-12)
        assert np.isnan(A2[:, 5]).all() and np.isfinite(np.delete(A2, 5, axis=1)).all()


@pytest.mark.parametrize("solver", [fcls, nnls])
def test_primal_dual_rounds_agree_with_active_set(solver, monkeypatch):
    """The primal-dual rounds only accept KKT points: the result equals the pure
    primal active-set result, and with a single round the active set finishes the rest."""
    from urdm_plugin.core.methods import active_set

    rng = np.random.default_rng(11)
    for P in (6, 10):
        Y, E = _scene(rng, P=P, N=500)
        A_pd = solver(Y, E)
        monkeypatch.setattr(active_set, "PDAS_ROUNDS", 0)
        A_as = solver(Y, E)
        monkeypatch.setattr(active_set, "PDAS_ROUNDS", 1)
        A_one = solver(Y, E)
        monkeypatch.undo()
        np.testing.assert_allclose(A_pd, A_as, atol=1e-10)
        np.testing.assert_allclose(A_one, A_as, atol=1e-10)
        if solver is fcls:
            _assert_fcls_kkt(Y, E, A_pd)
