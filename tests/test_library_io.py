"""core.io.library: CSV and ENVI spectral libraries, selection, errors, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from urdm_plugin.core.errors import LibraryError, UrdmError, WavelengthError
from urdm_plugin.core.io.library import (
    SpectralLibrary,
    parse_csv_library,
    read_library,
    write_library_csv,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# -- CSV ------------------------------------------------------------------------------------

@pytest.mark.parametrize("delim", [",", ";", "\t"])
def test_csv_delimiters_are_sniffed(tmp_path, delim):
    text = delim.join(["wavelength_nm", "Tree", "Soil"]) + "\n"
    text += "\n".join(delim.join([f"{w}", f"{0.1 * i:.3f}", f"{0.2 + 0.01 * i:.3f}"])
                      for i, w in enumerate([400, 500, 600]))
    lib = read_library(write(tmp_path, "lib.csv", text))
    assert lib.names == ["Tree", "Soil"]
    np.testing.assert_allclose(lib.wavelengths_nm, [400, 500, 600])
    np.testing.assert_allclose(lib.spectra[:, 0], [0.0, 0.1, 0.2])
    assert lib.spectra.shape == (3, 2) and lib.spectra.dtype == np.float64


def test_quoted_names_with_commas(tmp_path):
    text = 'wavelength_nm,"Albite, GDS30","Road ""asphalt"""\n400,0.1,0.2\n500,0.3,0.4\n'
    lib = read_library(write(tmp_path, "lib.csv", text))
    assert lib.names == ["Albite, GDS30", 'Road "asphalt"']


@pytest.mark.parametrize("header,values,expected", [
    ("wavelength_nm", ["400", "2500"], [400, 2500]),
    ("Wavelength (um)", ["0.4", "2.5"], [400, 2500]),
    ("wavelength [µm]", ["0.4", "2.5"], [400, 2500]),
    ("wavelength", ["0.4", "2.5"], [400, 2500]),  # inferred µm (< 30)
    ("wavelength", ["400", "2500"], [400, 2500]),  # inferred nm
])
def test_csv_wavelength_units_from_header(tmp_path, header, values, expected):
    text = f"{header},a\n{values[0]},0.1\n{values[1]},0.2\n"
    np.testing.assert_allclose(read_library(write(tmp_path, "l.csv", text)).wavelengths_nm, expected)


def test_semicolon_csv_with_decimal_commas(tmp_path):
    lib = read_library(write(tmp_path, "l.csv", "wavelength_nm;a;b\n400,5;0,1;0,2\n500,0;0,3;0,4\n"))
    np.testing.assert_allclose(lib.wavelengths_nm, [400.5, 500.0])
    np.testing.assert_allclose(lib.spectra, [[0.1, 0.2], [0.3, 0.4]])


def test_rows_sorted_by_wavelength(tmp_path):
    lib = read_library(write(tmp_path, "l.csv", "wavelength_nm,a\n600,0.6\n400,0.4\n500,0.5\n"))
    np.testing.assert_allclose(lib.wavelengths_nm, [400, 500, 600])
    np.testing.assert_allclose(lib.spectra[:, 0], [0.4, 0.5, 0.6])


def test_band_column_means_no_wavelengths(tmp_path):
    lib = read_library(write(tmp_path, "l.csv", "band,a\n1,0.1\n2,0.2\n"))
    assert lib.wavelengths_nm is None and lib.spectra.shape == (2, 1)


@pytest.mark.parametrize("text,match", [
    ("wavelength_nm,a,a\n400,1,2\n", "used twice"),
    ("wavelength_nm,a,\n400,1,2\n", "empty name"),
    ("wavelength_nm,a,b\n400,0.1,0.2\n500,0.3,oops\n", r"Row 3, column 'b' .*'oops'"),
    ("wavelength_nm,a,b\n400,0.1,0.2\n5x0,0.3,0.4\n", r"Row 3, column 'wavelength'"),
    ("wavelength_nm,a,b\n400,0.1,0.2\n500,0.3\n", r"Row 3, column 'b' .* empty"),
    ("wavelength_nm,a,b\n400,0.1,0.2,0.9\n", "Row 2 .*4 cells"),
    ("wavelength_nm,a\n400,nan\n", "Spectrum 'a' .*NaN"),
    ("wavelength_nm,a\n400,inf\n", "Spectrum 'a' .*non-finite"),
    ("wavelength_nm,a\n", "no data rows"),
    ("", "empty"),
    ("   \n\n", "empty"),
    ("wavelength_nm\n400\n", "only one column"),
    ("400,0.1\n500,0.2\n", "holds numbers, not names"),
    ("wavelength_nm,a\n-400,0.1\n", "Row 2 .*not a positive number"),
])
def test_csv_errors_name_the_problem(tmp_path, text, match):
    with pytest.raises(UrdmError, match=match) as e:
        read_library(write(tmp_path, "bad.csv", text))
    assert e.value.fix  # every message carries a fix


def test_unknown_unit_in_csv_header_is_wavelength_error(tmp_path):
    with pytest.raises(WavelengthError, match="does not name a wavelength unit"):
        read_library(write(tmp_path, "l.csv", "wavenumber (cm-1),a\n4000,0.1\n"))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(LibraryError, match="does not exist"):
        read_library(tmp_path / "nope.csv")
    with pytest.raises(LibraryError, match="not a file"):
        read_library(tmp_path)
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(LibraryError, match="binary"):
        read_library(binary)


def test_selection_by_name_and_index():
    lib = SpectralLibrary(["Tree", "Water", "Soil"], np.array([400.0, 500.0]), np.arange(6.0).reshape(2, 3))
    sel = lib.select(["Soil", 0])
    assert sel.names == ["Soil", "Tree"] and len(sel) == 2
    np.testing.assert_allclose(sel.spectra, [[2, 0], [5, 3]])
    assert lib.select(["water"]).names == ["Water"]  # case-insensitive when unambiguous
    assert lib.select([-1]).names == ["Soil"]
    with pytest.raises(LibraryError, match="No spectrum named 'Rock'") as e:
        lib.select(["Rock"])
    assert "Tree, Water, Soil" in e.value.fix
    with pytest.raises(LibraryError, match="out of range"):
        lib.select([3])
    with pytest.raises(LibraryError, match="selected twice"):
        lib.select(["Tree", 0])
    with pytest.raises(LibraryError, match="No endmember"):
        lib.select([])


def test_csv_round_trip_keeps_names_wavelengths_values(tmp_path):
    rng = np.random.default_rng(3)
    lib = SpectralLibrary(['a, "quoted"', "Straße", "x;y"], np.array([400.25, 512.5, 2400.0]),
                          rng.uniform(0, 1, (3, 3)))
    p = write_library_csv(tmp_path / "out.csv", lib)
    assert Path(p).read_text(encoding="utf-8").splitlines()[0].startswith("wavelength_nm,")
    back = read_library(p)
    assert back.names == lib.names
    np.testing.assert_allclose(back.wavelengths_nm, lib.wavelengths_nm)
    np.testing.assert_allclose(back.spectra, lib.spectra, rtol=1e-9)
    nowl = SpectralLibrary(["a"], None, np.array([[0.1], [0.2]]))
    assert read_library(write_library_csv(tmp_path / "nowl.csv", nowl)).wavelengths_nm is None


_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_urdm_error(text):
    try:
        lib = parse_csv_library(text)
    except UrdmError:
        return
    assert lib.spectra.ndim == 2 and np.all(np.isfinite(lib.spectra))
    assert len(lib.names) == lib.spectra.shape[1]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([",", ";", "\t"]),
    st.lists(st.lists(_cell, min_size=1, max_size=4), min_size=1, max_size=6),
    st.lists(st.text(max_size=8), min_size=1, max_size=4),
)
def test_table_like_text_parses_or_raises_urdm_error(delim, rows, names):
    text = delim.join(["wavelength_nm", *names]) + "\n" + "\n".join(delim.join(r) for r in rows)
    try:
        lib = parse_csv_library(text)
    except UrdmError:
        return
    assert np.all(np.isfinite(lib.spectra)) and np.all(lib.wavelengths_nm > 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
             .map(str.strip).filter(bool), min_size=1, max_size=5, unique_by=str.lower),
    st.integers(min_value=1, max_value=8),
    st.sampled_from([",", ";", "\t"]),
)
def test_valid_libraries_read_back_exactly(tmp_path, names, n_rows, delim):
    rng = np.random.default_rng(n_rows)
    wl = np.sort(rng.choice(np.arange(350, 2600), n_rows, replace=False)).astype(float)
    S = rng.uniform(0, 1, (n_rows, len(names))).round(6)
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, delimiter=delim, lineterminator="\n").writerows(
        [["wavelength_nm", *names], *[[f"{w:g}", *(repr(float(v)) for v in row)] for w, row in zip(wl, S)]])
    lib = parse_csv_library(buf.getvalue())
    assert lib.names == names
    np.testing.assert_allclose(lib.wavelengths_nm, wl)
    np.testing.assert_allclose(lib.spectra, S)


# -- ENVI spectral libraries ---------------------------------------------------------------

def write_sli(tmp_path: Path, spectra: np.ndarray, names=None, wl=None, unit="Micrometers", dtype=">f8",
              offset=0, extra="", stem="lib") -> Path:
    """Write an ENVI spectral library: spectra (Bl, M) -> lines = M, samples = Bl."""
    codes = {"f4": 4, "f8": 5, "i2": 2, "u2": 12}
    dt = np.dtype(dtype)
    data = spectra.T.astype(dt)
    sli = tmp_path / f"{stem}.sli"
    sli.write_bytes(b"\x7f" * offset + data.tobytes())
    hdr = ["ENVI", "file type = ENVI Spectral Library", f"samples = {spectra.shape[0]}",
           f"lines = {spectra.shape[1]}", "bands = 1", f"header offset = {offset}",
           f"data type = {codes[dt.str[1:]]}", "interleave = bsq", f"byte order = {1 if dt.str[0] == '>' else 0}"]
    if unit is not None:
        hdr.append(f"wavelength units = {unit}")
    if names is not None:
        hdr.append("spectra names = {\n " + ",\n ".join(names) + "}")
    if wl is not None:
        hdr.append("wavelength = {" + ", ".join(f"{w:.6f}" for w in wl) + "}")
    (tmp_path / f"{stem}.hdr").write_text("\n".join(hdr) + "\n" + extra)
    return sli


def test_envi_library_big_endian_float64_with_offset(tmp_path):
    S = np.array([[0.1, 0.5], [0.2, 0.6], [0.3, 0.7]])
    sli = write_sli(tmp_path, S, ["Grass", "Dry soil"], [0.4, 0.5, 0.6], dtype=">f8", offset=16)
    for p in (sli, sli.with_suffix(".hdr")):
        lib = read_library(p)
        assert lib.names == ["Grass", "Dry soil"]
        np.testing.assert_allclose(lib.wavelengths_nm, [400, 500, 600])
        np.testing.assert_allclose(lib.spectra, S)


def test_envi_library_reflectance_scale_factor_and_int16(tmp_path):
    S = np.array([[1000, 5000], [2000, 6000]])
    sli = write_sli(tmp_path, S, ["a", "b"], [400, 500], unit="Nanometers", dtype="<i2",
                    extra="reflectance scale factor = 10000\n")
    np.testing.assert_allclose(read_library(sli).spectra, S / 10000)


def test_envi_library_without_names_or_wavelengths(tmp_path):
    lib = read_library(write_sli(tmp_path, np.ones((3, 2)), None, None, unit=None))
    assert lib.names == ["Spectrum 1", "Spectrum 2"] and lib.wavelengths_nm is None


@pytest.mark.parametrize("case,match", [
    ("names", "lists 1 spectra names for 2"),
    ("wl", "lists 2 wavelengths for 3"),
    ("short", "holds .* bytes but its header needs"),
    ("dtype", "Unsupported ENVI data type 6"),
    ("magic", "does not start with 'ENVI'"),
    ("image", "not an ENVI Spectral Library"),
    ("nohdr", "No ENVI header"),
    ("unit", "Unknown wavelength unit 'parsecs'"),
    ("dupe", "used twice"),
    ("nan", "Spectrum 'b' .*NaN"),
    ("brace", "no closing brace"),
])
def test_envi_library_errors(tmp_path, case, match):
    S = np.ones((3, 2))
    names, wl, unit = ["a", "b"], [0.4, 0.5, 0.6], "Micrometers"
    if case == "names":
        names = ["a"]
    if case == "wl":
        wl = [0.4, 0.5]
    if case == "unit":
        unit = "parsecs"
    if case == "dupe":
        names = ["a", "a"]
    if case == "nan":
        S[1, 1] = np.nan
    sli = write_sli(tmp_path, S, names, wl, unit=unit)
    hdr = sli.with_suffix(".hdr")
    text = hdr.read_text()
    if case == "short":
        sli.write_bytes(sli.read_bytes()[:-8])
    if case == "dtype":
        hdr.write_text(text.replace("data type = 5", "data type = 6"))
    if case == "magic":
        hdr.write_text(text.replace("ENVI\n", "", 1))
    if case == "image":
        hdr.write_text(text.replace("ENVI Spectral Library", "ENVI Standard"))
    if case == "nohdr":
        hdr.unlink()
    if case == "brace":
        hdr.write_text(text.replace("}", "", 1))
    with pytest.raises(UrdmError, match=match):
        read_library(sli)


def test_a_wavelength_given_twice_is_refused_naming_both_rows(tmp_path):
    """Two values for one wavelength cannot be interpolated: the rows are named (the file
    may list them in any order; rows count from the header as row 1)."""
    text = "wavelength_nm,Tree,Soil\n700,0.1,0.2\n600,0.1,0.3\n800,0.3,0.3\n600,0.2,0.3\n"
    with pytest.raises(WavelengthError, match=r"600 appears twice .*rows 3 and 5"):
        read_library(write(tmp_path, "lib.csv", text))
    ok = read_library(write(tmp_path, "ok.csv", "wavelength_nm,Tree\n700,0.1\n600,0.2\n800,0.3\n"))
    np.testing.assert_array_equal(ok.wavelengths_nm, [600, 700, 800])  # unsorted rows are fine


def test_names_differing_only_in_case_are_two_spectra_with_their_own_files(tmp_path):
    """'Tree' and 'TREE' are not "used twice": both are read, a name matching both in
    another case is refused as ambiguous, and their output files do not collide on a
    case-insensitive file system."""
    from urdm_plugin.core.io.image import ImageInfo
    from urdm_plugin.core.io.writer import OutputWriter

    p = tmp_path / "lib.csv"
    p.write_text("wavelength_nm,Tree,TREE\n400,0.1,0.2\n500,0.3,0.4\n")
    lib = read_library(p)
    assert lib.names == ["Tree", "TREE"] and lib.select(["TREE"]).spectra[0, 0] == 0.2
    with pytest.raises(LibraryError, match="differ only in case"):
        lib.select(["tree"])
    info = ImageInfo("x.tif", 3, 2, 2, (0, 1, 0, 0, 0, -1), "", None, None, np.ones(2), np.zeros(2), [None] * 2,
                     np.ones(2, bool), ["a", "b"], "Float32")
    with OutputWriter(str(tmp_path / "out"), info) as w:
        files = {Path(w.add_raster(f"em{i}", n)).name.lower() for i, n in enumerate(lib.names)}
        w.abort()
    assert len(files) == 2


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_a_utf16_csv_is_read_not_called_binary(tmp_path, encoding):
    p = tmp_path / "lib.csv"
    p.write_bytes("wavelength_nm,Eiche,Böden\n400,0.1,0.2\n500,0.3,0.4\n".encode(encoding))
    lib = read_library(p)
    assert lib.names == ["Eiche", "Böden"] and lib.spectra.tolist() == [[0.1, 0.2], [0.3, 0.4]]


@pytest.mark.parametrize("dtype", [">f4", "<f4", ">f8", "<f8"])
def test_an_sli_with_the_wrong_byte_order_is_named_not_a_nan_gap(tmp_path, dtype):
    S = np.random.default_rng(3).uniform(0.02, 0.9, (40, 3))
    sli = write_sli(tmp_path, S, ["a", "b", "c"], np.linspace(0.4, 2.4, 40))
    np.testing.assert_allclose(read_library(sli).spectra, S)
    sli = write_sli(tmp_path, S, ["a", "b", "c"], np.linspace(0.4, 2.4, 40), dtype=dtype)
    hdr = sli.with_suffix(".hdr")
    declared = 1 if dtype[0] == ">" else 0
    hdr.write_text(hdr.read_text().replace(f"byte order = {declared}", f"byte order = {1 - declared}"))
    with pytest.raises(LibraryError, match=rf"says 'byte order = {1 - declared}'.*Set 'byte order = {declared}'"):
        read_library(sli)


def test_the_unit_a_library_was_read_in_is_kept_and_says_when_it_was_inferred(tmp_path):
    from urdm_plugin.core.io.library import read_library

    for header, first, unit in (("wavelength", "0.5", "µm (inferred)"), ("wavelength", "500", "nm (inferred)"),
                                ("wavelength_um", "0.5", "µm"), ("wavelength_nm", "500", "nm")):
        p = tmp_path / f"{header}_{first}.csv"
        p.write_text(f"{header},a\n{first},0.1\n{float(first) * 1.2},0.2\n")
        lib = read_library(p)
        assert lib.wavelength_unit == unit, header
        assert lib.select(["a"]).wavelength_unit == unit
