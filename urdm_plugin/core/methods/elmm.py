"""Endmember variability as smooth per-pixel scaling: the extended linear mixing model (ELMM).

Model (Drumetz et al., IEEE TIP 2016), per pixel n::

    y_n = E · diag(ψ_n) · a_n + e_n,     a_n ≥ 0, 1ᵀa_n = 1,  ψ_n ≥ 0 (P scalings)

ψ_pn scales endmember p at pixel n (illumination, slope, shade, grain size: brightness
variability of the material). FCLS is the case ψ ≡ 1; when brightness varies, its sum-to-one
constraint is what breaks (a darker pixel's fractions are pushed off their values).

How it is solved here. With b = ψ ⊙ a (P × N, the "scaled abundances") the model is linear,
y = E·b + e with b ≥ 0 and no sum constraint, so the data fit is an exact non-negative least
squares problem, and the split of b back into fractions and scalings,
``a = (b/ψ) / Σ_p (b/ψ)``, is fixed by asking ψ to be *spatially smooth* (the ELMM's
smoothness term on ψ): for given a, each ψ_p is the Gaussian-weighted local least-squares
fit of b_p ≈ ψ_p·a_p over a neighbourhood of ``smooth`` pixels (shrunk towards 1 where a_p
is too small to tell), and a and ψ are alternated a few times. A material's brightness
changes slowly across a scene while fractions change from pixel to pixel, which is what
tells them apart. Unlike the full ELMM this never refits b for a given ψ (b is the exact
NNLS solution throughout), which keeps one shared Gram matrix for every pixel.

Measured on semi-synthetic Jasper Ridge with smooth brightness variability 0.8–1.2
(benchmarks/bench_variability.py): RMSE 0.024 / 0.011 / 0.006 at 20 / 30 / 40 dB against
FCLS's 0.046 / 0.045 / 0.044. On white noise without variability the extra freedom costs
accuracy (≈ 2× FCLS's error at 30 dB), which is why URDM decides from the data whether to
use it (:func:`variability_test`).
"""

from __future__ import annotations

import numpy as np

from ..errors import Cancelled

#: Default scale (pixels, Gaussian σ) over which the scalings ψ are assumed smooth.
DEFAULT_SMOOTH = 2.0
#: Alternations of the fraction / scaling split.
SPLIT_ITERATIONS = 10
#: Shrinkage of ψ towards 1 (in units of a²): where a material is absent, ψ is 1.
PSI_SHRINK = 1e-3
#: Bounds on ψ: a material is never more than 20× darker or brighter than its spectrum.
PSI_RANGE = (0.05, 20.0)
#: Mean per-pixel drop of the residual (in units of the noise variance σ²) that freeing the
#: sum-to-one constraint must bring for the scaling model to be used. Freeing one degree of
#: freedom lowers the residual by about 1·σ² under pure noise (χ² with one dof), so 4 keeps
#: white-noise scenes on the plain model with a wide margin (measured 0.3–1.1 on them).
VARIABILITY_THRESHOLD = 4.0


def _smooth(X: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of maps X (..., h, w) over the last two axes (edges: nearest)."""
    from scipy.ndimage import gaussian_filter

    sig = [0.0] * (X.ndim - 2) + [float(sigma), float(sigma)]
    return gaussian_filter(X, sig, mode="nearest")


def fit_scaling(b: np.ndarray, a: np.ndarray, valid: np.ndarray, smooth: float = DEFAULT_SMOOTH) -> np.ndarray:
    """Smooth scalings ψ (P, h, w) with b ≈ ψ ⊙ a locally.

    ``b``, ``a`` (P, h, w) scaled abundances and fractions; ``valid`` (h, w) bool — invalid
    pixels carry no weight (normalised convolution), so ψ there is filled from neighbours.
    ψ_p = G_σ*(b_p·a_p + κ) / G_σ*(a_p² + κ) at valid pixels, κ = PSI_SHRINK.
    """
    v = valid.astype(np.float64)[None]
    num = _smooth(b * a * v + PSI_SHRINK * v, smooth)
    den = _smooth(a * a * v + PSI_SHRINK * v, smooth)
    psi = np.divide(num, den, out=np.ones_like(num), where=den > 1e-12)
    return np.clip(psi, *PSI_RANGE)


#: Local share of a material (Gaussian mean of its fraction) below which its scaling is not
#: reported: where a material is (nearly) absent its ψ is undetermined, so the map shows 1.
REPORT_MIN_SHARE = 0.05


def reported_scaling(psi: np.ndarray, a: np.ndarray, valid: np.ndarray, smooth: float = DEFAULT_SMOOTH) -> np.ndarray:
    """ψ (P, h, w) as written for the analyst: 1 where the material's local share is below
    :data:`REPORT_MIN_SHARE` (its brightness cannot be told there), NaN at invalid pixels."""
    v = valid.astype(np.float64)[None]
    a0 = np.nan_to_num(a)
    share = _smooth(a0 * v, smooth) / np.maximum(_smooth(np.broadcast_to(v, a0.shape).copy(), smooth), 1e-12)
    out = np.where(share >= REPORT_MIN_SHARE, psi, 1.0)
    out[:, ~valid] = np.nan
    return out


def fractions(b: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Fractions a = (b/ψ)/Σ(b/ψ) (P, ...) summing to one; a pixel with b = 0 gets 1/P."""
    q = b / psi
    s = q.sum(axis=0, keepdims=True)
    return np.divide(q, s, out=np.full_like(q, 1.0 / q.shape[0]), where=s > 1e-12)


def split_scaled(b: np.ndarray, valid: np.ndarray, smooth: float = DEFAULT_SMOOTH,
                 iterations: int = SPLIT_ITERATIONS, psi: np.ndarray | None = None) -> tuple:
    """Split scaled abundances b (P, h, w) into fractions a and smooth scalings ψ (both
    P × h × w), alternating :func:`fit_scaling` and :func:`fractions` from ψ (default:
    start from a = b/Σb)."""
    a = fractions(b, np.ones_like(b)) if psi is None else fractions(b, psi)
    for _ in range(int(iterations)):
        psi = fit_scaling(b, a, valid, smooth)
        a = fractions(b, psi)
    if psi is None:
        psi = np.ones_like(b)
    return a, psi


def scaled_abundances(Y: np.ndarray, E: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """b = NNLS(y, E) at valid pixels (P, h, w), zero elsewhere. Y (B, h, w), E (B, P)."""
    from .active_set import nnls

    B, h, w = Y.shape
    v = valid.ravel()
    b = np.zeros((E.shape[1], h * w))
    if v.any():
        b[:, v] = nnls(Y.reshape(B, -1)[:, v], E)
    return b.reshape(-1, h, w)


def elmm_unmix(Y: np.ndarray, E: np.ndarray, valid: np.ndarray | None = None,
               smooth: float = DEFAULT_SMOOTH) -> tuple:
    """ELMM unmixing of one image tile.

    Y (B, h, w) reflectance, E (B, P), valid (h, w) bool or None. Returns (A (P, h, w)
    fractions summing to one, ψ (P, h, w) scalings, b (P, h, w) scaled abundances); invalid
    pixels get NaN in A.
    """
    Y = np.asarray(Y, np.float64)
    B, h, w = Y.shape
    v = np.isfinite(Y).all(axis=0) if valid is None else np.asarray(valid, bool) & np.isfinite(Y).all(axis=0)
    b = scaled_abundances(np.where(v[None], Y, 0.0), np.asarray(E, np.float64), v)
    a, psi = split_scaled(b, v, smooth)
    a[:, ~v] = np.nan
    return a, psi, b


def variability_test(Y: np.ndarray, E: np.ndarray, valid: np.ndarray, sigma: float) -> dict:
    """Whether the scene shows brightness variability the plain model cannot explain.

    Compares the per-pixel residual of FCLS (sum to one) with that of NNLS (free sum) on
    Y (B, h, w) at ``valid`` pixels: the mean drop, in units of the white-noise variance
    σ² (reflectance), is ≈ 1 or less under pure noise and grows with the squared brightness
    variation. Returns {"use": bool, "residual_drop_sigma2": float, "threshold": float,
    "mean_scale": mean Σb of NNLS (1 = no brightness change on average)}.
    """
    from .active_set import fcls, nnls

    B = Y.shape[0]
    Yv = Y.reshape(B, -1)[:, valid.ravel()]
    if Yv.shape[1] == 0 or not sigma > 0:
        return {"use": False, "residual_drop_sigma2": 0.0, "threshold": VARIABILITY_THRESHOLD, "mean_scale": 1.0}
    b = nnls(Yv, E)
    r_free = np.sum((Yv - E @ b) ** 2, axis=0)
    r_sum1 = np.sum((Yv - E @ fcls(Yv, E)) ** 2, axis=0)
    drop = float(np.mean(np.maximum(r_sum1 - r_free, 0.0)) / sigma ** 2)
    return {"use": bool(drop > VARIABILITY_THRESHOLD), "residual_drop_sigma2": drop,
            "threshold": VARIABILITY_THRESHOLD, "mean_scale": float(np.mean(b.sum(axis=0)))}


def solve_tile(Y, E, valid, params: dict, ctx, progress=None, cancel=None) -> tuple:
    """The registry's spatial entry point: (A (P, h, w) float32, ψ (P, h, w) float32 — the
    scaling maps the pipeline writes as ``scaling_<name>.tif`` —, info)."""
    if cancel is not None and cancel():
        raise Cancelled()
    a, psi, b = elmm_unmix(Y, E, valid, float(params["smooth"]))
    v = np.isfinite(a).all(axis=0)
    psi = reported_scaling(psi, a, v, float(params["smooth"]))
    if progress is not None:
        progress(1.0, "ELMM done")
    info = {"scaling_mean": float(np.nanmean(psi)) if v.any() else None}
    return a.astype(np.float32), psi.astype(np.float32), info
