"""Exact constrained per-pixel solvers: :func:`nnls` and :func:`fcls` (and its Gram form).

Size note: ~480 lines, one algorithm (face operators, enumeration, primal–dual rounds, the
primal active set) whose stages share the operator cache; the design is described below.

Design of the constrained solvers (``nnls``, ``fcls``). Everything happens in Gram space:
``G = EᵀE`` (P × P) and ``c = Eᵀy`` (P per pixel), so after one BLAS product per chunk of
pixels the cost no longer depends on B. The unconstrained (sum-to-one) optimum is the
answer wherever it is already feasible; the other ("hard") pixels are solved exactly:

* small P (≤ ``ENUM_MAX_P``): every face (free set S) of the feasible set is tested for
  all pixels at once. For each face one precomputed P × P operator gives the face's
  subproblem solution and the multipliers of the other variables; the face holding the
  optimum is the one passing the KKT test (solution ≥ 0, multipliers ≥ −tol);
* otherwise: up to ``PDAS_ROUNDS`` primal–dual active-set rounds (every pixel's free set
  is replaced by the one its subproblem solution and multipliers point to; a pixel is
  accepted only when it passes that same exact KKT test) — most pixels finish in a few
  rounds, the method may cycle, so the rest goes on to
* for any pixel still open: the textbook primal active-set method
  (Lawson–Hanson for NNLS; its sum-to-one variant for FCLS) with feasible iterates, run
  for all pixels together:

  1. warm start: the unconstrained (ucls/scls) solution clipped / projected onto the
     feasible set;
  2. solve the equality-constrained subproblem on every pixel's own free set S: the
     operators of all free sets met so far are kept in one stack (built by one batched
     eigendecomposition per batch of new sets) and every pixel gathers its own, so one
     batched product serves all pixels — no Python loop over free sets;
  3. if the subproblem solution leaves the feasible set, step to the boundary and drop the
     blocking variables; otherwise check the multipliers of the inactive variables and
     free the most negative one; stop when none is negative (KKT holds).

Pixels with any non-finite value give NaN abundances. Work is done in chunks of pixels
so memory stays bounded (about ``chunk`` × (B + 8P) × 8 bytes per worker); from
``PARALLEL_MIN_N`` pixels the chunks are solved on ``WORKERS`` threads (numpy releases
the GIL in BLAS and ufunc loops; same chunks, same arithmetic as serial).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import OptionError
from .linear import (
    CHUNK,
    RHS_BLOCK,
    _check,
    _chunks,
    _pinv_sym,
    _rhs,
    _scls_operator,
    project_simplex,
)

# threads over chunks of pixels (nnls, fcls). 1 by default: on the shared 2-core test
# machine (one core busy) two workers measured slower at P = 10 than one; set to
# min(2, os.cpu_count()) where cores are free.
WORKERS = 1
PARALLEL_MIN_N = 65536  # fewer pixels than this: one thread (no pool start-up)

# ------------------------------------------------------------------ active set
class _FaceOperators:
    """Equality-constrained subproblem operators and KKT tests, one per free set.

    For a free set S the subproblem ``min ½aᵀGa − cᵀa`` s.t. ``a_i = 0 (i ∉ S)`` (and
    ``1ᵀa = 1``) has the solution ``z = M_S c + v_S`` with ``M_S`` zero outside S × S, and
    the multipliers of the variables outside S are affine in c as well. Both are stacked
    into one operator: ``q = T_S c + t_S`` holds z on the rows in S and the multipliers μ
    on the others, so S holds the optimum iff ``q ≥ 0`` on S and ``q ≥ −tol`` elsewhere.
    The operators of all free sets met so far are kept in one stack ``T`` (k × P × P),
    ``t`` (k × P), so a whole batch of pixels, each on its own free set, is solved and
    checked by gathering its operator and one batched matrix–vector product: no Python
    loop over free sets. New free sets are factorised together (one batched ``eigh``;
    pseudo-inverse, so singular faces from duplicate or collinear endmembers are handled
    exactly like :func:`_pinv_sym`).
    """

    LUT_MAX_P = 20  # direct look-up table of 2**P slots up to here

    def __init__(self, G: np.ndarray, sum_to_one: bool):
        self.G, self.sum_to_one = G, sum_to_one
        self.P = P = G.shape[0]
        self.T = np.zeros((0, P, P))
        self.t = np.zeros((0, P))
        self.bits = (1 << np.arange(P)).astype(np.int64) if P <= 62 else None
        self.lut = np.full(1 << P, -1, np.intp) if P <= self.LUT_MAX_P else None
        self.index: dict = {}
        # chunks may be solved on several threads: the stack only grows (slots stay
        # valid), and growing it, the look-ups and the cached face tests are locked
        self.lock = threading.RLock()

    def slots(self, S: np.ndarray) -> np.ndarray:
        """Operator index for every row (free set) of the boolean ``S`` (n × P)."""
        if self.lut is not None:
            keys = S @ self.bits
            with self.lock:
                slot = self.lut[keys]
                miss = np.flatnonzero(slot < 0)
                if miss.size:
                    new, first = np.unique(keys[miss], return_index=True)
                    self.lut[new] = self._add(S[miss[first]])
                    slot = self.lut[keys]
            return slot
        if self.bits is not None:
            uniq, first, inv = np.unique(S @ self.bits, return_index=True, return_inverse=True)
            ids = uniq.tolist()
        else:  # very wide problems: group by the packed bit rows
            packed = np.packbits(S, axis=1)
            uniq, first, inv = np.unique(packed, axis=0, return_index=True, return_inverse=True)
            ids = [r.tobytes() for r in uniq]
        with self.lock:
            missing = [k for k, i in enumerate(ids) if i not in self.index]
            if missing:
                new = self._add(S[first[missing]])
                for k, slot in zip(missing, new):
                    self.index[ids[k]] = slot
            found = np.array([self.index[i] for i in ids], np.intp)
        return found[inv.ravel()]

    def _add(self, masks: np.ndarray) -> np.ndarray:
        """Factorise the faces ``masks`` (k × P bool); returns their new slots."""
        G, P = self.G, self.P
        k = masks.shape[0]
        mm = masks[:, :, None] & masks[:, None, :]
        cnt = masks.sum(axis=1)
        if self.sum_to_one:
            # [[G_SS, s·1], [s·1ᵀ, 0]] with zero rows/columns outside S (block-diagonal, so
            # its pseudo-inverse is the face's pseudo-inverse padded with zeros)
            tr = np.einsum("kii->k", np.where(mm, G, 0.0))
            sc = np.sqrt(np.maximum(tr / np.maximum(cnt, 1), 1e-300))
            K = np.zeros((k, P + 1, P + 1))
            K[:, :P, :P] = np.where(mm, G, 0.0)
            K[:, :P, P] = sc[:, None] * masks
            K[:, P, :P] = sc[:, None] * masks
            size = cnt + 1
        else:
            K = np.where(mm, G, 0.0)
            size = cnt
        w, V = np.linalg.eigh(K)
        tol = np.abs(w).max(axis=1, initial=0.0) * size * 1e-13
        inv = np.where(np.abs(w) > tol[:, None], 1.0 / np.where(w == 0, 1.0, w), 0.0)
        Kinv = np.matmul(V * inv[:, None, :], np.swapaxes(V, 1, 2))
        M = Kinv[:, :P, :P] * mm  # exact zeros outside the face
        if self.sum_to_one:
            v = Kinv[:, :P, P] * sc[:, None] * masks
        else:
            v = np.zeros((k, P))
        M[cnt == 0] = 0.0
        v[cnt == 0] = 0.0
        # the other rows: multipliers of the variables outside S, μ = g − ν with the
        # gradient g = G z − c = R c + r (ν = 0 for NNLS, the mean of g over S for FCLS)
        R = np.matmul(G, M) - np.eye(P)
        r = v @ G
        if self.sum_to_one:
            cm = np.maximum(cnt, 1)[:, None]
            R = R - ((R * masks[:, :, None]).sum(axis=1) / cm)[:, None, :]
            r = r - ((r * masks).sum(axis=1, keepdims=True) / cm)
        T = np.where(masks[:, :, None], M, R)
        t = np.where(masks, v, r)
        base = self.T.shape[0]
        self.T = np.concatenate([self.T, T])
        self.t = np.concatenate([self.t, t])
        return np.arange(base, base + k)

    def face_tests(self):
        """Every face that can hold a hard pixel's solution: (masks (k × P) bool,
        T (k × P × P), t (k × P)), faces ordered by size, largest first (the full face is
        the unconstrained optimum, and FCLS has no empty face). Cached per solver call.
        """
        with self.lock:
            return self._face_tests()

    def _face_tests(self):
        if getattr(self, "_tests", None) is None:
            P = self.P
            lo = 1 if self.sum_to_one else 0
            codes = np.arange(1 << P, dtype=np.int64)
            masks = ((codes[:, None] >> np.arange(P)) & 1).astype(bool)
            size = masks.sum(axis=1)
            masks = masks[(size >= lo) & (size < P)]
            masks = masks[np.argsort(-masks.sum(axis=1), kind="stable")]
            sl = self.slots(masks)
            self._tests = (masks, self.T[sl], self.t[sl])
        return self._tests

    def test(self, S: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``q = T c + t`` (n × P) for free sets ``S`` (n × P) and ``c`` (n × P): every
        pixel's subproblem solution on S and the multipliers of its other variables."""
        slot = self.slots(S)
        with self.lock:  # the stack only grows: this snapshot holds every slot above
            T, t = self.T, self.t
        n, P = c.shape
        q = np.empty((n, P))
        step = max(1, (1 << 19) // (P * P))  # gathered operators stay ≤ 4 MB
        for s in range(0, n, step):
            sl = slot[s:s + step]
            np.einsum("kij,kj->ki", T[sl], c[s:s + step], out=q[s:s + step])
            q[s:s + step] += t[sl]
        return q


def _active_set(G: np.ndarray, C: np.ndarray, A0: np.ndarray, sum_to_one: bool,
                max_iter: int, ops: _FaceOperators) -> tuple:
    """Batched primal active-set method in Gram space.

    Minimises ``½aᵀGa − cᵀa`` per column of ``C`` (P × n) subject to ``a ≥ 0`` (and
    ``1ᵀa = 1`` when ``sum_to_one``), starting from the feasible ``A0`` (P × n).
    Returns (A (n × P) array, converged (n,) bool).

    Every iteration solves each unfinished pixel's subproblem on its own free set (one
    batched product, :class:`_FaceOperators`), steps to the boundary where that solution
    is infeasible, and otherwise checks the multipliers and frees the most negative one
    (Lawson–Hanson; freeing all negative ones at once was measured to need more
    iterations). The work arrays hold only the unfinished pixels (compacted every
    iteration).
    """
    P, n = C.shape
    out = np.empty((n, P))  # (n, P): row per pixel keeps per-pixel data together
    converged = np.zeros(n, bool)
    a = np.array(A0.T, order="C")  # work copy (never writes into A0)
    c = np.ascontiguousarray(C.T)
    S = a > 0
    gscale = float(np.abs(G).max(initial=0.0))
    tol = 1e-11 * (gscale + np.abs(c).max(axis=1))  # multiplier tolerance per pixel
    idx = np.arange(n)  # original column of every work row
    for _ in range(max_iter):
        if idx.size == 0:
            break
        # --- 1. subproblem solutions z on every pixel's own free set (z = 0 outside it)
        # and the multipliers μ of the other variables, one batched product
        q = ops.test(S, c)
        z = np.where(S, q, 0.0)
        # --- 2. infeasible subproblem solutions: step to the boundary, drop blockers
        block = S & (q <= 0)
        bad = block.any(axis=1)
        ok = ~bad
        if bad.any():
            ab, zb, Sb, blk = a[bad], z[bad], S[bad], block[bad]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(blk, ab / (ab - zb), np.inf)
            alpha = np.clip(ratio.min(axis=1), 0.0, 1.0)
            anew = ab + alpha[:, None] * (zb - ab)
            # variables at (or numerically at) zero leave the free set
            drop = blk & (ratio <= alpha[:, None] * (1 + 1e-12) + 1e-15)
            drop |= Sb & (anew <= 0)
            anew[drop | ~Sb] = 0.0
            if sum_to_one:
                anew /= np.maximum(anew.sum(axis=1, keepdims=True), 1e-300)
            a[bad] = anew
            S[bad] = Sb & ~drop
        # --- 3. KKT check where the subproblem solution is feasible
        keep = bad
        if ok.any():
            zo = z[ok]
            mu = np.where(S[ok], np.inf, q[ok])
            j = mu.argmin(axis=1)
            add = mu[np.arange(j.size), j] < -tol[ok]
            okw = np.flatnonzero(ok)
            fin = okw[~add]
            out[idx[fin]] = zo[~add]
            converged[idx[fin]] = True
            grow, jg = okw[add], j[add]
            a[okw] = zo
            S[grow, jg] = True
            keep = bad.copy()
            keep[grow] = True
        if not keep.all():
            idx, a, c, S, tol = idx[keep], a[keep], c[keep], S[keep], tol[keep]
    out[idx] = a  # unfinished pixels: their current feasible point
    return out, converged


ENUM_MAX_P = 5  # up to here hard pixels are solved by testing every face (2**P − 1)


def _enumerate_faces(ops: _FaceOperators, C: np.ndarray) -> tuple:
    """Exact solution by face enumeration for small P: the optimum lies on exactly the
    faces that pass the KKT test of :meth:`_FaceOperators.face_tests`, so every face is
    tested for all pixels at once (one small BLAS product and a few passes per face).
    Returns (A (P × n), found (n,) bool); pixels no face accepts (only possible through
    rounding in degenerate ties) are left to the active-set method.
    """
    P, n = C.shape
    masks, T, t = ops.face_tests()
    gscale = float(np.abs(ops.G).max(initial=0.0))
    tol = 1e-11 * (gscale + np.abs(C).max(axis=0))  # same multiplier tolerance
    A = np.zeros((P, n))
    found = np.zeros(n, bool)
    idx = np.arange(n)  # columns still open (compacted as they get solved)
    Cw, tolw = C, tol
    Q = np.empty((P, n))
    for k in range(masks.shape[0]):
        m = idx.size
        q = Q[:, :m]
        np.matmul(T[k], Cw, out=q)
        q += t[k][:, None]
        for i in np.flatnonzero(~masks[k]):
            q[i] += tolw
        new = np.flatnonzero(q.min(axis=0) >= 0)
        if new.size == 0:
            continue
        cols = idx[new]
        A[:, cols] = q[:, new] * masks[k][:, None]
        found[cols] = True
        if new.size == m:
            break
        keep = np.ones(m, bool)
        keep[new] = False
        idx, Cw, tolw = idx[keep], Cw[:, keep], tolw[keep]
    return A, found


PDAS_ROUNDS = 8  # primal–dual active-set rounds before the primal active-set method


def _primal_dual(ops: _FaceOperators, C: np.ndarray, S0: np.ndarray, rounds: int) -> tuple:
    """Primal–dual active-set rounds (Hintermüller, Ito & Kunisch 2002) for the hard pixels.

    Each round solves every pixel's subproblem on its free set S (one batched product,
    :meth:`_FaceOperators.test`) and accepts the pixels passing the exact KKT test of the
    face enumeration (solution ≥ 0 on S, multipliers ≥ −tol off S); the others move to
    the free set {i ∈ S: z_i > 0} ∪ {i ∉ S: μ_i < −tol} — all violations at once, which
    usually needs far fewer rounds than the one-at-a-time primal method but may cycle,
    so it is only run for ``rounds`` rounds and the rest is left to :func:`_active_set`.
    Returns (A (P × n), found (n,) bool).
    """
    P, n = C.shape
    out = np.zeros((n, P))
    found = np.zeros(n, bool)
    c = np.ascontiguousarray(C.T)
    S = S0.T.copy()
    gscale = float(np.abs(ops.G).max(initial=0.0))
    tol = (1e-11 * (gscale + np.abs(c).max(axis=1)))[:, None]  # same multiplier tolerance
    idx = np.arange(n)
    for _ in range(rounds):
        q = ops.test(S, c)
        pos = q > 0
        ok = np.where(S, q >= 0, q >= -tol).all(axis=1)
        if ok.any():
            done = idx[ok]
            out[done] = np.where(S[ok], q[ok], 0.0)
            found[done] = True
            rest = ~ok
            idx, c, S, tol, q, pos = idx[rest], c[rest], S[rest], tol[rest], q[rest], pos[rest]
        if idx.size == 0:
            break
        Sn = np.where(S, pos, q < -tol)
        if ops.sum_to_one:  # the simplex has no empty face: keep the largest variable
            empty = np.flatnonzero(~Sn.any(axis=1))
            if empty.size:
                Sn[empty, np.where(S[empty], q[empty], -np.inf).argmax(axis=1)] = True
        S = Sn
    return out.T, found


def _unconstrained_operator(G, sum_to_one: bool) -> tuple:
    """(M, v): the unconstrained optimum is M·c (+ v with the sum-to-one row)."""
    return _scls_operator(G) if sum_to_one else (_pinv_sym(G), None)


def _solve_constrained(Y, E, sum_to_one: bool, chunk: int, max_iter) -> np.ndarray:
    Y, E = _check(Y, E)
    P, N = E.shape[1], Y.shape[1]
    A = np.empty((P, N))
    if N == 0:
        return A
    G = E.T @ E
    unc = _unconstrained_operator(G, sum_to_one)
    iters = max_iter if max_iter is not None else 10 * P + 50
    ops = _FaceOperators(G, sum_to_one)  # free set -> subproblem operator, all chunks
    spans = list(_chunks(N, chunk))
    workers = min(WORKERS, len(spans)) if N >= PARALLEL_MIN_N else 1
    if workers <= 1:
        buf = np.empty((E.shape[0], min(RHS_BLOCK, N))) if Y.dtype != np.float64 else None
        for s, e in spans:
            _solve_chunk(Y, E, A, s, e, buf, unc, ops, iters)
        return A
    # chunks are independent (disjoint columns of A); numpy releases the GIL in BLAS and
    # most ufunc loops, so worker threads overlap. ``ops`` is shared (locked).
    local = threading.local()

    def work(span):
        buf = getattr(local, "buf", None)
        if buf is None and Y.dtype != np.float64:
            buf = local.buf = np.empty((E.shape[0], min(RHS_BLOCK, N)))
        _solve_chunk(Y, E, A, span[0], span[1], buf, unc, ops, iters)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(work, sp) for sp in spans]:
            f.result()  # re-raises a worker's exception
    return A


def _solve_chunk(Y, E, A, s, e, buf, unc, ops, iters) -> None:
    """Solve pixels s:e into ``A[:, s:e]`` (one chunk; safe to run in parallel)."""
    C, fin = _rhs(Y, E, s, e, buf)
    A[:, s:e] = _solve_gram(C, unc, ops, iters)
    A[:, s:e][:, ~fin] = np.nan


def _solve_gram(C, unc, ops, iters) -> np.ndarray:
    """Exact constrained minimisers of ½aᵀGa − cᵀa for the columns of C (P × n)."""
    G, P, sum_to_one = ops.G, ops.P, ops.sum_to_one
    U = unc[0] @ C + unc[1][:, None] if sum_to_one else unc[0] @ C
    # the unconstrained (sum-to-one) optimum is already the answer where it is >= 0
    hard = np.flatnonzero((U < 0).any(axis=0))
    A = U.copy()
    if hard.size and P <= ENUM_MAX_P:
        Ah, found = _enumerate_faces(ops, C[:, hard])
        A[:, hard] = Ah
        hard = hard[~found]
    if hard.size:
        Ch = C[:, hard]
        A0 = project_simplex(U[:, hard]) if sum_to_one else np.maximum(U[:, hard], 0.0)
        if PDAS_ROUNDS:
            Ah, found = _primal_dual(ops, Ch, A0 > 0, PDAS_ROUNDS)
            A[:, hard] = Ah
            hard, Ch, A0 = hard[~found], Ch[:, ~found], A0[:, ~found]
    if hard.size:
        a, conv = _active_set(G, Ch, A0, sum_to_one, iters, ops)
        if not conv.all():  # rare (cycling in degenerate ties): exact fallback per pixel
            for k in np.flatnonzero(~conv):
                a[k] = _single_pixel(G, Ch[:, k], a[k], sum_to_one)
        A[:, hard] = a.T
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


def nnls_gram(G: np.ndarray, C: np.ndarray, chunk: int = CHUNK, max_iter=None) -> np.ndarray:
    """NNLS in Gram form: ``min ½aᵀGa − cᵀa`` s.t. ``a ≥ 0`` for every column c of C (P × N).

    URDM's data step under the scaling (ELMM) model solves ``½‖y − Eb‖² + ρ/2‖b − ψ⊙z‖²``
    over b ≥ 0 as G = EᵀE + ρI, c = Eᵀy + ρ·ψ⊙z. Exact, like :func:`nnls`.
    """
    return _gram_solve(G, C, False, chunk, max_iter)


def fcls_gram(G: np.ndarray, C: np.ndarray, chunk: int = CHUNK, max_iter=None) -> np.ndarray:
    """FCLS in Gram form: ``min ½aᵀGa − cᵀa`` s.t. ``a ≥ 0, 1ᵀa = 1`` for every column c of C.

    G (P × P) symmetric positive semi-definite, C (P × N) float64; returns A (P × N), exact
    like :func:`fcls` (which is this with G = EᵀE, C = EᵀY). URDM's data step solves
    ``½‖y − Ea‖² + ρ/2‖a − z‖²`` on the simplex as G = EᵀE + ρI, c = Eᵀy + ρz.
    """
    return _gram_solve(G, C, True, chunk, max_iter)


def _gram_solve(G, C, sum_to_one: bool, chunk: int, max_iter) -> np.ndarray:
    G = np.asarray(G, np.float64)
    C = np.asarray(C, np.float64)
    P, N = C.shape
    if G.shape != (P, P):
        raise OptionError(f"Gram matrix {G.shape} does not match {P} abundances",
                          "Pass G = EᵀE (P × P) and C = EᵀY (P × N).")
    unc = _unconstrained_operator(G, sum_to_one)
    ops = _FaceOperators(G, sum_to_one)
    iters = max_iter if max_iter is not None else 10 * P + 50
    A = np.empty((P, N))
    for s, e in _chunks(N, chunk):
        A[:, s:e] = _solve_gram(C[:, s:e], unc, ops, iters)
    return A


