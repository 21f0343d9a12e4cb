"""How many endmembers: HySime signal-subspace identification (numpy only).

Bioucas-Dias & Nascimento, "Hyperspectral subspace identification", IEEE TGRS 46(8), 2008.
Two steps, both on ``Y`` (B bands × N pixels, reflectance):

1. **Noise** (:func:`estimate_noise`): each band is regressed on all the other bands over
   the pixels; what the other bands cannot predict is that band's noise. All B regressions
   come from one inverse of the band correlation matrix R = Y·Yᵀ: the residual of band i
   is ``(R⁻¹ Y)_i / (R⁻¹)_ii`` (the regression coefficients of band i on the rest are
   −(R⁻¹)_ji / (R⁻¹)_ii). Noise correlation ``Rn = ε·εᵀ / (N − B + 1)``.
2. **Subspace** (:func:`hysime`): the signal ``X = Y − ε`` has correlation ``Rx``; its
   eigenvectors eᵢ are the candidate signal directions. Keeping eᵢ lowers the mean squared
   error of projecting the data onto the subspace by its signal power ``eᵢᵀ Ry eᵢ − eᵢᵀ Rn eᵢ``
   and costs its noise power ``eᵢᵀ Rn eᵢ``; HySime keeps exactly the directions with
   ``eᵢᵀ Ry eᵢ > 2·eᵢᵀ Rn eᵢ`` (the minimiser of the MSE over subsets of eigenvectors).

**Number of endmembers.** The data are *not* centred: with P endmembers the noise-free
pixels ``E·a`` span the P-dimensional linear subspace spanned by the endmember columns
(when the abundances sum to one they lie on a (P−1)-dimensional affine simplex inside it,
and the mean pixel is the extra direction). So the subspace dimension found on the
non-centred data *is* P, the number of endmembers, and ``n_endmembers`` is returned as is.
(On mean-removed data the same procedure would give P − 1.)

Two documented departures from the paper (see :func:`hysime`): the decision is
cross-fitted on two halves of the pixels, and each band's regression leaves out its
nearest neighbours (spectrally correlated noise).

Deterministic: at most ``max_pixels`` pixels are used, picked with a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError

MAX_PIXELS = 50_000
EXCLUDE_ADJACENT = 2  # neighbours left out of each band's regression (see hysime)


@dataclass
class HySimeResult:
    """``n_endmembers`` the estimated number of endmembers (= signal-subspace dimension of
    the non-centred data, see the module docstring); ``noise_sigma`` (B,) noise standard
    deviation per band (reflectance units); ``eigenvalues`` (B,) of the signal correlation
    matrix, decreasing, with ``eigenvectors`` (B, B) as columns; ``signal_power`` and
    ``noise_power`` (B,) the data and noise power along each eigenvector; ``report`` one
    human-readable paragraph."""

    n_endmembers: int
    noise_sigma: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    signal_power: np.ndarray
    noise_power: np.ndarray
    report: str

    @property
    def sigma(self) -> float:
        """One noise σ: the RMS of the per-band σ."""
        return float(np.sqrt(np.mean(np.square(self.noise_sigma))))

    @property
    def subspace(self) -> np.ndarray:
        """(B, n_endmembers) orthonormal basis of the signal subspace."""
        return self.eigenvectors[:, : self.n_endmembers]

    def as_dict(self) -> dict:
        return {"n_endmembers": int(self.n_endmembers), "noise_sigma": float(self.sigma),
                "noise_sigma_per_band": [float(s) for s in self.noise_sigma], "report": self.report}


def _prepare(Y, max_pixels: int, seed: int) -> np.ndarray:
    Y = np.asarray(Y, np.float64)
    if Y.ndim == 3:
        Y = Y.reshape(Y.shape[0], -1)
    if Y.ndim != 2:
        raise OptionError(f"HySime needs pixels as bands × pixels, got an array of shape {Y.shape}",
                          "Pass a (B, N) or (B, H, W) array.")
    Y = Y[:, np.isfinite(Y).all(axis=0)]
    B, N = Y.shape
    if N < B + 1:
        raise OptionError(f"HySime needs more valid pixels ({N}) than bands ({B})",
                          "Use a larger image area, or fewer bands.")
    if N > max_pixels:
        rng = np.random.default_rng(seed)
        Y = Y[:, np.sort(rng.choice(N, int(max_pixels), replace=False))]
    return Y


def _regression_noise(Y: np.ndarray, exclude: int = 0) -> np.ndarray:
    """Residual of every band regressed on the other bands, leaving out the ``exclude``
    nearest bands on each side (in the given band order).

    With Q = R⁻¹ (R = Y·Yᵀ) the residual of a block U of bands regressed on all the
    others is ``(Q_UU)⁻¹ (Q·Y)_U``; band i's residual is the first row of that with
    U = {i} ∪ its excluded neighbours. So all B regressions cost one B × B inverse,
    one B × B × N product and B tiny solves.
    """
    B, N = Y.shape
    R = Y @ Y.T
    # a tiny ridge keeps R invertible when bands are (nearly) collinear or constant;
    # it is far below any band's noise power
    R[np.diag_indices(B)] += 1e-10 * max(float(np.trace(R)) / B, 1e-300)
    Q = np.linalg.inv(R)
    Q = 0.5 * (Q + Q.T)
    QY = Q @ Y
    k = max(int(exclude), 0)
    if k == 0:
        return QY / np.diag(Q)[:, None]
    out = np.empty_like(Y)
    for i in range(B):
        U = [i] + [j for j in range(max(i - k, 0), min(i + k + 1, B)) if j != i]
        row = np.linalg.solve(Q[np.ix_(U, U)], np.eye(len(U))[:, 0])  # (Q_UU)⁻¹ is symmetric
        out[i] = row @ QY[U]
    return out


def estimate_noise(Y: np.ndarray, max_pixels: int = MAX_PIXELS, seed: int = 0,
                   exclude_adjacent: int = 0) -> tuple:
    """Noise of every band by multiple regression on the other bands.

    Args:
        Y: (B, N) (or (B, H, W)) reflectance; non-finite pixels are ignored.
        max_pixels: pixels used at most (random, seeded).
        exclude_adjacent: leave the nearest bands on each side out of each band's regression
            (0: all other bands, as in the paper; see :func:`hysime`).

    Returns:
        ``(noise (B, N'), Rn (B, B))``: the noise estimate of the N' pixels used (all valid
        pixels when there are at most ``max_pixels``) and its correlation matrix
        ``noise·noiseᵀ / (N' − B + 1)`` (each band's residual has lost B − 1 degrees of
        freedom to the regression: dividing by N' would underestimate the noise by a
        factor (N' − B + 1)/N', 5 % with 4096 pixels and 200 bands).
    """
    Y = _prepare(Y, max_pixels, seed)
    noise = _regression_noise(Y, exclude_adjacent)
    B, N = Y.shape
    return noise, noise @ noise.T / max(N - B + 1, 1)


def _eig(X: np.ndarray) -> tuple:
    Rx = X @ X.T / X.shape[1]
    w, V = np.linalg.eigh(0.5 * (Rx + Rx.T))
    order = np.argsort(-w, kind="stable")
    w, V = w[order], V[:, order]
    return w, V * np.where(V.sum(axis=0) < 0, -1.0, 1.0)  # a fixed sign per eigenvector


def _powers(V: np.ndarray, Y: np.ndarray, noise: np.ndarray) -> tuple:
    """Data and noise power (unbiased, see :func:`estimate_noise`) along the columns of V."""
    B, N = Y.shape
    py = np.sum(np.square(V.T @ Y), axis=1) / N
    pn = np.sum(np.square(V.T @ noise), axis=1) / max(N - B + 1, 1)
    return py, pn


def hysime(Y: np.ndarray, max_pixels: int = MAX_PIXELS, seed: int = 0, max_endmembers=None,
           exclude_adjacent: int = EXCLUDE_ADJACENT) -> HySimeResult:
    """Number of endmembers and noise level of a scene (HySime, see the module docstring).

    The keep/drop decision is cross-fitted: the eigenvectors come from one half of the
    pixels and the data and noise powers along them from the other half (and vice versa,
    powers averaged). Evaluated on the same pixels, the regression noise estimate is
    smallest exactly along the directions where that sample's noise happens to be largest
    (a least-squares residual is anti-correlated with the sample's own noise), so with
    fewer than ~30 pixels per band HySime would keep pure-noise directions (e.g. 8–12
    instead of 3 endmembers on 64×64 pixels × 200 bands); on independent halves it does not.

    ``exclude_adjacent`` (default 2) leaves each band's 2 nearest neighbours on either side
    out of its regression. The paper regresses on all other bands, which assumes noise
    uncorrelated between bands; real sensors' noise is correlated between neighbouring
    bands (resampling, smoothing), which the neighbours then "predict" as signal, so the
    noise is underestimated and the dimension inflated (Samson: 72 endmembers with 0,
    12 with 2; Jasper Ridge 19 → 15). A low-rank signal is still predicted from the
    remaining bands, so white-noise scenes are unaffected (synthetic σ within 3 %).

    Limit (by design of the MSE criterion): a signal direction carrying less power than
    the noise along it is dropped — with many similar endmembers at low SNR the count can
    be below the number of materials (e.g. 8 for 9 smooth synthetic spectra at 30 dB whose
    9th direction holds 0.08 σ²).

    Args:
        Y: (B, N) or (B, H, W) reflectance.
        max_pixels: pixels used at most (random, seeded: the result is deterministic).
        max_endmembers: optional cap on the returned number (default: B − 1, the most
            the bands can unmix with the sum-to-one constraint).

    Returns:
        :class:`HySimeResult` (eigen-values/-vectors and powers from all the pixels used).
    """
    Y = _prepare(Y, max_pixels, seed)
    B, N = Y.shape
    noise = _regression_noise(Y, exclude_adjacent)
    w, V = _eig(Y - noise)
    py_all, pn_all = _powers(V, Y, noise)
    if N >= 2 * (B + 2):
        perm = np.random.default_rng(seed + 1).permutation(N)
        halves = [np.sort(perm[: N // 2]), np.sort(perm[N // 2:])]
        parts = []
        for h in halves:
            Yh = Y[:, h]
            nh = _regression_noise(Yh, exclude_adjacent)
            parts.append((Yh, nh, _eig(Yh - nh)[1]))
        (Ya, na, Va), (Yb, nb, Vb) = parts
        pya, pna = _powers(Va, Yb, nb)
        pyb, pnb = _powers(Vb, Ya, na)
        py, pn = 0.5 * (pya + pyb), 0.5 * (pna + pnb)
    else:  # too few pixels to split: the plain (in-sample) decision
        py, pn = py_all, pn_all
    keep = py > 2.0 * pn  # MSE-minimising subset: signal power above the noise power
    k = int(keep.sum())
    cap = max(B - 1, 1) if max_endmembers is None else max(int(max_endmembers), 1)
    k_capped = min(max(k, 1), cap)
    sigma_b = np.sqrt(np.maximum(np.sum(noise * noise, axis=1) / max(N - B + 1, 1), 0.0))
    sig = float(np.sqrt(np.mean(sigma_b ** 2)))
    mean_refl = float(np.sqrt(np.mean(Y * Y)))
    snr = 10 * np.log10(mean_refl ** 2 / sig ** 2) if sig > 0 else float("inf")
    report = (f"HySime: signal subspace of dimension {k} in {B} bands from {N} pixels, so "
              f"{k_capped} endmember{'s' if k_capped != 1 else ''}"
              + (f" (capped from {k})" if k_capped != k else "")
              + f"; noise σ {sig:.3g} (reflectance, RMS over bands; per band "
              f"{float(sigma_b.min()):.3g}–{float(sigma_b.max()):.3g}), SNR ≈ {snr:.1f} dB.")
    return HySimeResult(k_capped, sigma_b, w, V, py_all, pn_all, report)
