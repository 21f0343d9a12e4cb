"""Regularisation weights chosen from the scene alone: Monte-Carlo SURE in abundance space.

URDM's λ and TV's λ_TV trade data fit against the prior. Neither may be tuned with the
truth, so each scene chooses its own by minimising Stein's unbiased risk estimate (SURE)
of the abundance mean squared error over a few candidate weights. The weight 0 — plain
FCLS — is always a candidate, so a method declines to regularise where its prior cannot
help (e.g. noise-free mixtures).

The estimate. With ``Y = E·A + N`` (Y bands × pixels, E bands × P, A P × pixels) and
Gaussian noise independent across pixels with per-band standard deviations σ_b, the
least-squares abundances ``Â_LS = K·Y`` (K = G⁺Eᵀ, G = EᵀE) are unbiased for A with
covariance ``C = KΣKᵀ`` (P × P, Σ = diag σ_b²) at every pixel. Expanding
‖f − A‖² around Â_LS and applying Stein's lemma to ⟨K·N, f(Y)⟩ gives, for any solver
``f`` (weakly differentiable in Y) with the weight fixed,

    E‖f(Y) − A‖² = E[ ‖f(Y) − Â_LS‖² − N·tr(C) + 2·Σ_pixels tr(ΣKᵀ·∂f/∂Y) ].

The divergence term is probed Monte-Carlo style with one perturbed run (Ramani, Blu &
Unser 2008): draw n with per-band σ_b (bands × pixels), set b = K·n, then
``Σ tr(ΣKᵀ·∂f/∂Y) ≈ ⟨b, f(Y + εn) − f(Y)⟩ / ε``. The same probe n serves every candidate
(common random numbers), so differences between candidates are far more precise than
each value: the values share the random offset ‖Â_LS − A‖² − N·tr(C), large when E is
ill-conditioned, which cancels in the choice (run.json reports the values as they are).
The solvers must be deterministic functions of Y for a fixed seed (URDM's sampling noise
is keyed to the seed) and everything estimated from Y — the noise level — is held fixed
while the weight varies.

What SURE cannot see: model mismatch in the range of E (endmember variability, a wrong
library) is signal to it; it then estimates the error against the mixture the data
support, not against a truth the data cannot reveal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import Cancelled
from ..window import Window

#: Probe size relative to the noise (ε in the module docstring).
PROBE_EPS = 0.1
#: Side (pixels) of the central window on which weights are chosen for larger scenes.
SELECTION_WINDOW = 128


@dataclass
class SureProbe:
    """Everything about the data that every candidate shares (see the module docstring).

    ``n`` (B, h, w) the probe perturbation; ``als`` (P, M) and ``b`` (P, M) the LS
    abundances and the probe's image in abundance space at the M valid pixels;
    ``trace_c`` tr(C) per pixel; ``eps`` the probe size.
    """

    n: np.ndarray
    als: np.ndarray
    b: np.ndarray
    trace_c: float
    valid: np.ndarray
    eps: float = PROBE_EPS


def make_probe(Y: np.ndarray, E: np.ndarray, valid: np.ndarray, band_sigma: np.ndarray,
               seed: int = 0, eps: float = PROBE_EPS) -> SureProbe:
    """The shared SURE probe for ``Y`` (B, h, w), ``E`` (B, P), ``valid`` (h, w) bool,
    ``band_sigma`` (B,) noise σ per band (reflectance)."""
    from .linear import _pinv_sym

    B, h, w = Y.shape
    sb = np.asarray(band_sigma, np.float64).reshape(B)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 5112])  # independent of the sampler's noise
    n = sb[:, None, None] * rng.standard_normal((B, h, w))
    n[:, ~valid] = 0.0
    Gi = _pinv_sym(E.T @ E)
    K = Gi @ E.T  # (P, B)
    v = valid.ravel()
    als = K @ Y.reshape(B, -1)[:, v]
    b = K @ n.reshape(B, -1)[:, v]
    trace_c = float(np.trace(K @ (sb[:, None] ** 2 * K.T)))
    return SureProbe(n=n, als=als, b=b, trace_c=trace_c, valid=valid, eps=float(eps))


def sure_value(A: np.ndarray, A_probe: np.ndarray, probe: SureProbe) -> float:
    """SURE of the abundance MSE (per entry) for f(Y) = ``A`` and f(Y + εn) = ``A_probe``
    (both P × h × w)."""
    v = probe.valid.ravel()
    P = A.shape[0]
    a = np.asarray(A, np.float64).reshape(P, -1)[:, v]
    ap = np.asarray(A_probe, np.float64).reshape(P, -1)[:, v]
    m = a.shape[1]
    fit = float(np.sum((a - probe.als) ** 2))
    div = float(np.sum(probe.b * (ap - a))) / probe.eps
    return (fit - m * probe.trace_c + 2.0 * div) / (P * m)


@dataclass
class Selection:
    """The chosen weight, its result on the selection data, and every value tried."""

    weight: float
    A: np.ndarray
    table: dict = field(default_factory=dict)  # weight -> SURE (abundance MSE per entry)
    seconds: Optional[float] = None  # wall time of the whole choice, when the caller timed it

    def report(self) -> dict:
        """JSON-ready summary for run.json: chosen weight, SURE of every candidate and the
        choice's cost in seconds (when timed)."""
        out = {"criterion": "SURE (Monte-Carlo, abundance MSE)",
               "chosen": float(self.weight),
               "candidates": [{"weight": float(w), "sure_mse": float(s)}
                              for w, s in sorted(self.table.items())]}
        if self.seconds is not None:
            out["seconds"] = round(float(self.seconds), 3)
        return out


def select_weight(solve: Callable[[np.ndarray, float], np.ndarray], Y: np.ndarray,
                  probe: SureProbe, grid, refine: float = math.sqrt(3.0),
                  cancel: Optional[Callable[[], bool]] = None,
                  progress: Optional[Callable[[float, str], None]] = None) -> Selection:
    """Minimise SURE over ``0`` (no regularisation), ``grid`` and one refinement round.

    ``solve(Y, weight)`` -> A (P, h, w) runs the method with everything but the weight
    fixed. After the grid, the two geometric neighbours best/refine and best·refine of the
    best weight are tried (below the grid when the best is 0), so the result lands within
    a factor √refine of the SURE minimum on the grid's span.
    """
    table: dict = {}
    results: dict = {}
    grid = sorted(float(g) for g in grid if g > 0)
    total = len(grid) + 3  # 0, the grid, two neighbours of the best: the steps of the bar

    def evaluate(wt: float):
        if wt in table:
            return
        if cancel is not None and cancel():
            raise Cancelled()
        if progress is not None:  # each candidate is two full runs: say which one runs now
            progress(min(len(table) / total, 1.0), f"choosing the weight: {len(table) + 1} of {total} candidates")
        A = solve(Y, wt)
        Ap = solve(Y + probe.eps * probe.n, wt)
        table[wt] = sure_value(A, Ap, probe)
        results[wt] = A

    evaluate(0.0)
    for g in grid:
        evaluate(g)
    best = _smallest_best(table)
    if best == 0.0 and grid:
        neighbours = [grid[0] / refine ** 2, grid[0] / refine]
    else:
        neighbours = [best / refine, best * refine]
    for g in neighbours:
        evaluate(float(g))
    best = _smallest_best(table)
    if progress is not None:
        progress(1.0, f"choosing the weight: {len(table)} candidates tried, λ = {best:.3g}")
    return Selection(weight=float(best), A=results[best], table=table)


def _smallest_best(table: dict) -> float:
    """The weight with the least SURE; among values equal to rounding, the smallest weight
    (so a scene where regularising changes nothing stays unregularised)."""
    low = min(table.values())
    tol = 1e-9 * abs(low) + 1e-15
    return min(w for w, v in table.items() if v <= low + tol)


def central_window(h: int, w: int, size: int = SELECTION_WINDOW) -> Window:
    """The central :class:`Window` of at most size × size pixels of an h × w grid."""
    hh, ww = min(h, size), min(w, size)
    return Window((h - hh) // 2, (w - ww) // 2, hh, ww)


def selection_window(Y: np.ndarray, valid: np.ndarray, size: int = SELECTION_WINDOW,
                     min_valid: int = 16) -> tuple:
    """The data a weight is chosen on: (Y window (B, h, w) with invalid pixels zero, its
    valid mask, box: a :class:`Window`). The central window of at most size² pixels, or the
    whole tile when that window holds fewer than ``min_valid`` valid pixels."""
    H, W = valid.shape
    box = central_window(H, W, size)
    vw = valid[box.slices()]
    if vw.sum() < min_valid:
        box, vw = Window.whole(H, W), valid
    Yw = np.where(vw[None], Y[(slice(None), *box.slices())], 0.0)
    return Yw, vw, box


#: Band weighting is considered only when the noise is clearly band-dependent: the ratio of
#: the 95th to the 5th percentile of the per-band σ̂ exceeds this (white noise: ≈ 1.1).
BAND_NOISE_RATIO = 1.5


def choose_band_weights(Y: np.ndarray, E: np.ndarray, valid: np.ndarray, band_sigma: np.ndarray,
                        seed: int = 0) -> tuple:
    """Whether to fit the data with per-band noise weights, and which.

    Under band-dependent noise the maximum-likelihood data term is ½‖D⁻¹(y − Ea)‖² with
    D = diag(σ_b) (normalised to RMS 1). It is used when the noise is clearly band-dependent
    (:data:`BAND_NOISE_RATIO`) *and* SURE of the abundance error prefers noise-weighted FCLS
    to plain FCLS on this data — a cheap test, no network involved. Returns
    (d (B,) or None, report dict).
    """
    from .active_set import fcls

    sb = np.asarray(band_sigma, np.float64)
    lo, hi = np.percentile(sb, [5, 95])
    ratio = float(hi / max(lo, 1e-12))
    report = {"band_noise_ratio_p95_p5": ratio}
    if not np.isfinite(ratio) or ratio <= BAND_NOISE_RATIO or not np.all(sb > 0):
        report["weighted"] = False
        return None, report
    d = sb / np.sqrt(np.mean(sb * sb))
    B = Y.shape[0]
    P = E.shape[1]
    v = valid.ravel()

    def plain(Yx):
        out = np.zeros((P, v.size))
        out[:, v] = fcls(Yx.reshape(B, -1)[:, v], E)
        return out.reshape(P, *Y.shape[1:])

    def weighted(Yx):
        out = np.zeros((P, v.size))
        out[:, v] = fcls((Yx.reshape(B, -1) / d[:, None])[:, v], E / d[:, None])
        return out.reshape(P, *Y.shape[1:])

    probe = make_probe(Y, E, valid, sb, seed=seed)
    s_plain = sure_value(plain(Y), plain(Y + probe.eps * probe.n), probe)
    s_weighted = sure_value(weighted(Y), weighted(Y + probe.eps * probe.n), probe)
    use = s_weighted < s_plain
    report.update(weighted=bool(use), sure_mse_fcls=float(s_plain), sure_mse_weighted_fcls=float(s_weighted))
    return (d if use else None), report
