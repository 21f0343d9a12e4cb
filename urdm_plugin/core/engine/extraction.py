"""Endmembers from the image itself (VCA), on the bands any run would use; how many
(HySime) and which materials they are (matching against a reference library)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import InputImageError, OptionError
from ..io.library import SpectralLibrary

AUTO = "auto"


@dataclass
class ExtractionResult(SpectralLibrary):
    """The extracted endmembers (a :class:`SpectralLibrary`: write it with
    ``write_library_csv``) plus how they were found: ``n_requested`` (int or ``"auto"``),
    ``hysime`` (:class:`core.methods.hysime.HySimeResult` when N was automatic, else None),
    ``noise_sigma`` (HySime's RMS noise σ in reflectance, or None), ``identification``
    (:class:`core.methods.identify.IdentificationResult` when a reference library was
    given) and ``report`` (text: the estimate, noise level and identification)."""

    n_requested: Union[int, str] = 0
    hysime: Optional[object] = None
    noise_sigma: Optional[float] = None
    identification: Optional[object] = None
    report: str = ""

    def as_dict(self) -> dict:
        return {"names": list(self.names), "n_requested": self.n_requested,
                "n_estimated": None if self.hysime is None else int(self.hysime.n_endmembers),
                "noise_sigma": self.noise_sigma, "report": self.report,
                "identification": None if self.identification is None else self.identification.as_dict()}


def parse_n(n) -> Union[int, str]:
    """``n`` as given on a command line or in code: a positive int, or ``"auto"`` (also
    None or 0) for HySime's estimate. Raises OptionError otherwise."""
    if n is None or (isinstance(n, str) and n.strip().lower() == AUTO):
        return AUTO
    try:
        v = int(str(n).strip()) if isinstance(n, str) else int(n)
    except (TypeError, ValueError):
        raise OptionError(f"The number of endmembers must be a positive integer or 'auto' (got {n!r})",
                          "Give a number such as 4, or 'auto' to estimate it (HySime)") from None
    if v == 0:
        return AUTO
    if v < 1:
        raise OptionError(f"The number of endmembers must be at least 1 (got {v})",
                          "Give a positive number, or 'auto' to estimate it (HySime)")
    return v


def extract_endmembers(image_path: Union[str, Path], n: Union[int, str] = AUTO, seed: int = 0,
                       max_pixels: int = 200_000, mask_water_bands: bool = True,
                       reference: Optional[SpectralLibrary] = None, max_angle: Optional[float] = None):
    """Extract ``n`` endmember spectra from an image with VCA (core.methods.selection.vca).

    Uses the image's usable bands (ENVI bbl), minus water-vapour bands when
    ``mask_water_bands`` and the image has wavelengths, and a random subset of at most
    ``max_pixels`` valid pixels. ``n="auto"`` (or 0) estimates the number with HySime
    (:func:`core.methods.hysime.hysime`, on at most 50 000 of those pixels) and reports it
    with the noise level. With a ``reference`` library the endmembers are named after their
    closest reference spectrum by spectral angle (below ``max_angle`` rad, default
    :data:`core.methods.identify.MAX_ANGLE`; else ``unidentified_k``) on the bands the image
    and the library share (the same band matching as a run: :func:`core.bands.match_library`).

    Returns an :class:`ExtractionResult` (a SpectralLibrary) named ``endmember_1..n`` (or
    after the identification) on those bands (wavelengths in nm, or None when the image has
    none).
    """
    from ..bands import usable_image_bands
    from ..io.image import open_image, sample_pixels
    from ..methods.selection import vca

    n = parse_n(n)
    info = open_image(str(image_path))
    keep, _dropped = usable_image_bands(info, mask_water_bands)
    bands = [int(b) for b in np.flatnonzero(keep)]
    if n != AUTO and len(bands) < n:
        raise InputImageError(f"{n} endmembers need at least {n} usable bands; the image has {len(bands)}",
                              "Extract fewer endmembers")
    Y = sample_pixels(info, bands, n=int(max_pixels), seed=int(seed)).astype(np.float64)
    hs = None
    lines = []
    if n == AUTO:
        from ..methods.hysime import hysime

        if Y.shape[1] < len(bands) + 1:
            raise InputImageError(f"The image has only {Y.shape[1]} valid pixels: too few to estimate the "
                                  f"number of endmembers on {len(bands)} bands",
                                  "Give the number of endmembers, or use a larger image")
        hs = hysime(Y, seed=int(seed), max_endmembers=min(len(bands), Y.shape[1]))
        k = int(hs.n_endmembers)
        lines.append(hs.report)
    else:
        k = int(n)
    if Y.shape[1] < k:
        raise InputImageError(f"The image has only {Y.shape[1]} valid pixels, fewer than {k} endmembers",
                              "Extract fewer endmembers or check the image's nodata")
    out = vca(Y, k, seed=int(seed))
    if isinstance(out, tuple):
        out = out[0]
    out = np.asarray(out)
    E = Y[:, out.astype(int)].astype(np.float64) if out.ndim == 1 else out.astype(np.float64)
    wl = None if info.wavelengths_nm is None else np.asarray(info.wavelengths_nm, float)[bands]
    names = [f"endmember_{i + 1}" for i in range(E.shape[1])]
    ident = None
    if reference is not None:
        ident = _identify_on_image_bands(info, bands, wl, E, names, reference, mask_water_bands, max_angle)
        names = ident.names
        lines.append(ident.report)
    return ExtractionResult(names, wl, E, str(image_path), n_requested=n, hysime=hs,
                            noise_sigma=None if hs is None else hs.sigma, identification=ident,
                            report="\n".join(lines))


def _identify_on_image_bands(info, bands, wl, E, names, reference, mask_water_bands, max_angle):
    from ..bands import match_library
    from ..methods.identify import MAX_ANGLE, identify

    m = match_library(info, reference, mask_water_bands)
    pos = {int(b): i for i, b in enumerate(m.band_indices)}
    rows = [(i, pos[b]) for i, b in enumerate(bands) if b in pos]
    if len(rows) < 2:
        raise InputImageError("The image and the reference library share fewer than 2 usable bands",
                              "Use a reference library that covers the image's wavelengths")
    ie, ir = (np.array(x, dtype=int) for x in zip(*rows))
    return identify(E[ie], m.E[ir], m.names, names, MAX_ANGLE if max_angle is None else float(max_angle),
                    wavelengths_nm=None if wl is None else wl[ie])


def identify_library(endmembers: SpectralLibrary, reference: SpectralLibrary, max_angle: Optional[float] = None,
                     **kw):
    """Identify the spectra of one library (e.g. a saved VCA result) against another: the
    reference is resampled (:func:`core.bands.resample_spectra`) onto the endmembers'
    wavelengths inside its range (or matched row by row when either lacks wavelengths).
    Returns (renamed SpectralLibrary, :class:`core.methods.identify.IdentificationResult`)."""
    from ..bands import RANGE_TOLERANCE_NM, resample_spectra
    from ..methods.identify import MAX_ANGLE, identify

    ang = MAX_ANGLE if max_angle is None else float(max_angle)
    if endmembers.wavelengths_nm is None or reference.wavelengths_nm is None:
        if endmembers.spectra.shape[0] != reference.spectra.shape[0]:
            raise OptionError("Without wavelengths the endmembers and the reference must have the same rows",
                              "Add wavelengths to both libraries")
        rows = np.arange(endmembers.spectra.shape[0])
        R = reference.spectra
    else:
        wl = endmembers.wavelengths_nm
        lo, hi = float(reference.wavelengths_nm.min()), float(reference.wavelengths_nm.max())
        rows = np.flatnonzero((wl >= lo - RANGE_TOLERANCE_NM) & (wl <= hi + RANGE_TOLERANCE_NM))
        R = resample_spectra(reference.wavelengths_nm, reference.spectra, wl[rows])[0] if rows.size else None
    if rows.size < 2:
        raise OptionError("The endmembers and the reference library share fewer than 2 wavelengths",
                          "Use a reference library that covers the endmembers' wavelengths")
    res = identify(endmembers.spectra[rows], R, reference.names, endmembers.names, ang,
                   wavelengths_nm=None if endmembers.wavelengths_nm is None else endmembers.wavelengths_nm[rows], **kw)
    return SpectralLibrary(res.names, endmembers.wavelengths_nm, endmembers.spectra.copy(), endmembers.path), res
