"""Which material is each extracted endmember: matching against a reference library
(numpy only).

Every endmember (e.g. from VCA) is compared with every reference spectrum, both on the
same bands (resample the library first: ``core.engine.extraction.identify_endmembers``
does it with the image's band matching), by the **spectral angle**
``θ = arccos(e·r / (‖e‖‖r‖))`` — insensitive to brightness (illumination, scale), which
differs between an image pixel and a laboratory spectrum.

The angle alone is not enough: a featureless spectrum (a road, a dark soil) lies close in
angle to some featureless mineral (Jasper Ridge's reference Road is 0.067 rad from
Andradite). So a match also needs a **spectral-feature fit** — the correlation of the
continuum-removed absorption depths (each spectrum divided by its upper convex hull, which
compares the absorption features' shapes and positions regardless of slope and
brightness) — of at least ``min_feature_fit``. The endmember takes the name of the
closest (by angle) spectrum with ``θ < max_angle`` and feature fit ≥ ``min_feature_fit``,
else ``unidentified_k`` (k its 1-based position).

Defaults :data:`MAX_ANGLE` = 0.13 rad (7.4°) and :data:`MIN_FEATURE_FIT` = 0.85, from what
we observed against the 498 USGS 1995 spectra: Jasper Ridge's vegetation (reference Tree
endmember, and the VCA vegetation pixel) lies 0.109–0.126 rad from green-vegetation spectra
(Lawn_Grass, Blackbrush, Pinon_Pine) with feature fit 0.93–0.96; Samson's Tree 0.062 rad
(0.98). Materials the 1995 library lacks: water ≥ 0.23 rad; road at 0.067 rad from a
mineral but feature fit −0.13; Jasper soil 0.111 rad from Rutile with fit 0.22, 0.135 from
Cheatgrass with 0.80 — all refused. Synthetic library spectra plus 30 dB noise match at
< 0.02 rad with fit > 0.9. (0.10 rad would refuse Jasper's real vegetation pixels, whose
illumination and mixing with soil put them at 0.11–0.13.)

The feature fit asked for is graded by the angle (:func:`required_feature_fit`): the full
``min_feature_fit`` at ``max_angle``, down to ``min_feature_fit`` − :data:`FIT_RELIEF`
(0.50) at 0 rad. An endmember averaged from noisy pixels keeps its shape (angle) better
than its continuum-removed features: the demo scene's vegetation endmember lies 0.022 rad
from its reference with fit 0.75, while every refusal above is at ≥ 0.067 rad with a fit of
0.22 or less (or beyond the angle).

Names stay unique: a second endmember matching the same spectrum gets ``_2`` (then ``_3``…).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import OptionError

MAX_ANGLE = 0.13  # rad: see the module docstring
N_CANDIDATES = 3
MIN_FEATURE_FIT = 0.85  # see the module docstring
FIT_RELIEF = 0.35  # how much less feature fit a near-identical shape (0 rad) needs


def required_feature_fit(angle, max_angle: float = MAX_ANGLE, min_feature_fit: float = MIN_FEATURE_FIT):
    """The feature fit a match at ``angle`` rad needs: ``min_feature_fit`` at ``max_angle``,
    :data:`FIT_RELIEF` less at 0 rad, linear between (``min_feature_fit`` ≤ −1 disables)."""
    if min_feature_fit <= -1:
        return min_feature_fit
    closeness = 1.0 - np.clip(np.asarray(angle, dtype=np.float64) / max_angle, 0.0, 1.0)
    return min_feature_fit - FIT_RELIEF * closeness


def spectral_angles(E: np.ndarray, R: np.ndarray) -> np.ndarray:
    """(P, M) angles in radians between the columns of E (B, P) and of R (B, M)."""
    E = np.asarray(E, np.float64)
    R = np.asarray(R, np.float64)
    ne = np.linalg.norm(E, axis=0)
    nr = np.linalg.norm(R, axis=0)
    c = (E.T @ R) / np.maximum(ne[:, None] * nr[None, :], 1e-300)
    ang = np.arccos(np.clip(c, -1.0, 1.0))
    ang[(ne[:, None] == 0) | (nr[None, :] == 0)] = np.pi / 2
    return ang


def continuum_removed(S: np.ndarray, wavelengths_nm=None) -> np.ndarray:
    """Spectra (B, M) divided by their upper convex hull over wavelength (1 = continuum,
    < 1 inside absorption features). Without wavelengths the band index is used."""
    S = np.asarray(S, np.float64)
    one = S.ndim == 1
    S = S[:, None] if one else S
    B = S.shape[0]
    x = np.arange(B, dtype=float) if wavelengths_nm is None else np.asarray(wavelengths_nm, float)
    order = np.argsort(x, kind="stable")
    x = x[order]
    out = np.empty_like(S)
    for j in range(S.shape[1]):
        y = S[order, j]
        hull = [0]
        for i in range(1, B):  # monotone chain, upper hull
            while len(hull) >= 2:
                a, b = hull[-2], hull[-1]
                if (x[b] - x[a]) * (y[i] - y[a]) - (y[b] - y[a]) * (x[i] - x[a]) >= 0:
                    hull.pop()
                else:
                    break
            hull.append(i)
        cont = np.interp(x, x[hull], y[hull])
        cr = np.where(cont > 0, y / np.where(cont > 0, cont, 1.0), 1.0)
        out[order, j] = cr
    return out[:, 0] if one else out


def feature_fit(E: np.ndarray, R: np.ndarray, wavelengths_nm=None) -> np.ndarray:
    """(P, M) spectral-feature-fit score in [−1, 1]: correlation of the continuum-removed
    absorption depths (1 − continuum-removed) of the columns of E and of R."""
    def depths(S):
        D = 1.0 - continuum_removed(S, wavelengths_nm)
        D = D - D.mean(axis=0, keepdims=True)
        n = np.linalg.norm(D, axis=0)
        return D / np.where(n > 0, n, 1.0)

    return depths(np.asarray(E, float)).T @ depths(np.asarray(R, float))


@dataclass
class IdentificationResult:
    """``names`` (P,) the new endmember names; ``matches`` one dict per endmember:
    ``endmember`` (its old name), ``name``, ``identified`` (bool), ``best`` (reference name),
    ``angle`` (rad), ``candidates`` [(reference name, angle rad, feature fit or None)] the
    best and the next ``N_CANDIDATES``; ``max_angle`` the threshold; ``report`` text."""

    names: list
    matches: list
    max_angle: float
    report: str
    n_bands: int = 0
    flags: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"names": list(self.names), "max_angle_rad": float(self.max_angle), "n_bands": int(self.n_bands),
                "matches": [{**m, "candidates": [list(c) for c in m["candidates"]]} for m in self.matches],
                "report": self.report}


def _unique(name: str, used: set) -> str:
    if name.lower() not in used:
        return name
    k = 2
    while f"{name}_{k}".lower() in used:
        k += 1
    return f"{name}_{k}"


def identify(E: np.ndarray, R: np.ndarray, reference_names, endmember_names=None,
             max_angle: float = MAX_ANGLE, n_candidates: int = N_CANDIDATES,
             wavelengths_nm=None, min_feature_fit: float = MIN_FEATURE_FIT) -> IdentificationResult:
    """Name each column of E (B, P) after its closest column of R (B, M) by spectral angle.

    Args:
        E: endmembers, R: reference spectra, on the same B bands.
        reference_names: M names; endmember_names: P current names (default endmember_k).
        max_angle: radians; a best match at or beyond it leaves the endmember
            ``unidentified_k``.
        n_candidates: runner-up spectra listed per endmember.
        wavelengths_nm: (B,) for the continuum removal of the feature fit.
        min_feature_fit: the spectral-feature fit a match also needs (−1 to disable).

    Returns:
        :class:`IdentificationResult`.
    """
    E = np.asarray(E, np.float64)
    R = np.asarray(R, np.float64)
    if E.ndim == 1:
        E = E[:, None]
    if E.ndim != 2 or R.ndim != 2 or E.shape[0] != R.shape[0]:
        raise OptionError(f"Endmembers {E.shape} and reference library {R.shape} do not share their bands",
                          "Resample the reference library to the endmembers' bands first.")
    if E.shape[0] < 2:
        raise OptionError(f"Only {E.shape[0]} band in common with the reference library",
                          "Use a reference library that covers the image's wavelengths.")
    if not 0 < float(max_angle) < np.pi / 2:
        raise OptionError(f"Identification angle {max_angle} rad is outside (0, π/2)",
                          f"Use a small angle such as {MAX_ANGLE} rad.")
    P, M = E.shape[1], R.shape[1]
    ref = list(reference_names)
    if len(ref) != M:
        raise OptionError(f"{len(ref)} names for {M} reference spectra", "Give one name per spectrum.")
    old = [f"endmember_{i + 1}" for i in range(P)] if endmember_names is None else list(endmember_names)
    ang = spectral_angles(E, R)
    sff = feature_fit(E, R, wavelengths_nm)
    order = np.argsort(ang, axis=1, kind="stable")
    names, matches, used = [], [], set()
    for i in range(P):
        ok_j = np.flatnonzero((ang[i] < max_angle) & (sff[i] >= required_feature_fit(ang[i], max_angle,
                                                                                    min_feature_fit)))
        j = int(ok_j[np.argmin(ang[i, ok_j])]) if ok_j.size else int(order[i, 0])
        ok = bool(ok_j.size)
        name = _unique(ref[j] if ok else f"unidentified_{i + 1}", used)
        used.add(name.lower())
        names.append(name)
        nxt = [int(c) for c in order[i, : 1 + max(int(n_candidates), 0) + 1] if int(c) != j]
        cands = [(ref[c], float(ang[i, c]), float(sff[i, c])) for c in [j] + nxt[: max(int(n_candidates), 0)]]
        matches.append({"endmember": old[i], "name": name, "identified": ok, "best": ref[j],
                        "angle": float(ang[i, j]), "feature_fit": float(sff[i, j]), "candidates": cands})
    lines = [f"Identified {sum(m['identified'] for m in matches)} of {P} endmembers against {M} reference "
             f"spectra on {E.shape[0]} bands (spectral angle below {max_angle:.3f} rad = "
             f"{np.degrees(max_angle):.1f}°):"]
    for m in matches:
        what = (f"{m['name']} ({m['angle']:.3f} rad, feature fit {m['feature_fit']:.2f})" if m["identified"] else
                f"{m['name']} — no close match (nearest {m['best']} at {m['angle']:.3f} rad, "
                f"feature fit {m['feature_fit']:.2f})")
        lines.append(f"  {m['endmember']} → {what}")
        nxt = m["candidates"][1:]
        if nxt:
            lines.append("      next: " + "; ".join(
                f"{n} {a:.3f} rad, feature fit {f:.2f}" for n, a, f in nxt))
    return IdentificationResult(names, matches, float(max_angle), "\n".join(lines), int(E.shape[0]))
