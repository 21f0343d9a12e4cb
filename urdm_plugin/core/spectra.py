"""Wavelengths, units, band matching and library resampling.

Everything here works in **nanometres**: values read in µm are converted on reading.
Shapes are bands first: a library's spectra are ``(Bl, M)``, an image sample ``(B, N)``.

Main entry points
- :func:`parse_unit` / :func:`to_nm` / :func:`parse_number_list` /
  :func:`wavelength_from_text`: unit and wavelength parsing shared by the readers.
- :func:`resample_spectra`: a library onto image band centres (linear interpolation, or
  integration under each band's Gaussian response when the image has FWHM and the
  library is sampled finer).
- :func:`match_library`: which image bands to use and the resampled ``E``, with a report.
- :func:`check_reflectance_scale`, :func:`require_bands`: checks the pipeline calls.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import numpy as np

from .errors import InputImageError, WavelengthError

if TYPE_CHECKING:  # pragma: no cover - typing only, avoids an import cycle
    from .library_io import SpectralLibrary
    from .raster_io import ImageInfo

# ---------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------

#: Factor that turns a value in the unit into nanometres.
_UNIT_FACTORS = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "nanometres": 1.0,
    "um": 1000.0,
    "micrometer": 1000.0,
    "micrometers": 1000.0,
    "micrometre": 1000.0,
    "micrometres": 1000.0,
    "micron": 1000.0,
    "microns": 1000.0,
    "mum": 1000.0,
    "mm": 1.0e6,
    "millimeter": 1.0e6,
    "millimeters": 1.0e6,
    "millimetre": 1.0e6,
    "millimetres": 1.0e6,
}

#: Spellings that mean "no physical unit given" (ENVI writes "Unknown"); values are
#: then interpreted by :func:`infer_unit_factor`.
_UNSPECIFIED_UNITS = {"", "unknown", "none", "unspecified", "na", "n/a"}

#: ENVI's "Index" unit means band numbers, not wavelengths.
_INDEX_UNITS = {"index", "band", "bands", "bandnumber", "band number"}

#: Values all below this are taken to be µm when no unit is given (no imaging
#: spectrometer has a band centre below 30 nm; none above 30 µm is in the optical range).
MICROMETER_THRESHOLD = 30.0

#: Water-vapour absorption windows of reflectance images, in nm (start, end).
WATER_BANDS_NM: tuple = ((1340.0, 1460.0), (1790.0, 1960.0), (2450.0, math.inf))

#: Image bands this close (nm) outside the library's wavelength range still count as
#: covered: µm values rounded to 6 decimals are off by up to 0.0005 nm.
RANGE_TOLERANCE_NM = 0.05

#: FWHM (nm) = this x Gaussian sigma.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _normalise_unit_text(text: str) -> str:
    t = unicodedata.normalize("NFKC", str(text)).strip().lower()
    # micro sign (U+00B5) and greek mu (U+03BC) both become "u"
    t = t.replace("\u00b5", "u").replace("\u03bc", "u")
    t = t.strip(" \t\r\n()[]{}<>'\".,:;_-")
    return re.sub(r"\s+", " ", t)


def parse_unit(text: Optional[str]) -> Optional[float]:
    """Factor that converts values in unit ``text`` to nm, or None when no unit is given.

    Accepts nm, µm (``um``, ``µm`` U+00B5, ``μm`` U+03BC, micrometer(s), Micrometers,
    micron(s)), mm, any case. ``None``, ``""`` and ENVI's ``"Unknown"`` return None
    (the caller infers the unit from the values). Raises :class:`WavelengthError` for
    any other text, including ENVI's ``"Index"`` (band numbers are not wavelengths).
    """
    if text is None:
        return None
    t = _normalise_unit_text(text)
    if t in _UNSPECIFIED_UNITS:
        return None
    if t in _UNIT_FACTORS:
        return _UNIT_FACTORS[t]
    if t.rstrip("s") in _UNIT_FACTORS:
        return _UNIT_FACTORS[t.rstrip("s")]
    raise WavelengthError(
        f"Unknown wavelength unit '{str(text)[:60]}'",
        "Give wavelengths in nanometres (nm) or micrometres (µm, um, Micrometers)",
    )


def is_index_unit(text: Optional[str]) -> bool:
    """True for ENVI's ``wavelength units = Index`` (values are band numbers)."""
    return text is not None and _normalise_unit_text(text) in _INDEX_UNITS


def infer_unit_factor(values: np.ndarray) -> float:
    """nm factor for unit-less wavelengths: µm (1000) when all are < 30, else nm (1)."""
    v = np.asarray(values, dtype=float)
    if v.size and np.all(np.abs(v[np.isfinite(v)]) < MICROMETER_THRESHOLD):
        return 1000.0
    return 1.0


def unit_label(factor: float) -> str:
    """Short label for a nm factor: 1 -> "nm", 1000 -> "µm", 1e6 -> "mm"."""
    return {1.0: "nm", 1000.0: "µm", 1.0e6: "mm"}.get(float(factor), f"x{factor:g} nm")


def to_nm(values: Iterable[float], unit: Optional[str] = None, what: str = "wavelengths") -> np.ndarray:
    """Convert wavelengths to nm; shape preserved, float64.

    ``unit`` is parsed by :func:`parse_unit`; when it is None/unspecified the unit is
    inferred (all values < 30 -> µm, else nm). Raises :class:`WavelengthError` when a
    value is not finite or not positive (``what`` names the source in the message).
    """
    v = np.array(values, dtype=np.float64, copy=True)
    if v.size == 0:
        raise WavelengthError(f"The {what} list is empty", "Give one wavelength per band")
    if not np.all(np.isfinite(v)):
        raise WavelengthError(f"The {what} contain a non-finite value (NaN or inf)",
                              "Give a finite wavelength for every band")
    if np.any(v <= 0):
        bad = float(v[v <= 0][0])
        raise WavelengthError(f"The {what} contain a value <= 0 ({bad:g})",
                              "Give positive wavelengths in nm or µm")
    factor = parse_unit(unit)
    if factor is None:
        factor = infer_unit_factor(v)
    return v * factor


_NUMBER = r"[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?"


def parse_number_list(text: str, what: str = "value list") -> np.ndarray:
    """Parse an ENVI-style list ``"{1.0, 2.5, 3}"`` (braces optional) into float64 (n,).

    Separators may be commas, semicolons or whitespace. Raises :class:`WavelengthError`
    naming the first item that is not a number.
    """
    t = str(text).strip()
    if t.startswith("{"):
        t = t[1:]
    if t.endswith("}"):
        t = t[:-1]
    items = [s for s in re.split(r"[,;\s]+", t) if s]
    out = np.empty(len(items), dtype=np.float64)
    for i, s in enumerate(items):
        try:
            out[i] = float(s)
        except ValueError:
            raise WavelengthError(
                f"Item {i + 1} of the {what} ('{s[:40]}') is not a number",
                "Fix the header so the list holds only numbers",
            ) from None
    return out


_UNIT_WORDS = (
    r"nanomet(?:er|re)s?|micromet(?:er|re)s?|microns?|millimet(?:er|re)s?|"
    r"nm|[u\u00b5\u03bc]m|mum|mm"
)
_WL_WITH_UNIT = re.compile(rf"({_NUMBER})\s*({_UNIT_WORDS})(?![a-z])", re.IGNORECASE)
_PLAIN_NUMBER = re.compile(rf"^\s*({_NUMBER})\s*$")


def wavelength_from_text(text: Optional[str]) -> tuple:
    """Wavelength and unit from a band description, e.g. ``"401.00 nm"`` or
    ``"Band 5 (0.4500 µm)"``.

    Returns ``(value, factor)`` where ``factor`` converts to nm, ``(value, None)`` when
    the text is a bare number (unit to be inferred), or ``(None, None)`` when the text
    names no wavelength (``"Band 5"`` is a band number, not a wavelength).
    """
    if not text:
        return None, None
    t = unicodedata.normalize("NFKC", str(text))
    m = _WL_WITH_UNIT.search(t)
    if m:
        value = float(m.group(1).replace(",", "."))
        factor = parse_unit(m.group(2))
        if value > 0 and math.isfinite(value):
            return value, factor
        return None, None
    m = _PLAIN_NUMBER.match(t)
    if m:
        value = float(m.group(1).replace(",", "."))
        if value > 0 and math.isfinite(value):
            return value, None
    return None, None


def unit_from_header(header: str) -> tuple:
    """Unit of a CSV wavelength column from its header.

    ``"wavelength_nm"``, ``"Wavelength (um)"``, ``"wavelength [µm]"``, ``"nm"`` name
    their unit; ``"wavelength"`` alone returns ``(None, False)`` (infer from values).
    ``"band"`` returns ``(None, True)``: the column holds band numbers, no wavelengths.
    Returns ``(factor or None, is_band_index)``; raises :class:`WavelengthError` when
    the header names a unit that is not a wavelength unit.
    """
    t = _normalise_unit_text(header)
    if re.fullmatch(r"(band|band[ _]?(number|no|index|#)|index)", t):
        return None, True
    rest = re.sub(r"^(wavelengths?|wave[ _]?lengths?|wl|lambda)(?![a-z])", "", t)
    rest = _normalise_unit_text(rest)
    if rest.startswith("in "):
        rest = rest[3:]
    try:
        return parse_unit(rest), False
    except WavelengthError:
        raise WavelengthError(
            f"The first column header '{str(header)[:60]}' does not name a wavelength unit",
            "Name the first column 'wavelength_nm' or 'wavelength_um' (or just 'wavelength')",
        ) from None


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
REASON_RANGE = "outside the library's wavelength range"


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

    def as_library(self):
        """The resampled endmembers as a SpectralLibrary (for ``endmembers_used.csv``)."""
        from .library_io import SpectralLibrary

        return SpectralLibrary(list(self.names), None if self.wavelengths_nm is None
                               else self.wavelengths_nm.copy(), self.E.copy())


def in_water_band(wl_nm: np.ndarray) -> np.ndarray:
    """Boolean (B,): wavelength inside one of :data:`WATER_BANDS_NM`."""
    wl = np.asarray(wl_nm, dtype=float)
    hit = np.zeros(wl.shape, dtype=bool)
    for lo, hi in WATER_BANDS_NM:
        hit |= (wl >= lo) & (wl <= hi)
    return hit


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
    usable = np.ones(B, dtype=bool) if info.usable is None else np.asarray(info.usable, dtype=bool)
    img_wl = None if info.wavelengths_nm is None else np.asarray(info.wavelengths_nm, dtype=float)
    lib_wl = library.wavelengths_nm
    dropped = []
    warnings = []

    def drop(mask: np.ndarray, keep: np.ndarray, reason: str) -> None:
        for b in np.flatnonzero(mask & keep):
            dropped.append((int(b), None if img_wl is None else float(img_wl[b]), reason))
        keep &= ~mask

    keep = np.ones(B, dtype=bool)
    drop(~usable, keep, REASON_BBL)
    water_masked = bool(mask_water_bands and img_wl is not None)
    if water_masked:
        drop(in_water_band(img_wl), keep, REASON_WATER)

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
        idx = np.flatnonzero(keep)
        fwhm = None if info.fwhm_nm is None else np.asarray(info.fwhm_nm, dtype=float)[idx]
        if idx.size:
            E, method = resample_spectra(lib_wl, library.spectra, img_wl[idx], fwhm)
        else:
            E, method = np.empty((0, library.spectra.shape[1])), "linear"
    if idx.size == 0:
        raise WavelengthError(
            "No image band is left to use after dropping bad, water-vapour and out-of-range bands",
            "Use a library that covers the image's usable bands, or set mask_water_bands=False",
        )
    wl_used = None if img_wl is None else img_wl[idx].copy()
    rng = None if wl_used is None else (float(wl_used.min()), float(wl_used.max()))
    report = MatchReport(
        n_used=int(idx.size), n_image_bands=B, range_nm=rng, dropped=dropped,
        warnings=warnings, method=method, water_masked=water_masked,
    )
    return MatchedBands(idx.astype(np.int64), wl_used, np.ascontiguousarray(E), list(library.names), report)


def require_bands(n_bands: int, n_endmembers: int) -> None:
    """Raise :class:`InputImageError` unless ``n_bands >= n_endmembers + 1``.

    Unmixing P endmembers with sum-to-one needs at least P+1 bands to be determined.
    """
    if n_bands < n_endmembers + 1:
        raise InputImageError(
            f"Only {n_bands} usable band(s) for {n_endmembers} endmember(s); unmixing needs at least "
            f"{n_endmembers + 1} (endmembers + 1)",
            "Use fewer endmembers, or keep more bands (a library covering more of the image, "
            "mask_water_bands=False, or fewer bad bands)",
        )


def check_reflectance_scale(Y_sample: np.ndarray, E: np.ndarray) -> list:
    """Warnings when image and library look like different scales.

    ``Y_sample`` (B, N) scaled image values (valid pixels), ``E`` (B, M) the matched
    library. Warns when the image median exceeds 10x the library maximum (digital
    numbers against reflectance) and says which scale to set; and when the library
    looks like percent against a reflectance image. Returns a list of messages.
    """
    Y = np.asarray(Y_sample, dtype=np.float64)
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
