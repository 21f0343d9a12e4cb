"""Endmember selection from large libraries and endmember extraction (numpy/scipy only).

* :func:`select_endmembers` — which spectra of a library (e.g. the 498 USGS spectra) are
  in the scene: non-negative sparse regression of a pixel sample on the whole library
  (per-pixel NNLS, which is naturally sparse: at most B non-zeros, in practice a few), then
  keep the spectra that carry a significant share of the total abundance.
* :func:`vca` — Vertex Component Analysis (Nascimento & Bioucas-Dias, IEEE TGRS 2005):
  endmembers as the purest pixels of the scene, found by repeated projections onto a
  direction orthogonal to the endmembers found so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls as _scipy_nnls

from ..errors import Cancelled, OptionError

DEFAULT_THRESHOLD = 0.02  # keep spectra carrying ≥ 2 % of the sample's total abundance
MAX_AUTO = 20  # default cap on automatically selected endmembers
PRUNE_TAU = 2.0  # residual reduction (in units of σ²·pixels) a spectrum must bring


def _rss(Y, E, cols):
    from .active_set import nnls

    R = Y - E[:, cols] @ nnls(Y, E[:, cols])
    return float(np.sum(R * R))


def _prune(Y, E, keep, tau):
    """Backward elimination: drop the candidate whose removal raises the NNLS residual least,
    while that rise is below tau·σ²·n (it explains no more than noise would)."""
    keep = list(keep)
    pruned = []
    B, n = Y.shape
    while len(keep) > 1:
        full = _rss(Y, E, keep)
        sigma2 = full / max(n * (B - len(keep)), 1)
        rises = [_rss(Y, E, [k for k in keep if k != i]) - full for i in keep]
        j = int(np.argmin(rises))
        if rises[j] >= tau * sigma2 * n:
            break
        pruned.append(keep.pop(j))
    return keep, pruned


@dataclass
class SelectionResult:
    """Selected library columns: ``indices`` (into the library, by decreasing score),
    their ``names``, a human-readable ``report`` and ``scores`` (M,) — each spectrum's share
    of the sample's total abundance (0–1)."""

    indices: np.ndarray
    names: list
    report: str
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __array__(self, dtype=None):  # np.asarray(result) gives the indices
        return np.asarray(self.indices, dtype=dtype)

    def __len__(self) -> int:
        return len(self.indices)

    def as_dict(self) -> dict:
        return {"indices": [int(i) for i in self.indices], "names": list(self.names),
                "scores": [float(self.scores[i]) for i in self.indices], "report": self.report}


def max_supported(bands: int) -> int:
    """Most endmembers ``bands`` bands can unmix (P ≤ B − 1 with the sum-to-one row)."""
    return max(int(bands) - 1, 1)


def check_endmember_count(n_endmembers: int, bands: int) -> None:
    """Raise OptionError when more endmembers are asked for than the bands support."""
    if int(n_endmembers) > max_supported(bands):
        raise OptionError(
            f"{n_endmembers} endmembers were requested but the image has only {bands} usable "
            f"bands, which support at most {max_supported(bands)}",
            "Use fewer endmembers (or automatic selection), or an image with more bands.")


def select_endmembers(Y: np.ndarray, E: np.ndarray, names=None, max_endmembers=None,
                      threshold: float = DEFAULT_THRESHOLD, n_sample: int = 2000,
                      seed: int = 0, tau: float = PRUNE_TAU, progress=None, cancel=None) -> SelectionResult:
    """Pick the library spectra present in the scene.

    Args:
        Y: (B, N) pixel spectra (a sample of the image is enough), reflectance.
        E: (B, M) library resampled to the same bands.
        names: M names (default ``"spectrum i"``).
        max_endmembers: cap on the number kept (default min(B − 1, 20)); more than B − 1
            raises OptionError.
        threshold: minimum share of the total abundance (0–1) a spectrum must carry.
        n_sample: pixels regressed (random, seeded).
        tau: pruning strength: a kept spectrum must lower the sample's residual sum of
            squares by more than ``tau``·σ²·n (σ² the per-entry noise variance estimated
            from the fit), else it only fits noise and is dropped (backward elimination).

    Returns:
        :class:`SelectionResult`; at least one spectrum is always kept.
    """
    Y = np.asarray(Y, np.float64)
    E = np.asarray(E, np.float64)
    if Y.ndim != 2 or E.ndim != 2 or Y.shape[0] != E.shape[0]:
        raise OptionError(f"Pixels {Y.shape} and library {E.shape} do not share their bands",
                          "Resample the library to the image bands first.")
    B, M = E.shape
    names = [f"spectrum {i + 1}" for i in range(M)] if names is None else list(names)
    if len(names) != M:
        raise OptionError(f"{len(names)} names for {M} spectra", "Give one name per spectrum.")
    if max_endmembers is None:
        cap = min(max_supported(B), MAX_AUTO, M)
    else:
        check_endmember_count(int(max_endmembers), B)
        if int(max_endmembers) < 1:
            raise OptionError("max_endmembers must be at least 1", "Give a positive number.")
        cap = min(int(max_endmembers), M)
    if not 0 <= threshold < 1:
        raise OptionError(f"Selection threshold {threshold} is outside [0, 1)",
                          "Use a small share such as 0.02.")
    Y = Y[:, np.isfinite(Y).all(axis=0)]
    if Y.shape[1] == 0:
        raise OptionError("No valid pixels to select endmembers from",
                          "Check the image's nodata value and mask.")
    rng = np.random.default_rng(seed)
    if Y.shape[1] > n_sample:
        Y = Y[:, np.sort(rng.choice(Y.shape[1], n_sample, replace=False))]
    # columns scaled to unit norm so bright and dark spectra compete fairly
    norms = np.linalg.norm(E, axis=0)
    usable = norms > 0
    En = np.where(usable, E / np.where(usable, norms, 1.0), 0.0)
    A = np.zeros((M, Y.shape[1]))
    n = Y.shape[1]
    for k in range(n):
        if k % 25 == 0:  # a large library takes seconds per hundred pixels: stay responsive
            if cancel is not None and cancel():
                raise Cancelled()
            if progress is not None:
                progress(k / n, f"selecting endmembers: pixel {k} of {n} against {M} spectra")
        A[:, k] = _scipy_nnls(En, Y[:, k])[0]
    A *= np.where(usable, 1.0 / np.where(usable, norms, 1.0), 0.0)[:, None]  # back to abundances
    tot = A.sum(axis=0, keepdims=True)
    share = A / np.where(tot > 0, tot, 1.0)
    scores = share.mean(axis=1)
    order = np.argsort(-scores, kind="stable")
    keep = [int(i) for i in order[:cap] if scores[i] >= threshold] or [int(order[0])]
    keep, pruned = _prune(Y, E, keep, tau)
    idx = np.array(keep, dtype=int)
    lines = [f"Selected {idx.size} of {M} library spectra from {Y.shape[1]} sampled pixels "
             f"(threshold {threshold:.0%} of the abundance, at most {cap}):"]
    lines += [f"  {names[i]}: {scores[i]:.1%}" for i in idx]
    if pruned:
        lines.append("Dropped as explaining only noise: " + ", ".join(names[i] for i in pruned))
    dropped = [int(i) for i in order[: cap + 5] if int(i) not in keep and i not in pruned and scores[i] > 0]
    if dropped:
        lines.append("Next candidates (not kept): " + ", ".join(f"{names[i]} {scores[i]:.1%}" for i in dropped[:5]))
    return SelectionResult(idx, [names[i] for i in idx], "\n".join(lines), scores)


def vca(Y: np.ndarray, n_endmembers: int, seed: int = 0, snr_db: float | None = None) -> tuple:
    """Vertex Component Analysis.

    Args:
        Y: (B, N) pixel spectra (reflectance), N ≥ n_endmembers.
        n_endmembers: P, at most B.
        seed: seed of the random projection directions.
        snr_db: known SNR (dB); None estimates it as in the paper.

    Returns:
        (E (B, P) the spectra of the selected pixels, pixel_indices (P,) into Y's columns).
    """
    Y = np.asarray(Y, np.float64)
    B, N = Y.shape
    P = int(n_endmembers)
    if P < 1 or P > B:
        raise OptionError(f"VCA cannot find {P} endmembers in {B} bands",
                          f"Ask for between 1 and {B} endmembers.")
    if N < P:
        raise OptionError(f"VCA needs at least {P} pixels, got {N}", "Use a larger image area.")
    rng = np.random.default_rng(seed)
    mean = Y.mean(axis=1, keepdims=True)
    if snr_db is None:  # paper's estimate from the signal subspace power
        Ud = np.linalg.svd((Y - mean) @ (Y - mean).T / N)[0][:, :P]
        Pr = np.sum(Y * Y) / N
        xp = Ud.T @ (Y - mean)
        Pp = np.sum(xp * xp) / N + float(np.sum(mean * mean))
        num = Pp - P / B * Pr
        snr_db = 10 * np.log10(max(num, 1e-300) / max(Pr - Pp, 1e-300)) if Pr > Pp else 100.0
    snr_th = 15 + 10 * np.log10(P)
    if snr_db > snr_th:
        # projective projection onto the P-dim signal subspace (no mean removal)
        Ud = np.linalg.svd(Y @ Y.T / N)[0][:, :P]
        X = Ud.T @ Y
        u = X.mean(axis=1, keepdims=True)
        denom = np.sum(X * u, axis=0, keepdims=True)
        Yp = X / np.where(np.abs(denom) > 1e-300, denom, 1e-300)
    else:
        # PCA to P−1 dims, plus a constant coordinate so the simplex is not degenerate
        Ud = np.linalg.svd((Y - mean) @ (Y - mean).T / N)[0][:, : P - 1]
        X = Ud.T @ (Y - mean)
        c = np.sqrt(np.max(np.sum(X * X, axis=0))) if P > 1 else 1.0
        Yp = np.vstack([X, np.full((1, N), c)])
    Amat = np.zeros((P, P))
    Amat[-1, 0] = 1.0
    idx = np.zeros(P, dtype=int)
    for i in range(P):
        w = rng.standard_normal(P)
        f = w - Amat @ (np.linalg.pinv(Amat) @ w)  # component orthogonal to found vertices
        f /= max(np.linalg.norm(f), 1e-300)
        v = f @ Yp
        idx[i] = int(np.argmax(np.abs(v)))
        Amat[:, i] = Yp[:, idx[i]]
    return Y[:, idx].copy(), idx
