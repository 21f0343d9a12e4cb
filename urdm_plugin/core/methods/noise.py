"""Noise level estimation from the scene alone (no truth), numpy only.

``estimate_noise_sigma`` returns one σ (reflectance units): the standard deviation of
white noise per band and pixel that best explains the data.

* With endmembers and an image grid (``Y`` B × h × w, ``E`` given): the FCLS residual
  ``R = Y − E·Â`` holds the noise minus its part inside the (P−1)-dimensional simplex
  plane, plus model mismatch. Mismatch (endmember variability) varies slowly in space,
  the noise does not, so σ comes from a robust MAD of horizontal/vertical differences of
  R (a difference of two independent noises has variance 2σ²), corrected by B/(B−P+1) for
  the noise the fit absorbed.
* With endmembers but no grid (``Y`` B × N): the residual RMS corrected for the
  degrees of freedom, σ² = ‖R‖² / (N·(B − P + 1)).
* Without endmembers: HySime-style regression (Bioucas-Dias & Nascimento 2008): each
  band is predicted from all other bands over a pixel sample; the prediction error of
  band b is 1/(R⁻¹)_bb for the band correlation matrix R. σ is the RMS over bands.

``estimate_band_sigma`` returns one σ per band from the same FCLS-residual differences;
the weight selection (:mod:`core.methods.weight_selection`) uses it, so band-dependent noise is
not mistaken for white noise.
"""

from __future__ import annotations

import numpy as np

_MAD = 1.4826  # MAD → standard deviation for a Gaussian


def _robust_std(x: np.ndarray, overwrite: bool = False) -> float:
    """MAD-based σ of the finite values of ``x``; with ``overwrite`` ``x`` (a float array the
    caller gives up) is used as scratch space, so no copy of a large array is made."""
    if not np.isfinite(x).all():
        x = x[np.isfinite(x)]
        overwrite = True
    if x.size == 0:
        return 0.0
    if not overwrite:
        return float(_MAD * np.median(np.abs(x - np.median(x))))
    x = x.ravel()
    med = np.median(x, overwrite_input=True)
    np.subtract(x, med, out=x)
    np.abs(x, out=x)
    return float(_MAD * np.median(x, overwrite_input=True))


#: Pixels per FCLS call of the residual (bounded temporaries on large windows).
_RESIDUAL_CHUNK = 8192


def _fcls_residual(Yf: np.ndarray, E: np.ndarray, vf: np.ndarray) -> np.ndarray:
    """(B, N) float64: Y − E·Â at the valid pixels ``vf``, NaN elsewhere, in pixel chunks."""
    from .active_set import fcls

    R = np.full_like(Yf, np.nan)
    idx = np.flatnonzero(vf)
    for s in range(0, idx.size, _RESIDUAL_CHUNK):
        cols = idx[s:s + _RESIDUAL_CHUNK]
        Ys = Yf[:, cols]
        R[:, cols] = Ys - E @ fcls(Ys, E)
    return R


def _grid_differences(R: np.ndarray) -> np.ndarray:
    """Horizontal then vertical differences of ``R`` (B × h × w), flat, in one new array."""
    B, h, w = R.shape
    n1, n2 = B * h * (w - 1), B * (h - 1) * w
    d = np.empty(n1 + n2, dtype=R.dtype)
    np.subtract(R[:, :, 1:], R[:, :, :-1], out=d[:n1].reshape(B, h, w - 1))
    np.subtract(R[:, 1:, :], R[:, :-1, :], out=d[n1:].reshape(B, h - 1, w))
    return d


def estimate_noise_sigma(Y: np.ndarray, E: np.ndarray | None = None,
                         valid: np.ndarray | None = None, max_pixels: int = 20000,
                         seed: int = 0) -> float:
    """σ of the white noise in ``Y`` ((B × h × w) or (B × N)), reflectance units.

    ``valid`` (h × w or N, bool) excludes nodata pixels. See the module docstring.
    """
    Y = np.asarray(Y, np.float64)
    B = Y.shape[0]
    rng = np.random.default_rng(seed)
    if E is not None:
        E = np.asarray(E, np.float64)
        P = E.shape[1]
        Yf = Y.reshape(B, -1)
        vf = np.ones(Yf.shape[1], bool) if valid is None else np.asarray(valid, bool).ravel().copy()
        vf &= np.isfinite(Yf).all(axis=0)
        R = _fcls_residual(Yf, E, vf)  # a scene-wide window: few large temporaries at once
        dof = B / max(B - P + 1, 1)
        if Y.ndim == 3 and min(Y.shape[1:]) >= 2:
            d = _grid_differences(R.reshape(Y.shape))
            del R
            return float(_robust_std(d, overwrite=True) / np.sqrt(2.0) * np.sqrt(dof))
        Rv = R[:, vf]
        return float(np.sqrt(np.sum(Rv * Rv) / max(Rv.shape[1] * (B - P + 1), 1)))
    Yf = Y.reshape(B, -1)
    if valid is not None:
        Yf = Yf[:, np.asarray(valid, bool).ravel()]
    Yf = Yf[:, np.isfinite(Yf).all(axis=0)]
    N = Yf.shape[1]
    if N > max_pixels:
        Yf = Yf[:, rng.choice(N, max_pixels, replace=False)]
        N = max_pixels
    if N <= B + 1:
        return float(_robust_std(np.diff(Yf, axis=0).ravel()) / np.sqrt(2.0))
    Rm = Yf @ Yf.T / N
    Rm += np.eye(B) * 1e-12 * np.trace(Rm) / B
    var = 1.0 / np.diag(np.linalg.inv(Rm))
    var *= N / (N - B + 1)  # unbiased residual variance of a regression on B−1 bands
    return float(np.sqrt(np.mean(var)))


def estimate_band_sigma(Y: np.ndarray, E: np.ndarray, valid: np.ndarray | None = None,
                        A: np.ndarray | None = None) -> np.ndarray:
    """Noise σ of every band (B,), reflectance units, from an image grid ``Y`` (B × h × w).

    Robust MAD of horizontal and vertical differences of the FCLS residual in each band
    (see the module docstring), with the same B/(B−P+1) correction for the noise the fit
    absorbed. ``A`` (P × h × w): the FCLS abundances when already known. Needs h, w ≥ 2.
    """
    Y = np.asarray(Y, np.float64)
    E = np.asarray(E, np.float64)
    B, h, w = Y.shape
    P = E.shape[1]
    Yf = Y.reshape(B, -1)
    vf = np.ones(h * w, bool) if valid is None else np.asarray(valid, bool).ravel().copy()
    vf &= np.isfinite(Yf).all(axis=0)
    if A is None:
        R = _fcls_residual(Yf, E, vf)  # one (B, N) array; the rest is per band
    else:
        R = np.full_like(Yf, np.nan)
        R[:, vf] = Yf[:, vf] - E @ np.asarray(A, np.float64).reshape(P, -1)[:, vf]
    R = R.reshape(B, h, w)
    # band by band: the differences of one band at a time (not a (B, 2N) array and its copies);
    # an invalid pixel is NaN in every band, so the same differences are kept in each
    n1 = h * (w - 1)
    buf = np.empty(n1 + (h - 1) * w)
    keep = None
    sig = np.zeros(B)
    for b in range(B):
        np.subtract(R[b, :, 1:], R[b, :, :-1], out=buf[:n1].reshape(h, w - 1))
        np.subtract(R[b, 1:, :], R[b, :-1, :], out=buf[n1:].reshape(h - 1, w))
        if keep is None:
            keep = np.isfinite(buf)
            if not keep.any():
                return np.zeros(B)
        sig[b] = _robust_std(buf if keep.all() else buf[keep], overwrite=True)
    return sig / np.sqrt(2.0) * np.sqrt(B / max(B - P + 1, 1))
