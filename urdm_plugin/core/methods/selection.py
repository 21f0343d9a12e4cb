"""Endmember selection from large libraries and endmember extraction (numpy/scipy only).

* :func:`select_endmembers` — which spectra of a library (e.g. the 498 USGS spectra) are
  in the scene: a collaborative (row-)sparse non-negative regression of a pixel sample on
  the whole library — greedy simultaneous selection (SOMP with non-negative refits): one
  spectrum at a time, the one that explains the most residual energy *over all sampled
  pixels together* joins, then every pixel is refitted by NNLS on the chosen set. All
  pixels share one small set of materials, so a scene gets few consistent spectra instead
  of a different handful of correlated look-alikes per pixel. It stops when a newcomer no
  longer lowers the residual by more than noise would (HySime's noise estimate) and by a
  material share of it, then the plausibility of the kept set is checked (``flags``).
* :func:`vca` — Vertex Component Analysis (Nascimento & Bioucas-Dias, IEEE TGRS 2005):
  endmembers as the purest pixels of the scene, found by repeated projections onto a
  direction orthogonal to the endmembers found so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import Cancelled, OptionError

DEFAULT_THRESHOLD = 0.02  # keep spectra carrying ≥ 2 % of the sample's total abundance
MAX_AUTO = 20  # default cap on automatically selected endmembers
PRUNE_TAU = 2.0  # residual reduction (in units of σ²·pixels) a spectrum must bring
N_SAMPLE = 2000  # pixels one selection regresses (a random subset of the sample given)


SHORTLIST = 16  # candidates (by residual correlation) refitted exactly at each step
REL_GAIN = 0.05  # a newcomer must also remove ≥ 5 % of the residual energy left
COLLINEAR_RAD = 0.05  # two kept spectra closer than this (2.9°) are flagged as look-alikes
NOISE_LEVEL = 0.5  # flag a kept spectrum whose removal raises the residual < this × the noise energy


def _rss(Y, E, cols):
    from .active_set import nnls

    R = Y - E[:, cols] @ nnls(Y, E[:, cols])
    return float(np.sum(R * R))


def _prune(Y, E, keep, tau, sigma2=None):
    """Backward elimination: drop the candidate whose removal raises the NNLS residual least,
    while that rise is below tau·σ²·n (it explains no more than noise would). σ² is the
    per-entry noise variance (estimated from the fit when not given)."""
    keep = list(keep)
    pruned = []
    B, n = Y.shape
    while len(keep) > 1:
        full = _rss(Y, E, keep)
        s2 = full / max(n * (B - len(keep)), 1) if sigma2 is None else sigma2
        rises = [_rss(Y, E, [k for k in keep if k != i]) - full for i in keep]
        j = int(np.argmin(rises))
        if rises[j] >= tau * s2 * n:
            break
        pruned.append(keep.pop(j))
    return keep, pruned


def _noise_variance(Y: np.ndarray, seed: int):
    """Per-entry noise variance of the sample from HySime (None when the sample is too small)."""
    from .hysime import hysime

    if Y.shape[1] < Y.shape[0] + 2:
        return None
    try:
        return float(np.mean(np.square(hysime(Y, seed=seed).noise_sigma)))
    except (np.linalg.LinAlgError, OptionError):
        return None


@dataclass
class SelectionResult:
    """Selected library columns: ``indices`` (into the library, by decreasing score),
    their ``names``, a human-readable ``report``, ``scores`` (M,) — each spectrum's share
    of the sample's total abundance (0–1; 0 for the spectra not kept) — and ``flags``: one
    line per implausible kept spectrum (contribution at the noise level, or near-collinear
    with another kept spectrum), also listed in the report."""

    indices: np.ndarray
    names: list
    report: str
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    flags: list = field(default_factory=list)
    noise_sigma: float | None = None

    def __array__(self, dtype=None):  # np.asarray(result) gives the indices
        return np.asarray(self.indices, dtype=dtype)

    def __len__(self) -> int:
        return len(self.indices)

    def as_dict(self) -> dict:
        return {"indices": [int(i) for i in self.indices], "names": list(self.names),
                "scores": [float(self.scores[i]) for i in self.indices], "report": self.report,
                "flags": list(self.flags), "noise_sigma": self.noise_sigma}


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
                      threshold: float = DEFAULT_THRESHOLD, n_sample: int = N_SAMPLE,
                      seed: int = 0, tau: float = PRUNE_TAU, progress=None, cancel=None,
                      noise_variance: float | None = None) -> SelectionResult:
    """Pick the library spectra present in the scene (collaborative sparse regression).

    Greedy simultaneous non-negative selection on a pixel sample: with the library columns
    scaled to unit norm, the ``SHORTLIST`` candidates with the largest ``Σ_k max(eⱼ·r_k, 0)²``
    over the sampled pixels' residuals r_k (the energy one non-negative step along them
    removes, summed over all pixels) are each refitted exactly (NNLS of all pixels on the
    set plus the candidate) and the one leaving the smallest residual joins the set —
    orthogonal least squares, which unlike plain simultaneous OMP does not let a blend of
    look-alikes crowd out a true material that correlates less with the first residuals. A newcomer
    is accepted only if it lowers the sample's residual sum of squares by more than
    ``tau``·σ²·n (σ² HySime's per-entry noise variance: more than noise would) *and* by
    ``REL_GAIN`` (5 %) of the residual left, and it carries at least ``threshold`` of the
    total abundance; selection stops at the first refused newcomer (or at min(B − 1, 20)
    spectra); when more than ``max_endmembers`` remain, the most abundant are kept. Then
    backward elimination drops a kept spectrum whose removal raises the residual by less
    than ``tau``·σ²·n, and the plausibility check flags kept spectra whose unique contribution (the rise of
    the residual per pixel when it is left out and the others refitted) is below
    ``NOISE_LEVEL`` × the per-pixel noise energy B·σ², or lie within ``COLLINEAR_RAD`` of
    another kept spectrum.

    Args:
        Y: (B, N) pixel spectra (a sample of the image is enough), reflectance.
        E: (B, M) library resampled to the same bands.
        names: M names (default ``"spectrum i"``).
        max_endmembers: cap on the number kept (default min(B − 1, 20)); more than B − 1
            raises OptionError.
        threshold: minimum share of the total abundance (0–1) a spectrum must carry.
        n_sample: pixels regressed (random, seeded).
        tau: noise multiple a spectrum's residual reduction must exceed.
        progress(fraction, message), cancel() → bool: polled at every step.
        noise_variance: the per-entry noise variance σ² when already known (e.g. from an
            earlier selection on the same sample: ``result.noise_sigma ** 2``); None
            estimates it with HySime.

    Returns:
        :class:`SelectionResult`; at least one spectrum is always kept.
    """
    from .active_set import nnls

    Y, E, names, cap = _checked_inputs(Y, E, names, max_endmembers, threshold)
    B, M = E.shape

    def poll(frac, msg):
        if cancel is not None and cancel():
            raise Cancelled()
        if progress is not None:
            progress(frac, msg)

    poll(0.0, f"selecting endmembers: noise level of {Y.shape[1]} pixels")
    sigma2 = _noise_variance(Y, seed) if noise_variance is None else float(noise_variance)
    rng = np.random.default_rng(seed)
    if Y.shape[1] > n_sample:
        Y = Y[:, np.sort(rng.choice(Y.shape[1], n_sample, replace=False))]
    n = Y.shape[1]
    noise_rss = None if sigma2 is None else tau * sigma2 * n
    keep, refused = _grow_selection(Y, E, cap, threshold, noise_rss, poll)
    keep, pruned = _prune(Y, E, keep, tau, sigma2)
    keep, capped_out = _most_abundant(Y, E, keep, cap)
    A = nnls(Y, E[:, keep])
    tot = A.sum(axis=0, keepdims=True)
    share = (A / np.where(tot > 0, tot, 1.0)).mean(axis=1)
    scores = np.zeros(M)
    scores[keep] = share
    order = np.argsort(-scores[keep], kind="stable")
    idx = np.array([keep[i] for i in order], dtype=int)
    poll(0.95, "selecting endmembers: plausibility check")
    flags = _plausibility(Y, E, idx, names, sigma2)
    sig = None if sigma2 is None else float(np.sqrt(sigma2))
    lines = [f"Selected {idx.size} of {M} library spectra from {n} sampled pixels "
             f"(collaborative sparse regression; threshold {threshold:.0%} of the abundance, at most {cap}"
             + ("" if sig is None else f"; noise σ {sig:.3g} from HySime") + "):"]
    lines += [f"  {names[i]}: {scores[i]:.1%}" for i in idx]
    lines += _report_tail(names, pruned, capped_out, cap, refused, flags)
    return SelectionResult(idx, [names[i] for i in idx], "\n".join(lines), scores, flags, sig)


def _checked_inputs(Y, E, names, max_endmembers, threshold) -> tuple:
    """(Y (B, N) float64 with only finite pixels, E (B, M) float64, M names, the cap on the
    number kept); OptionError when the shapes, names, cap or threshold do not fit."""
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
    return Y, E, names, cap


def _grow_selection(Y, E, cap: int, threshold: float, noise_rss, poll) -> tuple:
    """The greedy forward search (orthogonal least squares on the shortlist, see
    :func:`select_endmembers`): (kept column indices in the order they joined, the refused
    newcomer as (index, relative residual drop, abundance share) or None)."""
    from .active_set import nnls

    B, M = E.shape
    # columns scaled to unit norm so bright and dark spectra compete fairly
    norms = np.linalg.norm(E, axis=0)
    usable = norms > 0
    En = np.where(usable, E / np.where(usable, norms, 1.0), 0.0)
    keep, refused = [], None
    Rres = Y.copy()
    rss = float(np.sum(Rres * Rres))
    limit = min(max_supported(B), MAX_AUTO, M)  # the search runs freely; the cap applies after it
    while len(keep) < max(limit, cap):
        poll(0.1 + 0.8 * len(keep) / max(limit, cap), f"selecting endmembers: {len(keep)} chosen from {M} spectra")
        C = np.maximum(En.T @ Rres, 0.0)
        gain = np.einsum("mk,mk->m", C, C)
        gain[~usable] = -1.0
        gain[keep] = -1.0
        short = [int(c) for c in np.argsort(-gain, kind="stable")[:SHORTLIST] if gain[c] > 0]
        if not short:
            break
        best = None
        for c in short:  # exact refit of each shortlisted candidate (orthogonal least squares)
            A_c = nnls(Y, E[:, keep + [c]])
            R_c = Y - E[:, keep + [c]] @ A_c
            rss_c = float(np.sum(R_c * R_c))
            if best is None or rss_c < best[0]:
                best = (rss_c, c, A_c, R_c)
        rss_new, j, A_new, R_new = best
        tot = A_new.sum(axis=0, keepdims=True)
        share_j = float((A_new[-1:] / np.where(tot > 0, tot, 1.0)).mean())
        drop = rss - rss_new
        enough = drop > REL_GAIN * rss and (noise_rss is None or drop > noise_rss) and share_j >= threshold
        if keep and not enough:
            refused = (j, drop / max(rss, 1e-300), share_j)
            break
        keep.append(j)
        Rres, rss = R_new, rss_new
    return keep, refused


def _most_abundant(Y, E, keep: list, cap: int) -> tuple:
    """(the ``cap`` most abundant of ``keep``, the ones left out) when more than ``cap``
    remain; else (keep, [])."""
    from .active_set import nnls

    if len(keep) <= cap:
        return keep, []
    A = nnls(Y, E[:, keep])
    tot = A.sum(axis=0, keepdims=True)
    sh = (A / np.where(tot > 0, tot, 1.0)).mean(axis=1)
    top = np.argsort(-sh, kind="stable")
    return [keep[i] for i in top[:cap]], [keep[i] for i in top[cap:]]


def _report_tail(names, pruned, capped_out, cap, refused, flags) -> list:
    """The report's lines after the kept spectra: pruned, capped, the stop, implausible ones."""
    lines = []
    if pruned:
        lines.append("Dropped as explaining only noise: " + ", ".join(names[i] for i in pruned))
    if capped_out:
        lines.append(f"Left out by the cap of {cap}: " + ", ".join(names[i] for i in capped_out))
    if refused is not None:
        j, rel, sh = refused
        lines.append(f"Stopped at {names[j]} (would remove {rel:.1%} of the residual, {sh:.1%} of the abundance)")
    if flags:
        lines.append("Implausible (check before use):")
        lines += [f"  {f}" for f in flags]
    return lines


def _plausibility(Y, E, idx, names, sigma2) -> list:
    """Flags for kept spectra at the noise level or near-collinear with another kept one."""
    flags = []
    B, n = Y.shape
    idx = [int(i) for i in idx]
    if sigma2 is not None and len(idx) > 1:
        full = _rss(Y, E, idx)
        for i in idx:  # what the fit loses without it (its unique contribution), per pixel
            rise = (_rss(Y, E, [k for k in idx if k != i]) - full) / n
            if rise < NOISE_LEVEL * B * sigma2:
                flags.append(f"{names[i]}: without it the residual rises by only {rise / (B * sigma2):.2f}× "
                             f"the noise energy per pixel (at the noise level)")
    if len(idx) > 1:
        from .identify import spectral_angles

        ang = spectral_angles(E[:, idx], E[:, idx])
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                if ang[a, b] < COLLINEAR_RAD:
                    flags.append(f"{names[idx[b]]}: near-collinear with {names[idx[a]]} "
                                 f"(spectral angle {ang[a, b]:.3f} rad)")
    return flags


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
