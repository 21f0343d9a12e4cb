"""How well the endmembers explain the image: checked on the run's pixel sample, before the
run, so a poor library is named while there is still time to change it.

The measure is the mean per-pixel relative residual of FCLS, ‖y − E·â‖ / ‖y‖ (both over the
bands used): the share of a pixel's spectrum the endmembers leave unexplained. It needs no
noise estimate and no truth, and it is what goes wrong with a library that lacks a material
of the scene: FCLS's sum-to-one then forces those pixels onto the nearest library spectra,
dark water onto bright minerals. Measured on the shared scenes (the runs' samples, 3,040 and
3,200 pixels):

=========================================  =================
scene, endmembers                          relative residual
=========================================  =================
Jasper Ridge, its 4 reference endmembers   0.115
Samson, its 3 reference endmembers         0.174
Jasper Ridge without Water (3)             1.82
Jasper Ridge, USGS 1995 automatic (6)      1.66
Samson, USGS 1995 automatic (6)            0.90
=========================================  =================

A residual above :data:`POOR_FIT` (0.30) is reported as a poor fit. Per endmember, the
same measure over the pixels it dominates names the stand-ins (:func:`stand_in_flags`):
a spectrum that "explains" pixels it does not fit, as a grass spectrum holding Jasper
Ridge's lake when the library has no water. A noise-relative
measure (residual RMSE / HySime noise σ) does not separate these cases: real endmember
variability puts even the reference endmembers at 8–22 σ.
"""

from __future__ import annotations

import numpy as np

#: Mean relative residual above which the fit is called poor (see the module docstring).
POOR_FIT = 0.30
#: Pixels of the sample the check fits (FCLS on a few thousand pixels takes milliseconds).
MAX_PIXELS = 4000
#: An endmember is a stand-in when, over the pixels it dominates (at least
#: :data:`MIN_DOMINATED` of the sample), the median relative residual exceeds this. Measured:
#: the reference endmembers of Jasper Ridge and Samson 0.06–0.29 (Samson's Water the
#: highest); the USGS stand-ins for water 2.8 (Malachite, Samson) and 3.9 (Cheatgrass, Jasper).
STAND_IN = 0.5
MIN_DOMINATED = 0.01
#: A band whose FCLS residual RMS over the sample exceeds this multiple of the median band's
#: is named (:func:`loud_band_message`): a band the library does not describe (a gap bridged
#: by interpolation, a miscalibrated or noisy band) steers the fit of every other band.
LOUD_BAND = 5.0


def assess_fit(Y: np.ndarray, E: np.ndarray, seed: int = 0) -> dict:
    """FCLS fit of the sample ``Y`` (bands × N, reflectance) with ``E`` (bands × P).

    Returns ``{"relative_residual", "residual_rmse", "pixels", "poor", "endmembers"}``: the
    mean per-pixel ‖r‖/‖y‖ (0–1 and more), the mean per-pixel residual RMSE (reflectance),
    the pixels used, whether the fit is poor (relative residual > :data:`POOR_FIT`) and per
    endmember (P entries) ``dominant_pixels``, ``median_relative_residual`` over them (None
    when it dominates none) and ``stand_in``; ``loud_bands``: the bands (``position`` among
    the bands of ``Y``) whose residual RMS exceeds :data:`LOUD_BAND` × the median band's. An empty sample gives ``pixels`` 0 and
    ``poor`` False.
    """
    from ..methods.active_set import fcls

    Y = np.asarray(Y)
    if Y.shape[1] > MAX_PIXELS:  # subsample before any copy: the sample may be large
        Y = Y[:, np.sort(np.random.default_rng(seed).choice(Y.shape[1], MAX_PIXELS, replace=False))]
    Y = np.asarray(Y, np.float64)
    E = np.asarray(E, np.float64)
    Y = Y[:, np.isfinite(Y).all(axis=0)]
    norm = np.sqrt((Y * Y).sum(axis=0))
    Y = Y[:, norm > 0]
    if Y.shape[1] == 0:
        return {"relative_residual": 0.0, "residual_rmse": 0.0, "pixels": 0, "poor": False}
    A = fcls(Y, E)
    R = Y - E @ A
    r = np.sqrt((R * R).sum(axis=0))
    rel_px = r / norm[norm > 0]
    rel = float(np.mean(rel_px))
    dominant = np.argmax(A, axis=0)
    per = []
    for j in range(E.shape[1]):
        here = dominant == j
        med = float(np.median(rel_px[here])) if here.any() else None
        per.append({"dominant_pixels": int(here.sum()), "median_relative_residual": med,
                    "stand_in": bool(med is not None and here.mean() >= MIN_DOMINATED and med > STAND_IN)})
    band = np.sqrt(np.mean(R * R, axis=1))  # (bands,) residual RMS per band over the pixels
    typical = float(np.median(band))
    loud = [{"position": int(i), "residual_rms": float(band[i]), "times_median": float(band[i] / typical)}
            for i in np.flatnonzero(band > LOUD_BAND * typical)] if typical > 0 else []
    return {"relative_residual": rel, "residual_rmse": float(np.mean(r) / np.sqrt(Y.shape[0])),
            "pixels": int(Y.shape[1]), "poor": rel > POOR_FIT, "endmembers": per, "loud_bands": loud}


def loud_band_message(fit: dict, bands, wavelengths_nm=None) -> str:
    """The warning naming the bands of ``fit["loud_bands"]`` ("" when none); ``bands`` the
    0-based image bands used (the positions of the fit), ``wavelengths_nm`` the image's."""
    loud = fit.get("loud_bands") or []
    if not loud:
        return ""
    named = []
    for e in loud[:12]:
        b = int(bands[e["position"]])
        wl = "" if wavelengths_nm is None else f" ({float(wavelengths_nm[b]):.1f} nm)"
        named.append(f"band {b + 1}{wl} {e['times_median']:.0f}×")
    return (f"{len(loud)} band(s) fit far worse than the others (FCLS residual above {LOUD_BAND:g}× the median "
            f"band's, on {fit['pixels']} sampled pixels): {', '.join(named)}{' …' if len(loud) > 12 else ''}; "
            "the library may not describe them (a gap, a miscalibrated band): check them, or leave them out")


def stand_in_flags(fit: dict, names) -> list:
    """One line per endmember that dominates pixels it does not explain (see
    :data:`STAND_IN`): it stands in for a material the endmembers lack."""
    out = []
    for name, e in zip(names, fit.get("endmembers") or []):
        if e.get("stand_in"):
            out.append(f"{name}: where it dominates ({e['dominant_pixels']} of {fit['pixels']} sampled pixels) "
                       f"the residual is {e['median_relative_residual']:.0%} of a pixel's reflectance (median); "
                       "it stands in for a material the endmembers lack")
    return out


def poor_fit_message(fit: dict, automatic: bool) -> str:
    """The warning for a poor ``fit`` (from :func:`assess_fit`), with the advice that fits
    how the endmembers were chosen."""
    share = min(fit["relative_residual"], 9.99)
    where = ("the spectra selected from the library" if automatic else "the endmembers")
    advice = ("use endmembers from the image itself (vca) or a smaller library of materials "
              "expected in the scene" if automatic else
              "add the missing materials (e.g. water, shade), or extract endmembers from the image (vca)")
    return (f"Poor fit: with {where}, the residual is on average {share:.0%} of a pixel's reflectance "
            f"(mean residual RMSE {fit['residual_rmse']:.3g}, sampled on {fit['pixels']} pixels); {advice}")
