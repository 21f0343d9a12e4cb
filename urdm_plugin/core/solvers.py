"""Per-pixel linear unmixing solvers, vectorised over pixels (numpy only).

All solvers take ``Y`` (B × N) — N pixel spectra of B bands — and endmembers ``E`` (B × P)
and return abundances ``A`` (P × N, float64):

* :func:`ucls` — ordinary least squares ``min ‖y − Ea‖²``;
* :func:`scls` — sum-to-one (ASC) ``1ᵀa = 1``;
* :func:`nnls` — non-negative (ANC) ``a ≥ 0``;
* :func:`fcls` — both (the simplex). **Exact**: a primal active-set method, not a
  penalty/δ-augmentation, so results are feasible to rounding and optimal (KKT).

Design of the constrained solvers (``nnls``, ``fcls``). Everything happens in Gram space:
``G = EᵀE`` (P × P) and ``c = Eᵀy`` (P per pixel), so after one BLAS product per chunk of
pixels the cost no longer depends on B. Every pixel runs the textbook primal active-set
method (Lawson–Hanson for NNLS; its sum-to-one variant for FCLS) with feasible iterates:

1. warm start: the unconstrained (ucls/scls) solution clipped / projected onto the
   feasible set, whose support is usually the final one;
2. solve the equality-constrained subproblem on the current free set S (pixels are grouped
   by S so one P × P factorisation serves thousands of pixels);
3. if the subproblem solution leaves the feasible set, step to the boundary and drop the
   blocking variables; otherwise check the multipliers of the inactive variables and free
   the most negative one; stop when none is negative (KKT holds).

Pixels with any non-finite value give NaN abundances. Work is done in chunks of pixels
so memory stays bounded (about ``chunk`` × (B + 8P) × 8 bytes).
"""

from __future__ import annotations

import numpy as np

from .errors import OptionError

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
            "Resample the library to the image bands (core.spectra.match_library).")
    if E.shape[1] < 1:
        raise OptionError("No endmembers were given", "Select at least one endmember.")
    if not np.all(np.isfinite(E)):
        raise OptionError("The endmember spectra contain NaN or infinite values",
                          "Remove or repair the bad spectra or bands in the library.")
    return Y, E


def _chunks(n: int, chunk: int):
    for s in range(0, n, chunk):
        yield s, min(n, s + chunk)


def _rhs(Y: np.ndarray, E: np.ndarray, s: int, e: int, buf=None):
    """c = Eᵀy for pixels s:e (P × n, float64) and the mask of finite pixels.

    ``buf`` (B × chunk float64) is reused across chunks: a fresh 50 MB array per chunk
    costs more in page faults than the product itself.
    """
    if buf is not None and Y.dtype != np.float64:
        y = buf[:, : e - s]
        np.copyto(y, Y[:, s:e])
    else:
        y = np.asarray(Y[:, s:e], dtype=np.float64)
    finite = np.isfinite(y).all(axis=0)
    if not finite.all():
        y = np.where(finite[None, :], y, 0.0)
    return E.T @ y, finite


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


# ------------------------------------------------------------------ active set
def _active_set(G: np.ndarray, C: np.ndarray, A0: np.ndarray, sum_to_one: bool,
                max_iter: int, cache: dict) -> tuple:
    """Batched primal active-set method in Gram space.

    Minimises ``½aᵀGa − cᵀa`` per column of ``C`` (P × n) subject to ``a ≥ 0`` (and
    ``1ᵀa = 1`` when ``sum_to_one``), starting from the feasible ``A0`` (P × n).
    Returns (A (n × P) array, converged (n,) bool).
    """
    P, n = C.shape
    a = np.ascontiguousarray(A0.T)  # (n, P): row per pixel keeps per-pixel data together
    c = np.ascontiguousarray(C.T)
    S = a > 0
    gscale = float(np.abs(G).max(initial=0.0))
    tol = 1e-11 * (gscale + np.abs(c).max(axis=1))  # multiplier tolerance per pixel
    bits = (1 << np.arange(min(P, 62))).astype(np.int64)

    def operator(key, row: np.ndarray):
        op = cache.get(key)
        if op is None:
            idx = np.flatnonzero(row)
            if idx.size == 0:
                op = (idx, None, None)
            elif sum_to_one:
                M, v = _scls_operator(G[np.ix_(idx, idx)])
                op = (idx, M, v)
            else:
                op = (idx, _pinv_sym(G[np.ix_(idx, idx)]), None)
            cache[key] = op
        return op

    def group_keys(Sm: np.ndarray) -> np.ndarray:
        if P <= 62:
            return Sm @ bits
        # wide problems (large libraries): group ids from the packed bit rows
        packed = np.packbits(Sm, axis=1)
        _, inv = np.unique(packed, axis=0, return_inverse=True)
        return inv.ravel().astype(np.int64)

    active = np.arange(n)  # pixels still iterating
    need_solve = np.ones(n, bool)
    converged = np.zeros(n, bool)
    for _ in range(max_iter):
        if active.size == 0:
            break
        # --- 1. subproblem solutions z on the free sets, grouped by set
        sub = active[need_solve[active]]
        if sub.size:
            keys = group_keys(S[sub])
            order = np.argsort(keys, kind="stable")
            sub, keys = sub[order], keys[order]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            ends = np.r_[starts[1:], sub.size]
            z = np.zeros((sub.size, P))
            for s0, e0 in zip(starts, ends):
                row = S[sub[s0]]
                idx, M, v = operator(int(keys[s0]) if P <= 62 else row.tobytes(), row)
                if idx.size == 0:
                    continue
                cs = c[sub[s0:e0]][:, idx]
                zs = cs @ M.T
                if v is not None:
                    zs += v
                z[s0:e0, idx] = zs
            # --- 2. infeasible subproblem solutions: step to the boundary, drop blockers
            Ssub = S[sub]
            block = Ssub & (z <= 0)
            bad = block.any(axis=1)
            if bad.any():
                ab, zb = a[sub[bad]], z[bad]
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.where(block[bad], ab / (ab - zb), np.inf)
                alpha = np.clip(ratio.min(axis=1), 0.0, 1.0)
                anew = ab + alpha[:, None] * (zb - ab)
                # variables at (or numerically at) zero leave the free set
                drop = block[bad] & (ratio <= alpha[:, None] * (1 + 1e-12) + 1e-15)
                drop |= Ssub[bad] & (anew <= 0)
                anew[drop | ~Ssub[bad]] = 0.0
                if sum_to_one:
                    anew /= np.maximum(anew.sum(axis=1, keepdims=True), 1e-300)
                a[sub[bad]] = anew
                S[sub[bad]] = Ssub[bad] & ~drop
            ok = ~bad
            a[sub[ok]] = np.where(Ssub[ok], z[ok], 0.0)
            need_solve[sub[bad]] = True
            need_solve[sub[ok]] = False
        # --- 3. KKT check for pixels sitting at their subproblem optimum
        chk = active[~need_solve[active]]
        if chk.size:
            g = a[chk] @ G - c[chk]  # gradient (G symmetric)
            Sc = S[chk]
            if sum_to_one:
                cnt = Sc.sum(axis=1)
                nu = np.where(cnt > 0, (g * Sc).sum(axis=1) / np.maximum(cnt, 1), 0.0)
                mu = g - nu[:, None]
            else:
                mu = g
            mu = np.where(Sc, np.inf, mu)
            j = mu.argmin(axis=1)
            mmin = mu[np.arange(chk.size), j]
            add = mmin < -tol[chk]
            done = chk[~add]
            converged[done] = True
            grow = chk[add]
            S[grow, j[add]] = True
            need_solve[grow] = True
            active = np.setdiff1d(active, done, assume_unique=True)
    return a, converged


def _solve_constrained(Y, E, sum_to_one: bool, chunk: int, max_iter) -> np.ndarray:
    Y, E = _check(Y, E)
    P, N = E.shape[1], Y.shape[1]
    A = np.empty((P, N))
    if N == 0:
        return A
    G = E.T @ E
    if sum_to_one:
        M, v = _scls_operator(G)
    else:
        Ginv = _pinv_sym(G)
    iters = max_iter if max_iter is not None else 10 * P + 50
    cache: dict = {}  # free set (bit mask) -> subproblem operator, shared by all chunks
    buf = np.empty((E.shape[0], min(chunk, N))) if Y.dtype != np.float64 else None
    for s, e in _chunks(N, chunk):
        C, fin = _rhs(Y, E, s, e, buf)
        U = M @ C + v[:, None] if sum_to_one else Ginv @ C
        # the unconstrained (sum-to-one) optimum is already the answer where it is >= 0
        hard = np.flatnonzero((U < 0).any(axis=0))
        A[:, s:e] = U
        if hard.size:
            Ch = C[:, hard]
            A0 = project_simplex(U[:, hard]) if sum_to_one else np.maximum(U[:, hard], 0.0)
            a, conv = _active_set(G, Ch, A0, sum_to_one, iters, cache)
            if not conv.all():  # rare (cycling in degenerate ties): exact fallback per pixel
                for k in np.flatnonzero(~conv):
                    a[k] = _single_pixel(G, Ch[:, k], a[k], sum_to_one)
            A[:, s + hard] = a.T
        A[:, s:e][:, ~fin] = np.nan
    return A


def _single_pixel(G, c, a0, sum_to_one: bool) -> np.ndarray:
    """Fallback for a pixel the batched loop did not finish: accelerated projected gradient
    from its current feasible point (objective non-increasing, converges to the optimum)."""
    L = max(float(np.linalg.eigvalsh(G).max()), 1e-300)
    proj = (lambda x: project_simplex(x)) if sum_to_one else (lambda x: np.maximum(x, 0.0))
    x = a0.copy()
    yk, t = x.copy(), 1.0
    for _ in range(5000):
        xn = proj(yk - (G @ yk - c) / L)
        tn = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        yk = xn + ((t - 1) / tn) * (xn - x)
        if np.abs(xn - x).max() < 1e-13:
            x = xn
            break
        x, t = xn, tn
    return x


def nnls(Y: np.ndarray, E: np.ndarray, chunk: int = CHUNK, max_iter=None) -> np.ndarray:
    """Non-negative least squares (P × N): ``min ‖y − Ea‖²`` s.t. ``a ≥ 0``. Exact."""
    return _solve_constrained(Y, E, False, chunk, max_iter)


def fcls(Y: np.ndarray, E: np.ndarray, chunk: int = CHUNK, max_iter=None) -> np.ndarray:
    """Fully constrained least squares (P × N): ``min ‖y − Ea‖²`` s.t. ``a ≥ 0, 1ᵀa = 1``.

    Exact (active set, see the module docstring): columns are non-negative and sum to one
    to rounding, and satisfy the KKT conditions of the problem.
    """
    return _solve_constrained(Y, E, True, chunk, max_iter)


SOLVERS = {"fcls": fcls, "scls": scls, "nnls": nnls, "ucls": ucls}
