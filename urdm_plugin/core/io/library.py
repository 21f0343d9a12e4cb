"""Endmember libraries: CSV and ENVI spectral libraries (.sli + .hdr).

Size note: ~590 lines, two readers (CSV dialects and encodings, ENVI header + binary and its byte order) and one writer of
the same :class:`SpectralLibrary`; each reader's checks are what users hit first.

A library is ``M`` named spectra sampled at ``Bl`` wavelengths (nm), spectra ``(Bl, M)``.

CSV layout: a header row, first column the wavelengths (its header names the unit:
``wavelength_nm``, ``Wavelength (um)``; plain ``wavelength`` infers µm when all values
are < 30, else nm; ``band`` means no wavelengths), then one named column per spectrum.
Delimiters ``,`` ``;`` or tab are sniffed; names may contain the delimiter inside quotes;
``;``- or tab-separated files may use decimal commas.

ENVI spectral libraries are read with a small strict header parser (GDAL cannot open
.sli): ``samples`` = bands, ``lines`` = spectra, ``bands`` = 1, ``data type``,
``byte order``, ``header offset``, ``spectra names``, ``wavelength``,
``wavelength units`` and optional ``reflectance scale factor``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import LibraryError, OutputError, UrdmError, WavelengthError, os_error_cause
from .units import (
    infer_unit_factor,
    is_index_unit,
    parse_number_list,
    parse_unit,
    unit_from_header,
    unit_label,
)

#: Largest library file read (bytes); anything bigger is not a spectral library.
MAX_LIBRARY_BYTES = 512 * 1024 * 1024


@dataclass
class SpectralLibrary:
    """Named spectra: ``names`` (M,), ``wavelengths_nm`` (Bl,) or None, ``spectra``
    (Bl, M) float64, ``path`` where it was read from ("" if built in memory),
    ``wavelength_unit`` the file's unit as read ("nm", "µm (inferred)" when the file does
    not state it and the values decided; "" when unknown or built in memory).

    Validated on construction: names unique and non-empty, spectra finite, shapes
    consistent (raises :class:`LibraryError`).
    """

    names: list
    wavelengths_nm: Optional[np.ndarray]
    spectra: np.ndarray
    path: str = ""
    wavelength_unit: str = ""

    def __post_init__(self) -> None:
        src = f" in {self.path}" if self.path else ""
        S = np.asarray(self.spectra, dtype=np.float64)
        if S.ndim == 1:
            S = S[:, None]
        if S.ndim != 2 or S.shape[0] == 0 or S.shape[1] == 0:
            raise LibraryError(f"The library{src} holds no spectra", "Give at least one spectrum with at least one value")
        self.spectra = S
        self.names = [str(n).strip() for n in self.names]
        if len(self.names) != S.shape[1]:
            raise LibraryError(
                f"The library{src} has {S.shape[1]} spectra but {len(self.names)} names",
                "Give exactly one name per spectrum",
            )
        validate_names(self.names, src)
        bad = ~np.isfinite(S)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise LibraryError(
                f"Spectrum '{self.names[col]}'{src} has a missing or non-finite value (NaN/inf) "
                f"at row {row + 1}",
                "Fill the gap (e.g. interpolate) or remove that spectrum",
            )
        if self.wavelengths_nm is not None:
            wl = np.asarray(self.wavelengths_nm, dtype=np.float64).ravel()
            if wl.size != S.shape[0]:
                raise LibraryError(
                    f"The library{src} has {wl.size} wavelengths for {S.shape[0]} values per spectrum",
                    "Give one wavelength per value",
                )
            if not np.all(np.isfinite(wl)) or np.any(wl <= 0):
                raise WavelengthError(
                    f"The library{src} has a wavelength that is not a positive number",
                    "Fix the wavelength column",
                )
            self.wavelengths_nm = wl

    def __len__(self) -> int:
        return self.spectra.shape[1]

    def index_of(self, item: Union[str, int]) -> int:
        """0-based column of a name (exact, then case-insensitive) or an index (negative ok)."""
        M = len(self)
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            i = int(item)
            if -M <= i < M:
                return i % M
            raise LibraryError(f"Endmember index {i} is out of range (the library has {M} spectra)",
                               f"Use an index from 0 to {M - 1}")
        name = str(item).strip()
        if name in self.names:
            return self.names.index(name)
        low = [n.lower() for n in self.names]
        if low.count(name.lower()) == 1:
            return low.index(name.lower())
        if low.count(name.lower()) > 1:
            same = [n for n in self.names if n.lower() == name.lower()]
            raise LibraryError(f"'{name}' matches {len(same)} spectra whose names differ only in case "
                               f"({', '.join(repr(n) for n in same[:4])})", "Give the name exactly as written")
        shown = ", ".join(self.names[:12]) + (", ..." if M > 12 else "")
        raise LibraryError(f"No spectrum named '{name}' in the library", f"Choose one of: {shown}")

    def select(self, items: Sequence[Union[str, int]]) -> SpectralLibrary:
        """A new library with the chosen spectra, in the order given (names or indices)."""
        if isinstance(items, (str, int)):
            items = [items]
        idx = [self.index_of(it) for it in items]
        if not idx:
            raise LibraryError("No endmember was selected", "Choose at least one spectrum")
        if len(set(idx)) != len(idx):
            dup = next(self.names[i] for i in idx if idx.count(i) > 1)
            raise LibraryError(f"Spectrum '{dup}' was selected twice", "Select each endmember once")
        wl = None if self.wavelengths_nm is None else self.wavelengths_nm.copy()
        return SpectralLibrary([self.names[i] for i in idx], wl, self.spectra[:, idx].copy(), self.path,
                               self.wavelength_unit)


def validate_names(names: Sequence[str], where: str = "") -> None:
    """Raise :class:`LibraryError` on empty or duplicate names. Names are compared as
    written: 'Tree' and 'TREE' are two spectra (their output files cannot collide on a
    case-insensitive file system: the writer makes the second ``TREE_2.tif``)."""
    seen = {}
    for i, n in enumerate(names):
        if not n:
            raise LibraryError(f"Spectrum {i + 1}{where} has an empty name", "Give every spectrum a name")
        key = n
        if key in seen:
            raise LibraryError(
                f"The spectrum name '{n}'{where} is used twice (columns {seen[key] + 1} and {i + 1})",
                "Give every spectrum a unique name",
            )
        seen[key] = i


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


def read_library(path: Union[str, os.PathLike]) -> SpectralLibrary:
    """Read a CSV (``.csv``, ``.txt``, ``.tsv``) or ENVI spectral library (``.sli``,
    ``.hdr``, or any data file with a ``.hdr`` beside it).

    Raises :class:`LibraryError` / :class:`WavelengthError` (both :class:`UrdmError`)
    for any problem with the file; never another exception for a bad file.
    """
    p = Path(path)
    if not p.exists():
        raise LibraryError(f"Library file '{p}' does not exist", "Check the path")
    if not p.is_file():
        raise LibraryError(f"Library path '{p}' is not a file", "Choose a .csv or .sli file")
    ext = p.suffix.lower()
    if ext in (".sli", ".hdr", ".lib", ".spl") or (ext not in (".csv", ".txt", ".tsv") and _find_hdr(p)):
        return read_envi_library(p)
    return read_csv_library(p)


def _read_text(p: Path) -> str:
    try:
        size = p.stat().st_size
        if size > MAX_LIBRARY_BYTES:
            raise LibraryError(f"Library file '{p}' is too large ({size / 2**20:.0f} MB)",
                               "Check that this is a spectral library")
        raw = p.read_bytes()
    except OSError as exc:
        raise LibraryError(f"Cannot read library file '{p}' ({exc.strerror or exc})",
                           "Check that the file exists and is readable") from None
    utf16 = _utf16_codec(raw)
    if utf16:  # Excel's "Unicode text" and Windows tools save UTF-16
        try:
            return raw.decode(utf16).lstrip("\ufeff")
        except UnicodeDecodeError:
            raise LibraryError(f"Library file '{p}' looks like UTF-16 text but does not decode as {utf16}",
                               "Save it as CSV in UTF-8") from None
    if b"\x00" in raw[:4096]:
        raise LibraryError(f"Library file '{p}' is binary, not CSV text",
                           "Give a CSV file, or an ENVI .sli with its .hdr")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _utf16_codec(raw: bytes) -> str:
    """"utf-16" (with a byte-order mark), "utf-16-le"/"utf-16-be" (without one: every other
    byte of the first 4 KiB is 0, as in ASCII text saved as UTF-16) or ""."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    head = raw[:4096]
    if len(head) >= 4 and len(head) % 2 == 0:
        if head[1::2].count(0) == len(head) // 2 and head[0::2].count(0) == 0:
            return "utf-16-le"
        if head[0::2].count(0) == len(head) // 2 and head[1::2].count(0) == 0:
            return "utf-16-be"
    return ""


def read_csv_library(path: Union[str, os.PathLike]) -> SpectralLibrary:
    """Read a CSV library (see module docstring for the layout)."""
    p = Path(path)
    return parse_csv_library(_read_text(p), str(p))


def _sniff_delimiter(text: str) -> str:
    sample = "\n".join([ln for ln in text.splitlines() if not ln.lstrip().startswith("#")][:20])
    try:
        d = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        if d in ",;\t":
            return d
    except csv.Error:
        pass
    first = text.splitlines()[0] if text else ""
    counts = {d: first.count(d) for d in ("\t", ";", ",")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _to_float(cell: str, decimal_comma: bool) -> float:
    s = cell.strip()
    if decimal_comma:
        s = s.replace(",", ".")
    return float(s)


def parse_csv_library(text: str, source: str = "") -> SpectralLibrary:
    """Parse CSV text into a library; ``source`` names the file in messages."""
    where = f" in {source}" if source else ""
    if "\x00" in text:
        raise LibraryError(f"The library{where} contains NUL characters", "Give a plain-text CSV file")
    if not text.strip():
        raise LibraryError(f"The library file{where} is empty", "Give a CSV with a header row and one column per spectrum")
    delim = _sniff_delimiter(text)
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delim)
                if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]  # '#': a comment line
    except csv.Error as exc:
        raise LibraryError(f"The library{where} is not valid CSV ({exc})", "Save it again as CSV") from None
    if len(rows) < 2:
        raise LibraryError(f"The library{where} has a header but no data rows",
                           "Add one row per wavelength below the header")
    header = [c.strip() for c in rows[0]]
    # trailing empty header cells from a trailing delimiter
    while len(header) > 2 and header[-1] == "" and all(len(r) < len(header) or not r[len(header) - 1].strip() for r in rows[1:]):
        header.pop()
    if len(header) < 2:
        raise LibraryError(
            f"The library{where} has only one column",
            "Put wavelengths in the first column and one named column per spectrum, separated by , ; or tab",
        )
    try:
        float(header[0].replace(",", "."))
        numeric_header = True
    except ValueError:
        numeric_header = False
    if numeric_header:
        raise LibraryError(f"The first row of the library{where} holds numbers, not names",
                           "Add a header row: wavelength_nm,<name 1>,<name 2>,...")
    factor, band_index = unit_from_header(header[0])
    names = header[1:]
    validate_names(names, where)
    decimal_comma = delim != "," and any("," in c for c in rows[1][:2]) and not any("." in c for c in rows[1][:2])
    ncol = len(header)
    data = np.empty((len(rows) - 1, ncol), dtype=np.float64)
    for r, row in enumerate(rows[1:], start=2):
        cells = list(row) + [""] * (ncol - len(row))
        if len(row) > ncol and any(c.strip() for c in row[ncol:]):
            raise LibraryError(f"Row {r} of the library{where} has {len(row)} cells but the header has {ncol}",
                               "Give every row one wavelength and one value per named column")
        for c in range(ncol):
            cell = cells[c]
            col = header[c] if c else "wavelength"
            if not cell.strip():
                raise LibraryError(f"Row {r}, column '{col}' of the library{where} is empty",
                                   "Fill in every value (no gaps)")
            try:
                data[r - 2, c] = _to_float(cell, decimal_comma)
            except ValueError:
                raise LibraryError(
                    f"Row {r}, column '{col}' of the library{where} is not a number ('{cell.strip()[:30]}')",
                    "Use plain numbers (decimal point) in every cell below the header",
                ) from None
    wl_raw = data[:, 0]
    spectra = data[:, 1:]
    if band_index:
        wl = None
    else:
        if not np.all(np.isfinite(wl_raw)) or np.any(wl_raw <= 0):
            r = int(np.flatnonzero(~np.isfinite(wl_raw) | (wl_raw <= 0))[0]) + 2
            raise WavelengthError(f"Row {r} of the library{where} has a wavelength that is not a positive number",
                                  "Fix the wavelength column")
        unit = _unit_read(factor, wl_raw)
        wl = wl_raw * (factor if factor is not None else infer_unit_factor(wl_raw))
        order = np.argsort(wl, kind="stable")
        wl, spectra = wl[order], spectra[order]
        twice = np.flatnonzero(np.diff(wl) == 0)
        if twice.size:  # two values for one wavelength: which one is meant cannot be guessed
            i = int(twice[0])
            rows = sorted((int(order[i]) + 2, int(order[i + 1]) + 2))
            raise WavelengthError(f"The wavelength {wl_raw[order[i]]:g} appears twice in the library{where} "
                                  f"(rows {rows[0]} and {rows[1]})", "Keep one row per wavelength")
    return SpectralLibrary(names, wl, spectra, source, "" if band_index else unit)


def _unit_read(factor: Optional[float], raw: np.ndarray) -> str:
    """The unit label of wavelengths read with ``factor`` (None: not stated, inferred from ``raw``)."""
    if factor is not None:
        return unit_label(factor)
    return unit_label(infer_unit_factor(raw)) + " (inferred)"


# ENVI ----------------------------------------------------------------------------------

_ENVI_DTYPES = {
    1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4", 14: "i8", 15: "u8",
}


def _find_hdr(p: Path) -> Optional[Path]:
    for cand in (Path(str(p) + ".hdr"), p.with_suffix(".hdr"), p.with_suffix(".HDR")):
        if cand.is_file() and cand != p:
            return cand
    return None


def _find_data(hdr: Path) -> Optional[Path]:
    stem = hdr.with_suffix("")
    for cand in (stem.with_suffix(".sli"), stem.with_suffix(".SLI"), stem.with_suffix(".lib"),
                 stem.with_suffix(".spl"), stem):
        if cand.is_file() and cand != hdr:
            return cand
    return None


def parse_envi_header(text: str, source: str = "") -> dict:
    """Parse ENVI header text into ``{key: value}`` (keys lower-case, single spaces;
    brace values joined across lines, braces kept). Raises :class:`LibraryError`."""
    where = f" '{source}'" if source else ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not lines or lines[0].strip().upper() != "ENVI":
        raise LibraryError(f"The header{where} does not start with 'ENVI'",
                           "Give the .hdr file written with the ENVI spectral library")
    out = {}
    i = 1
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith(";"):
            continue
        if "=" not in line:
            raise LibraryError(f"Line {i} of the header{where} is not 'key = value': '{line[:40]}'",
                               "Fix or regenerate the .hdr file")
        key, value = line.split("=", 1)
        key = re.sub(r"\s+", " ", key.strip().lower())
        value = value.strip()
        if value.startswith("{"):
            parts = [value]
            while "}" not in parts[-1]:
                # a new "key = {" before the closing brace means this list was never closed
                if i >= len(lines) or re.match(r"^\s*[a-z][\w ]*=\s*\{", lines[i], re.IGNORECASE):
                    raise LibraryError(f"The '{key}' list in the header{where} has no closing brace",
                                       "Fix or regenerate the .hdr file")
                parts.append(lines[i].strip())
                i += 1
            value = " ".join(parts)
        out[key] = value
    return out


def _envi_int(hdr: dict, key: str, source: str, default: Optional[int] = None) -> int:
    if key not in hdr:
        if default is not None:
            return default
        raise LibraryError(f"The header '{source}' lacks '{key}'", "Fix or regenerate the .hdr file")
    try:
        return int(hdr[key].strip())
    except ValueError:
        raise LibraryError(f"'{key}' in the header '{source}' is not an integer ('{hdr[key][:30]}')",
                           "Fix or regenerate the .hdr file") from None


def _envi_names(value: str) -> list:
    v = value.strip()
    if v.startswith("{"):
        v = v[1:]
    if v.endswith("}"):
        v = v[:-1]
    return [n.strip() for n in v.split(",")]


def _plausible(values: np.ndarray) -> bool:
    """Spectral values as a library holds them: finite and within ±1e6 (reflectance, percent
    or scaled integers; not 1e38 or NaN as floats in the wrong byte order read), and not
    all below 1e-30 in magnitude (denormals, the other symptom)."""
    v = values.astype(np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)) or np.any(np.abs(v) > 1e6):
        return False
    nz = np.abs(v[v != 0])
    return nz.size == 0 or float(np.median(nz)) > 1e-30


def _envi_pair(p: Path) -> tuple:
    """(header path, data path) of an ENVI library given either of the two files."""
    if p.suffix.lower() == ".hdr":
        data_path = _find_data(p)
        if data_path is None:
            raise LibraryError(f"No data file (.sli) found beside '{p}'", "Keep the .sli next to its .hdr")
        return p, data_path
    hdr_path = _find_hdr(p)
    if hdr_path is None:
        raise LibraryError(f"No ENVI header (.hdr) found beside '{p}'",
                           "Keep the .hdr next to the .sli (same name)")
    return hdr_path, p


def _envi_layout(hdr: dict, src: str) -> tuple:
    """(samples = values per spectrum, lines = spectra, header offset in bytes, byte order 0/1,
    numpy dtype of one value) from a spectral library's header."""
    ftype = hdr.get("file type", "ENVI Spectral Library").strip().lower()
    if "spectral library" not in ftype:
        raise LibraryError(f"'{src}' is an '{hdr.get('file type')}', not an ENVI Spectral Library",
                           "Open images as the input raster; give a spectral library (.sli) or a CSV here")
    samples = _envi_int(hdr, "samples", src)
    lines = _envi_int(hdr, "lines", src)
    bands = _envi_int(hdr, "bands", src, 1)
    offset = _envi_int(hdr, "header offset", src, 0)
    dtype_code = _envi_int(hdr, "data type", src)
    order = _envi_int(hdr, "byte order", src, 0)
    if samples <= 0 or lines <= 0 or bands != 1 or offset < 0:
        raise LibraryError(
            f"The header '{src}' gives samples={samples}, lines={lines}, bands={bands}, header offset={offset}",
            "A spectral library needs samples (values per spectrum) > 0, lines (spectra) > 0 and bands = 1",
        )
    if dtype_code not in _ENVI_DTYPES:
        raise LibraryError(f"Unsupported ENVI data type {dtype_code} in '{src}'",
                           "Save the library as float32 (data type 4) or float64 (5)")
    if order not in (0, 1):
        raise LibraryError(f"'byte order = {order}' in '{src}' must be 0 or 1", "Fix the .hdr file")
    dt = np.dtype(("<" if order == 0 else ">") + _ENVI_DTYPES[dtype_code])
    return samples, lines, offset, order, dt


def _read_envi_values(data_path: Path, offset: int, count: int, dt: np.dtype, lines: int,
                      samples: int) -> np.ndarray:
    """The ``count`` (= lines · samples) values of the data file after ``offset`` bytes, (count,) of ``dt``."""
    try:
        size = data_path.stat().st_size
        if size < offset + count * dt.itemsize:
            raise LibraryError(
                f"'{data_path}' holds {size} bytes but its header needs {offset + count * dt.itemsize} "
                f"({lines} spectra x {samples} values of {dt.itemsize} bytes + {offset} offset)",
                "Check that the .hdr belongs to this .sli and the file is complete",
            )
        with open(data_path, "rb") as fh:
            fh.seek(offset)
            buf = fh.read(count * dt.itemsize)
    except OSError as exc:
        raise LibraryError(f"Cannot read '{data_path}' ({exc.strerror or exc})", "Check the file") from None
    return np.frombuffer(buf, dtype=dt, count=count)


def _refuse_wrong_byte_order(values: np.ndarray, order: int, src: str, data_path: Path) -> None:
    """Raise when float values are implausible as read but plausible byte-swapped (the header's
    'byte order' is wrong)."""
    if values.dtype.kind == "f" and not _plausible(values) and _plausible(values.byteswap()):
        other = 1 - order
        raise LibraryError(f"'{src}' says 'byte order = {order}' ({'little' if order == 0 else 'big'}-endian) but the "
                           f"values of '{data_path.name}' read that way are not reflectance; read "
                           f"{'big' if other else 'little'}-endian they are",
                           f"Set 'byte order = {other}' in the .hdr")


def _reflectance_scaled(spectra: np.ndarray, hdr: dict, src: str) -> np.ndarray:
    """``spectra`` (Bl, M) divided by the header's 'reflectance scale factor' when it is a positive number."""
    rsf = hdr.get("reflectance scale factor")
    if rsf is None:
        return spectra
    try:
        f = float(rsf)
    except ValueError:
        raise LibraryError(f"'reflectance scale factor' in '{src}' is not a number", "Fix the .hdr file") from None
    return spectra / f if math.isfinite(f) and f > 0 else spectra


def _envi_spectra_names(hdr: dict, lines: int, src: str) -> list:
    """The M (= lines) spectra names of the header, or "Spectrum 1" … when it lists none."""
    if "spectra names" not in hdr:
        return [f"Spectrum {i + 1}" for i in range(lines)]
    names = _envi_names(hdr["spectra names"])
    if len(names) != lines:
        raise LibraryError(f"'{src}' lists {len(names)} spectra names for {lines} spectra (lines)",
                           "Give one name per spectrum in 'spectra names'")
    return names


def _envi_library_wavelengths(hdr: dict, samples: int, src: str) -> tuple:
    """(wavelengths nm (Bl,) as listed, unsorted, or None, the unit as read or "")."""
    if "wavelength" not in hdr:
        return None, ""
    unit = hdr.get("wavelength units")
    if is_index_unit(unit):
        return None, ""
    raw = parse_number_list(hdr["wavelength"], f"'wavelength' list in {src}")
    if raw.size != samples:
        raise LibraryError(f"'{src}' lists {raw.size} wavelengths for {samples} values per spectrum",
                           "Give one wavelength per sample")
    factor = parse_unit(unit)
    if not np.all(np.isfinite(raw)) or np.any(raw <= 0):
        raise WavelengthError(f"'{src}' has a wavelength that is not a positive number",
                              "Fix the 'wavelength' list")
    return raw * (factor if factor is not None else infer_unit_factor(raw)), _unit_read(factor, raw)


def read_envi_library(path: Union[str, os.PathLike]) -> SpectralLibrary:
    """Read an ENVI spectral library; ``path`` is the data file or its ``.hdr``."""
    hdr_path, data_path = _envi_pair(Path(path))
    src = str(hdr_path)
    hdr = parse_envi_header(_read_text(hdr_path), src)
    samples, lines, offset, order, dt = _envi_layout(hdr, src)
    values = _read_envi_values(data_path, offset, samples * lines, dt, lines, samples)
    _refuse_wrong_byte_order(values, order, src, data_path)
    spectra = _reflectance_scaled(values.astype(np.float64).reshape(lines, samples).T, hdr, src)
    names = _envi_spectra_names(hdr, lines, src)
    wl, unit_read = _envi_library_wavelengths(hdr, samples, src)
    if wl is not None:
        srt = np.argsort(wl, kind="stable")
        wl, spectra = wl[srt], spectra[srt]
    return SpectralLibrary(names, wl, spectra, str(data_path), unit_read)


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def write_library_csv(path: Union[str, os.PathLike], lib: SpectralLibrary) -> str:
    """Write ``lib`` as CSV: header ``wavelength_nm,<name>,...`` (``band,...`` when the
    library has no wavelengths), one row per wavelength, values with 10 significant
    digits. Names with commas or quotes are quoted; the last line is this tool's marker
    comment (``output_policy.TEXT_MARK``). Returns the path written; raises
    :class:`~urdm_plugin.core.errors.OutputError` when it cannot be written."""
    from .output_policy import TEXT_MARK

    p = Path(path)
    first = "wavelength_nm" if lib.wavelengths_nm is not None else "band"
    col0 = lib.wavelengths_nm if lib.wavelengths_nm is not None else np.arange(1, lib.spectra.shape[0] + 1)
    try:
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow([first, *lib.names])
            for i in range(lib.spectra.shape[0]):
                w.writerow([f"{col0[i]:.10g}", *(f"{v:.10g}" for v in lib.spectra[i])])
            fh.write(TEXT_MARK + "\n")
    except OSError as exc:
        why, fix = os_error_cause(exc)
        raise OutputError(f"Cannot write '{p}' ({why})", fix) from None
    return str(p)


__all__ = [
    "SpectralLibrary",
    "read_library",
    "read_csv_library",
    "read_envi_library",
    "parse_csv_library",
    "parse_envi_header",
    "write_library_csv",
    "validate_names",
    "UrdmError",
]
