"""Wavelength units and number lists: parsing and conversion to nanometres (a leaf module).

Everything downstream works in **nanometres**; values read in µm are converted here.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Iterable, Optional

import numpy as np

from ..errors import WavelengthError

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
