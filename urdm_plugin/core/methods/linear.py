"""Per-pixel linear unmixing solvers, vectorised over pixels (numpy only).

All solvers take ``Y`` (B × N) — N pixel spectra of B bands — and endmembers ``E`` (B × P)
and return abundances ``A`` (P × N, float64):

* :func:`ucls` — ordinary least squares ``min ‖y − Ea‖²``;
* :func:`scls` — sum-to-one (ASC) ``1ᵀa = 1``;
* :func:`nnls` — non-negative (ANC) ``a ≥ 0``;
* :func:`fcls` — both (the simplex). **Exact**: a primal active-set method, not a
  penalty/δ-augmentation, so results are feasible to rounding and optimal (KKT).

Pixels with any non-finite value give NaN abundances. Work is done in chunks of ``chunk``
pixels so memory stays bounded. The constrained solvers are in :mod:`.active_set`.
"""

from __future__ import annotations

import numpy as np

from ..errors import OptionError
from ..limits import MAX_MAGNITUDE

CHUNK = 32768  # pixels per block: B=200 float64 → ~50 MB


def _check(Y: np.ndarray, E: np.ndarray):
    Y = np.asarray(Y)
    E = np.asarray(E, dtype=np.float64)
    if E.ndim != 2:
        raise OptionError(f"Endmembers must be a (bands, P) matrix, got shape {E.shape}",
                          "Pass one column per endmember.")
    if Y.ndim != 2:
        raise OptionError(f"Pixels must be a (bands, N) matrix, got shape {Y.shape}",
                          "Reshape the image to (bands, pixels) first.")
    if Y.shape[0] != E.shape[0]:
        raise OptionError(
            f"The image has {Y.shape[0]} bands but the endmembers have {E.shape[0]}",
            "Resample the library to the image bands (core.bands.match_library).")
    if E.shape[1] < 1:
        raise OptionError("No endmembers were given", "Select at least one endmember.")
    if not np.all(np.isfinite(E)):
        raise OptionError("The endmember spectra contain NaN or infinite values",
                          "Remove or repair the bad spectra or bands in the library.")
    return Y, E


def _chunks(n: int, chunk: int):
    for s in range(0, n, chunk):
        yield s, min(n, s + chunk)


RHS_BLOCK = 1024  # pixels converted to float64 at a time: the copy stays in cache


def _rhs(Y: np.ndarray, E: np.ndarray, s: int, e: int, buf=None):
    """c = Eᵀy for pixels s:e (P × n, float64) and the mask of finite pixels.

    Non-float64 input (float32 as read from disk) is converted in blocks of ``RHS_BLOCK``
    pixels into ``buf`` (B × ``RHS_BLOCK``; allocated here when not given) that stay in
    cache for the float64 product, so the result is exactly that of the float64 data.
    A pixel is non-finite iff its column of c is: NaN or ±inf in y always reaches Eᵀy
    (0·inf = NaN), so the test runs on P rather than B values per pixel. So does the
    magnitude test: a column of c larger than data within ±:data:`core.limits.MAX_MAGNITUDE`
    can give is out of range too. Such columns are zeroed (the solvers mark them NaN).
    """
    ET = E.T
    n = e - s
    with np.errstate(invalid="ignore", over="ignore"):  # inf·0, inf − inf: flagged below
        if Y.dtype == np.float64:
            C = ET @ Y[:, s:e]
        else:
            C = np.empty((E.shape[1], n))
            if buf is None:
                buf = np.empty((E.shape[0], min(RHS_BLOCK, n)))
            step = buf.shape[1]
            for b in range(0, n, step):
                m = min(step, n - b)
                y = buf[:, :m]
                np.copyto(y, Y[:, s + b:s + b + m], casting="unsafe")
                np.matmul(ET, y, out=C[:, b:b + m])
    finite = np.isfinite(C).all(axis=0)
    # |c_p| ≤ M·Σ_b|E_bp| whenever every |y_b| ≤ M: beyond it the pixel is out of range
    finite &= (np.abs(C) <= MAX_MAGNITUDE * np.abs(E).sum(axis=0)[:, None]).all(axis=0)
    if not finite.all():
        C[:, ~finite] = 0.0
    return C, finite


def _pinv_sym(K: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a small symmetric (possibly singular) matrix via eigh."""
    w, V = np.linalg.eigh(K)
    tol = np.abs(w).max(initial=0.0) * K.shape[0] * 1e-13
    inv = np.where(np.abs(w) > tol, 1.0 / np.where(w == 0, 1.0, w), 0.0)
    return (V * inv) @ V.T


# ------------------------------------------------------------------ simplex projection
def project_simplex(X: np.ndarray) -> np.ndarray:
    """Exact Euclidean projection of every column of ``X`` (P × N) onto the unit simplex.

    Sort-based (Held et al. 1974; Duchi et al. 2008): O(P log P) per column, vectorised.
    Returns a new float64 array (P × N) with columns ≥ 0 summing to 1.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        return project_simplex(X[:, None])[:, 0]
    P, N = X.shape
    if N == 0 or P == 0:
        return X.copy()
    U = -np.sort(-X, axis=0)  # descending
    css = np.cumsum(U, axis=0) - 1.0
    k = np.arange(1, P + 1, dtype=np.float64)[:, None]
    cond = U - css / k > 0
    rho = P - 1 - np.argmax(cond[::-1], axis=0)  # last index where cond holds (always ≥ 0)
    theta = css[rho, np.arange(N)] / (rho + 1.0)
    return np.maximum(X - theta[None, :], 0.0)


# ------------------------------------------------------------------ unconstrained / ASC
def ucls(Y: np.ndarray, E: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Unconstrained least squares ``A = E⁺Y`` (P × N); rank-deficient E gives the
    minimum-norm solution."""
    Y, E = _check(Y, E)
    P, N = E.shape[1], Y.shape[1]
    A = np.empty((P, N))
    Ginv = _pinv_sym(E.T @ E)
    for s, e in _chunks(N, chunk):
        c, fin = _rhs(Y, E, s, e)
        A[:, s:e] = Ginv @ c
        A[:, s:e][:, ~fin] = np.nan
    return A


def _scls_operator(G: np.ndarray):
    """(M, v) with the sum-to-one LS solution a = M c + v for any c = Eᵀy."""
    P = G.shape[0]
    sc = max(float(np.trace(G)) / P, 1e-300) ** 0.5  # balance the constraint row
    K = np.zeros((P + 1, P + 1))
    K[:P, :P] = G
    K[:P, P] = sc
    K[P, :P] = sc
    Kinv = _pinv_sym(K)
    return Kinv[:P, :P], Kinv[:P, P] * sc


def scls(Y: np.ndarray, E: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Sum-to-one constrained least squares (P × N): ``min ‖y − Ea‖²`` s.t. ``1ᵀa = 1``."""
    Y, E = _check(Y, E)
    P, N = E.shape[1], Y.shape[1]
    M, v = _scls_operator(E.T @ E)
    A = np.empty((P, N))
    for s, e in _chunks(N, chunk):
        c, fin = _rhs(Y, E, s, e)
        A[:, s:e] = M @ c + v[:, None]
        A[:, s:e][:, ~fin] = np.nan
    return A


