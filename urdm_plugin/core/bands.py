"""Band matching and library resampling (units are parsed in :mod:`core.io.units`).

Everything here works in **nanometres**: values read in µm are converted on reading.
Shapes are bands first: a library's spectra are ``(Bl, M)``, an image sample ``(B, N)``.

Main entry points
- :func:`resample_spectra`: a library onto image band centres (linear interpolation, or
  integration under each band's Gaussian response when the image has FWHM and the
  library is sampled finer).
- :func:`match_library`: which image bands to use and the resampled ``E``, with a report.
- :func:`check_reflectance_scale`, :func:`require_bands`: checks the pipeline calls.

Size note: ~460 lines, the band rules (bad and water bands) and the library-to-image match
that applies them, one concern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .errors import InputImageError, WavelengthError
from .io.image import ImageInfo
from .io.library import SpectralLibrary

#: Water-vapour absorption windows of reflectance images, in nm (start, end).
WATER_BANDS_NM: tuple = ((1340.0, 1460.0), (1790.0, 1960.0), (2450.0, math.inf))

#: Image bands this close (nm) outside the library's wavelength range still count as
#: covered: µm values rounded to 6 decimals are off by up to 0.0005 nm.
RANGE_TOLERANCE_NM = 0.05

#: FWHM (nm) = this x Gaussian sigma.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# ---------------------------------------------------------------------------------------
# Resampling
# ---------------------------------------------------------------------------------------


def _sorted_unique(wl: np.ndarray, spectra: np.ndarray) -> tuple:
    """Sort by wavelength and average spectra sampled twice at the same wavelength."""
    order = np.argsort(wl, kind="stable")
    wl = wl[order]
    spectra = spectra[order]
    uniq, inverse, counts = np.unique(wl, return_inverse=True, return_counts=True)
    if uniq.size == wl.size:
        return wl, spectra
    summed = np.zeros((uniq.size, spectra.shape[1]))
    np.add.at(summed, inverse, spectra)
    return uniq, summed / counts[:, None]


def _trapezoid_weights(x: np.ndarray) -> np.ndarray:
    w = np.zeros_like(x)
    if x.size == 1:
        return np.ones_like(x)
    d = np.diff(x)
    w[:-1] += d / 2
    w[1:] += d / 2
    return w


def resample_spectra(
    src_nm: np.ndarray,
    spectra: np.ndarray,
    dst_nm: np.ndarray,
    dst_fwhm_nm: Optional[np.ndarray] = None,
) -> tuple:
    """Resample spectra ``(Bl, M)`` sampled at ``src_nm`` (Bl,) onto ``dst_nm`` (B,).

    Linear interpolation by default. When ``dst_fwhm_nm`` (B,) is given and the source
    is sampled finer than the median FWHM, each output band is the integral of the
    spectrum under that band's Gaussian response (normalised over the part of the
    response the source covers). Targets outside the source range are clamped to the
    end values: select in-range targets first (:func:`match_library` does).
    Returns ``(out (B, M) float64, method)`` with method ``"linear"`` or ``"gaussian"``.
    """
    src = np.asarray(src_nm, dtype=np.float64)
    S = np.asarray(spectra, dtype=np.float64)
    dst = np.asarray(dst_nm, dtype=np.float64)
    if S.ndim == 1:
        S = S[:, None]
    src, S = _sorted_unique(src, S)
    use_gauss = False
    if dst_fwhm_nm is not None and src.size > 2:
        fwhm = np.asarray(dst_fwhm_nm, dtype=np.float64)
        if fwhm.shape == dst.shape and np.all(np.isfinite(fwhm)) and np.all(fwhm > 0):
            use_gauss = float(np.median(np.diff(src))) < float(np.median(fwhm))
    if not use_gauss:
        out = np.empty((dst.size, S.shape[1]))
        for j in range(S.shape[1]):
            out[:, j] = np.interp(dst, src, S[:, j])
        return out, "linear"
    sigma = fwhm / _FWHM_PER_SIGMA
    tw = _trapezoid_weights(src)
    # (B, Bl) response matrix; +-4 sigma covers the Gaussian, zero elsewhere.
    z = (src[None, :] - dst[:, None]) / sigma[:, None]
    R = np.where(np.abs(z) <= 4.0, np.exp(-0.5 * z * z), 0.0) * tw[None, :]
    norm = R.sum(axis=1)
    out = np.empty((dst.size, S.shape[1]))
    # a response cut by the library's end would be biased towards the inside: such
    # bands (less than 95 % of the Gaussian covered) are interpolated instead
    coverage = norm / (sigma * math.sqrt(2.0 * math.pi))
    ok = coverage >= 0.95
    out[ok] = (R[ok] @ S) / norm[ok, None]
    if np.any(~ok):
        for j in range(S.shape[1]):
            out[~ok, j] = np.interp(dst[~ok], src, S[:, j])
    return out, "gaussian"


# ---------------------------------------------------------------------------------------
# Matching a library to an image
# ---------------------------------------------------------------------------------------

REASON_BBL = "bad band (ENVI bbl)"
REASON_WATER = "water-vapour absorption"
REASON_EDGE = "beyond 2450 nm (sensor edge, little signal)"
#: Bands beyond this (nm) are dropped with the water bands but named for what they are.
EDGE_NM = 2450.0
REASON_RANGE = "outside the library's wavelength range"
REASON_GAP = "no library data within the band's response"
#: Without FWHM (and never less than it), a band is covered when library samples lie within
#: this many local library steps of its centre on both sides.
GAP_STEPS = 1.5
REASON_DEAD = "no usable value anywhere: all nodata, NaN or ±inf"


@dataclass
class MatchReport:
    """What :func:`match_library` did.

    ``dropped`` holds ``(band, wavelength_nm or None, reason)`` with ``band`` the
    0-based image band index (``summary()`` shows 1-based GDAL band numbers).
    """

    n_used: int
    n_image_bands: int
    range_nm: Optional[tuple]
    dropped: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    method: str = "index"  # "linear", "gaussian" or "index" (no wavelengths: band order)
    water_masked: bool = True

    def summary(self) -> str:
        """One short paragraph for logs and the GUI."""
        parts = [f"Using {self.n_used} of {self.n_image_bands} image bands"]
        if self.range_nm is not None:
            parts[0] += f", {self.range_nm[0]:.1f}–{self.range_nm[1]:.1f} nm"
        parts[0] += {
            "linear": " (library linearly interpolated to the band centres)",
            "gaussian": " (library integrated under each band's Gaussian response)",
            "index": " (no wavelengths: library rows matched to bands in order)",
        }.get(self.method, "")
        parts[0] += "."
        by_reason: dict = {}
        for band, wl, reason in self.dropped:
            by_reason.setdefault(reason, []).append((band, wl))
        for reason, items in by_reason.items():
            bands = _ranges([b + 1 for b, _ in items])
            wls = [w for _, w in items if w is not None]
            txt = f"Dropped {len(items)} band(s) ({reason}): {bands}"
            if wls:
                txt += f" [{min(wls):.1f}–{max(wls):.1f} nm]"
            parts.append(txt + ".")
        if not self.water_masked:
            parts.append("Water-vapour bands were not masked (mask_water_bands=False).")
        parts.extend(self.warnings)
        return " ".join(parts)


def _ranges(numbers: Sequence[int]) -> str:
    """[1,2,3,7] -> "1–3, 7"."""
    out = []
    nums = sorted(numbers)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}–{nums[j]}")
        i = j + 1
    return ", ".join(out)


@dataclass
class MatchedBands:
    """Result of :func:`match_library`.

    ``band_indices`` (n_used,) 0-based image bands to read; ``wavelengths_nm``
    (n_used,) or None; ``E`` (n_used, M) float64 library resampled onto those bands;
    ``names`` (M,) endmember names.
    """

    band_indices: np.ndarray
    wavelengths_nm: Optional[np.ndarray]
    E: np.ndarray
    names: list
    report: MatchReport

    def drop_bands(self, bands: Sequence[int], reason: str) -> None:
        """Leave out the image bands ``bands`` (0-based) for ``reason``: from the bands used
        and ``E``, named in the report's ``dropped``."""
        gone = set(int(b) for b in bands)
        keep = np.array([int(b) not in gone for b in self.band_indices], dtype=bool)
        for b, w in zip(self.band_indices[~keep], [None] * int((~keep).sum()) if self.wavelengths_nm is None
                        else self.wavelengths_nm[~keep]):
            self.report.dropped.append((int(b), None if w is None else float(w), reason))
        self.band_indices = self.band_indices[keep]
        self.E = np.ascontiguousarray(self.E[keep])
        if self.wavelengths_nm is not None:
            self.wavelengths_nm = self.wavelengths_nm[keep]
            if self.wavelengths_nm.size:
                self.report.range_nm = (float(self.wavelengths_nm.min()), float(self.wavelengths_nm.max()))
        self.report.n_used = int(keep.sum())

    def as_library(self):
        """The resampled endmembers as a SpectralLibrary (for ``endmembers_used.csv``)."""
        from .io.library import SpectralLibrary

        return SpectralLibrary(list(self.names), None if self.wavelengths_nm is None
                               else self.wavelengths_nm.copy(), self.E.copy())


def library_covers(lib_nm: np.ndarray, band_nm: np.ndarray, fwhm_nm: Optional[np.ndarray] = None) -> np.ndarray:
    """Boolean (B,): the library (sampled at ``lib_nm``) has data within each band's
    response on both sides of its centre: a sample at most ``h`` below and one at most ``h``
    above, ``h`` = max(FWHM, :data:`GAP_STEPS` × the library's local step). The local step is
    the median of the 4 library steps either side of the centre, the step spanning the
    centre left out: a hole in the library (an absorption region cut out) is not its own
    measure, while a library sampled as coarsely everywhere covers every band. A centre on
    a library sample (within :data:`RANGE_TOLERANCE_NM`) is covered; centres beyond the
    library's ends count from the end sample (the range rule judges those)."""
    lib = np.unique(np.asarray(lib_nm, dtype=np.float64))
    c = np.clip(np.asarray(band_nm, dtype=np.float64), lib[0], lib[-1])
    if lib.size < 3:
        return np.ones(c.shape, dtype=bool)
    steps = np.diff(lib)
    lo = np.searchsorted(lib, c, side="right") - 1  # last sample <= c
    hi = np.searchsorted(lib, c, side="left")  # first sample >= c
    h = np.zeros(c.shape)
    for i in range(c.size):  # steps lo-4..lo-1 and hi..hi+3 (the one spanning c, lo..hi, excluded)
        near = np.r_[steps[max(0, lo[i] - 4):lo[i]], steps[hi[i]:hi[i] + 4]]
        h[i] = GAP_STEPS * float(np.median(near if near.size else steps))
    if fwhm_nm is not None:
        f = np.asarray(fwhm_nm, dtype=np.float64)
        h = np.maximum(h, np.where(np.isfinite(f) & (f > 0), f, 0.0))
    # a band on a library sample (the library sampled like the sensor, µm rounding within
    # RANGE_TOLERANCE_NM) is covered whatever lies beside it
    on_sample = np.minimum(c - lib[lo], lib[hi] - c) <= RANGE_TOLERANCE_NM
    return on_sample | ((c - lib[lo] <= h) & (lib[hi] - c <= h))


def _gap_warning(lib_nm, band_nm, gap: np.ndarray) -> str:
    lib = np.unique(np.asarray(lib_nm, dtype=np.float64))
    holes = []
    for b in gap:
        lo = lib[np.searchsorted(lib, band_nm[b], side="right") - 1]
        hi = lib[np.searchsorted(lib, band_nm[b], side="left")]
        if (lo, hi) not in holes:
            holes.append((lo, hi))
    named = ", ".join(f"band {b + 1} ({band_nm[b]:.1f} nm)" for b in gap[:12]) + (" …" if gap.size > 12 else "")
    where = "; ".join(f"{lo:.0f}–{hi:.0f} nm" for lo, hi in holes[:4])
    return (f"Left out {gap.size} band(s) the library has no data for (its gap {where} would be bridged by "
            f"interpolation): {named}; use a library that covers them to keep them")


def in_water_band(wl_nm: np.ndarray) -> np.ndarray:
    """Boolean (B,): wavelength inside one of :data:`WATER_BANDS_NM`."""
    wl = np.asarray(wl_nm, dtype=float)
    hit = np.zeros(wl.shape, dtype=bool)
    for lo, hi in WATER_BANDS_NM:
        hit |= (wl >= lo) & (wl <= hi)
    return hit


def usable_image_bands(info: ImageInfo, mask_water_bands: bool = True) -> tuple:
    """The image bands any use of the image starts from: not flagged bad (ENVI ``bbl``) and,
    when ``mask_water_bands`` and the image has wavelengths, outside the water-vapour
    windows. Returns (keep (B,) bool, dropped [(band, wavelength nm | None, reason)])."""
    B = int(info.band_count)
    img_wl = None if info.wavelengths_nm is None else np.asarray(info.wavelengths_nm, dtype=float)
    keep = np.ones(B, dtype=bool) if info.usable is None else np.asarray(info.usable, dtype=bool).copy()
    dropped = [(int(b), None if img_wl is None else float(img_wl[b]), REASON_BBL) for b in np.flatnonzero(~keep)]
    if mask_water_bands and img_wl is not None:
        water = in_water_band(img_wl) & keep
        dropped += [(int(b), float(img_wl[b]), REASON_EDGE if img_wl[b] >= EDGE_NM else REASON_WATER)
                    for b in np.flatnonzero(water)]
        keep &= ~water
    return keep, dropped


def match_library(info: ImageInfo, library: SpectralLibrary, mask_water_bands: bool = True) -> MatchedBands:
    """Choose the image bands to use and resample ``library`` onto them.

    With wavelengths on both sides: bands flagged unusable by the ENVI ``bbl`` are
    dropped, then (by default) water-vapour bands (:data:`WATER_BANDS_NM`), then bands
    outside the library's range; the library is resampled onto the rest
    (:func:`resample_spectra`, Gaussian when the image has FWHM and the library is
    finer). When either side lacks wavelengths, library rows are matched to image bands
    in order, so their counts must be equal.

    Raises :class:`WavelengthError` when no band overlaps or counts do not match.
    Does not check the number of bands against the number of endmembers: call
    :func:`require_bands` with the endmembers actually used.
    """
    B = int(info.band_count)
    img_wl = None if info.wavelengths_nm is None else np.asarray(info.wavelengths_nm, dtype=float)
    lib_wl = library.wavelengths_nm
    warnings = []
    keep, dropped = usable_image_bands(info, mask_water_bands)
    water_masked = bool(mask_water_bands and img_wl is not None)

    def drop(mask: np.ndarray, keep: np.ndarray, reason: str) -> None:
        for b in np.flatnonzero(mask & keep):
            dropped.append((int(b), None if img_wl is None else float(img_wl[b]), reason))
        keep &= ~mask

    if img_wl is None or lib_wl is None:
        n_lib = library.spectra.shape[0]
        if n_lib != B:
            side = "image" if img_wl is None else "library"
            raise WavelengthError(
                f"The {side} has no wavelengths, so library rows must match image bands one to one, "
                f"but the library has {n_lib} rows and the image {B} bands",
                "Add wavelengths to both (ENVI header 'wavelength', CSV first column) or give a "
                "library with exactly one value per image band",
            )
        if img_wl is None and lib_wl is not None:
            warnings.append("The image has no wavelengths: library rows were matched to bands in order.")
        elif lib_wl is None and img_wl is not None:
            warnings.append("The library has no wavelengths: its rows were matched to bands in order.")
        idx = np.flatnonzero(keep)
        E = library.spectra[idx].astype(np.float64)
        method = "index"
    else:
        lo, hi = float(np.min(lib_wl)), float(np.max(lib_wl))
        outside = (img_wl < lo - RANGE_TOLERANCE_NM) | (img_wl > hi + RANGE_TOLERANCE_NM)
        if np.all(outside):
            raise WavelengthError(
                f"The library ({lo:.1f}–{hi:.1f} nm) and the image "
                f"({float(img_wl.min()):.1f}–{float(img_wl.max()):.1f} nm) do not overlap in wavelength",
                "Check the wavelength units of both (nm vs µm) or use a library that covers the image",
            )
        drop(outside, keep, REASON_RANGE)
        gap = ~library_covers(lib_wl, img_wl, info.fwhm_nm) & keep
        if gap.any():
            warnings.append(_gap_warning(lib_wl, img_wl, np.flatnonzero(gap)))
        drop(gap, keep, REASON_GAP)
        idx = np.flatnonzero(keep)
        fwhm = None if info.fwhm_nm is None else np.asarray(info.fwhm_nm, dtype=float)[idx]
        if idx.size:
            E, method = resample_spectra(lib_wl, library.spectra, img_wl[idx], fwhm)
        else:
            E, method = np.empty((0, library.spectra.shape[1])), "linear"
    if idx.size == 0:
        _raise_no_band_left(info, dropped)
    wl_used = None if img_wl is None else img_wl[idx].copy()
    rng = None if wl_used is None else (float(wl_used.min()), float(wl_used.max()))
    n_out = sum(1 for d in dropped if d[2] == REASON_RANGE)
    if n_out and n_out >= 0.25 * (n_out + idx.size):  # a green tick must not hide a partial library
        warnings.append(
            f"The library ({float(np.min(lib_wl)):.0f}–{float(np.max(lib_wl)):.0f} nm) covers only {idx.size} of the "
            f"image's {n_out + idx.size} usable bands: {n_out / (n_out + idx.size):.0%} of the spectrum is "
            "ignored; use a library that covers the image's range for a better separation of materials")
    report = MatchReport(
        n_used=int(idx.size), n_image_bands=B, range_nm=rng, dropped=dropped,
        warnings=warnings, method=method, water_masked=water_masked,
    )
    return MatchedBands(idx.astype(np.int64), wl_used, np.ascontiguousarray(E), list(library.names), report)


def _raise_no_band_left(info: ImageInfo, dropped: list) -> None:
    """The WavelengthError naming why no band is left: the ENVI bbl when it marks every
    band bad, else the count per reason."""
    from pathlib import Path

    counts: dict = {}
    for _b, _w, reason in dropped:
        counts[reason] = counts.get(reason, 0) + 1
    name = Path(str(getattr(info, "source_path", "") or info.path)).name
    if counts.get(REASON_BBL, 0) == int(info.band_count):
        raise WavelengthError(f"Every band of '{name}' is marked bad in its ENVI bad-band list (bbl = 0 for all "
                              f"{info.band_count} bands)",
                              "Correct 'bbl' in the .hdr (1 = good band, 0 = bad) or remove it")
    why = ", ".join(f"{n} {reason}" for reason, n in counts.items())
    water = counts.get(REASON_WATER, 0) + counts.get(REASON_EDGE, 0)
    raise WavelengthError(f"No band of '{name}' is left to use ({why})",
                          "Use a library that covers the image's usable bands"
                          + (", or keep the water-vapour bands (mask_water_bands=False)" if water else ""))


def require_bands(n_bands: int, n_endmembers: int) -> None:
    """Raise :class:`InputImageError` unless ``n_bands >= n_endmembers + 1``.

    Unmixing P endmembers with sum-to-one needs at least P+1 bands to be determined.
    """
    if n_bands < n_endmembers + 1:
        raise InputImageError(
            f"Only {n_bands} usable band(s) for {n_endmembers} endmember(s); unmixing needs at least "
            f"{n_endmembers + 1} (endmembers + 1)",
            "Use fewer endmembers, or keep more bands (a library covering more of the image, "
            "the water-band mask off, or fewer bad bands)",
        )


def require_signal(Y_sample: np.ndarray, what: str) -> None:
    """Raise :class:`InputImageError` when the valid pixels ``Y_sample`` (B, N) hold no
    signal: every value the same (an all-zero image, a constant fill). Unmixed, such an image
    comes out as 100 % of one material; its fit and noise are undefined."""
    Y = np.asarray(Y_sample)
    if Y.size and float(Y.min()) == float(Y.max()):
        raise InputImageError(
            f"{what} holds no signal: every value of its {Y.shape[1]} valid sampled pixels is {float(Y.flat[0]):g} "
            "in every band",
            "Check that the file holds the data (a failed export writes zeros) and its scale, offset and nodata")


def check_reflectance_scale(Y_sample: np.ndarray, E: np.ndarray) -> list:
    """Warnings when image and library look like different scales.

    ``Y_sample`` (B, N) scaled image values (valid pixels), ``E`` (B, M) the matched
    library. Warns when the image median exceeds 10x the library maximum (digital
    numbers against reflectance) and says which scale to set; and when the library
    looks like percent against a reflectance image. Returns a list of messages.
    """
    Y = np.asarray(Y_sample)
    if Y.ndim == 2 and Y.shape[1] > 20000:  # a median and a percentile: an even stride suffices
        Y = Y[:, :: Y.shape[1] // 20000 + 1]
    Y = np.asarray(Y, dtype=np.float64)
    Em = np.asarray(E, dtype=np.float64)
    out = []
    y = Y[np.isfinite(Y)]
    e = Em[np.isfinite(Em)]
    if y.size == 0 or e.size == 0:
        return out
    y_med = float(np.median(y))
    e_max = float(np.max(np.abs(e)))
    if e_max > 0 and y_med > 10.0 * e_max:
        # smallest power of ten that brings nearly all image values to <= 1
        p99 = float(np.percentile(np.abs(y), 99))
        scale = 10.0 ** (-math.ceil(math.log10(max(p99, 1e-12))))
        out.append(
            f"The image values look like digital numbers (median {y_med:.4g}, 99th percentile "
            f"{p99:.4g}) while the library is reflectance (max {e_max:.3g}). Set the image scale so "
            f"they become reflectance: about {scale:g} (e.g. a GDAL band scale of {scale:g}; "
            f"use the value your data provider gives)."
        )
    elif e_max > 2.0 and 0 < y_med <= 1.5 and e_max > 10.0 * y_med:
        out.append(
            f"The library looks like percent or scaled reflectance (max {e_max:.4g}) while the image "
            f"looks like reflectance (median {y_med:.3g}). Divide the library by 100 (or its scale "
            f"factor) so both are in the same units."
        )
    return out
