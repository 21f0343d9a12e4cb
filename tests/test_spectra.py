"""core.bands: units, wavelength parsing, resampling, band matching and scale checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urdm_plugin.core.bands import (
    REASON_BBL,
    REASON_EDGE,
    REASON_GAP,
    REASON_RANGE,
    REASON_WATER,
    check_reflectance_scale,
    match_library,
    require_bands,
    resample_spectra,
)
from urdm_plugin.core.errors import InputImageError, UrdmError, WavelengthError
from urdm_plugin.core.io.image import ImageInfo
from urdm_plugin.core.io.library import SpectralLibrary
from urdm_plugin.core.io.units import (
    parse_number_list,
    parse_unit,
    to_nm,
    unit_from_header,
    wavelength_from_text,
)


def make_info(wl=None, fwhm=None, usable=None, B=None) -> ImageInfo:
    B = len(wl) if wl is not None else B
    return ImageInfo(
        path="mem.tif", width=4, height=3, band_count=B, geotransform=(0, 1, 0, 0, 0, -1), crs_wkt="",
        wavelengths_nm=None if wl is None else np.asarray(wl, float),
        fwhm_nm=None if fwhm is None else np.asarray(fwhm, float),
        scales=np.ones(B), offsets=np.zeros(B), nodata=[None] * B,
        usable=np.ones(B, bool) if usable is None else np.asarray(usable, bool),
        band_names=[f"Band {i + 1}" for i in range(B)], dtype_name="Float32",
    )


# -- units ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,factor", [
    ("nm", 1.0), ("Nanometers", 1.0), ("nanometre", 1.0), ("NM", 1.0),
    ("um", 1000.0), ("µm", 1000.0), ("μm", 1000.0), ("Micrometers", 1000.0),
    ("micrometer", 1000.0), ("micrometres", 1000.0), ("microns", 1000.0), (" (um) ", 1000.0),
    ("mm", 1.0e6),
    (None, None), ("", None), ("Unknown", None),
])
def test_parse_unit_spellings(text, factor):
    assert parse_unit(text) == factor


@pytest.mark.parametrize("text", ["furlongs", "cm-1", "Wavenumber", "Index", "GHz"])
def test_unknown_unit_is_a_wavelength_error_naming_it(text):
    with pytest.raises(WavelengthError, match="Unknown wavelength unit") as e:
        parse_unit(text)
    assert text in str(e.value) and "nm" in e.value.fix


def test_to_nm_infers_micrometres_below_30_else_nm():
    np.testing.assert_allclose(to_nm([0.4, 2.5]), [400.0, 2500.0])
    np.testing.assert_allclose(to_nm([400.0, 2500.0]), [400.0, 2500.0])
    np.testing.assert_allclose(to_nm([0.4, 2.5], "nm"), [0.4, 2.5])  # explicit unit wins
    np.testing.assert_allclose(to_nm([400.0], "µm"), [400000.0])
    with pytest.raises(WavelengthError, match="<= 0"):
        to_nm([400.0, -1.0])
    with pytest.raises(WavelengthError, match="non-finite"):
        to_nm([400.0, float("nan")])


@pytest.mark.parametrize("text,expected", [
    ("401.00 nm", (401.0, 1.0)),
    ("401.00 nm (401.0000 Nanometers)", (401.0, 1.0)),
    ("Band 5 (0.4500 µm)", (0.45, 1000.0)),
    ("Band 5 (0.4500 μm)", (0.45, 1000.0)),
    ("B12: 2.19um", (2.19, 1000.0)),
    ("650 Nanometers", (650.0, 1.0)),
    ("0.45", (0.45, None)),
    ("Band 5", (None, None)),
    ("Red", (None, None)),
    ("", (None, None)),
    (None, (None, None)),
])
def test_wavelength_from_band_description(text, expected):
    assert wavelength_from_text(text) == expected


@pytest.mark.parametrize("header,expected", [
    ("wavelength_nm", (1.0, False)), ("Wavelength (um)", (1000.0, False)),
    ("wavelength [µm]", (1000.0, False)), ("Wavelength_Micrometers", (1000.0, False)),
    ("wavelength", (None, False)), ("Wavelengths", (None, False)), ("nm", (1.0, False)),
    ("band", (None, True)),
])
def test_unit_from_csv_header(header, expected):
    assert unit_from_header(header) == expected


def test_csv_header_with_unknown_unit_says_how_to_name_it():
    with pytest.raises(WavelengthError, match="wavelength_nm"):
        unit_from_header("wavenumber_cm-1")


def test_parse_number_list_envi_style_and_error_names_item():
    np.testing.assert_allclose(parse_number_list("{0.4, 0.5,\n 0.6 }"), [0.4, 0.5, 0.6])
    with pytest.raises(WavelengthError, match="Item 2 .*'abc'"):
        parse_number_list("{1, abc, 3}")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_unit_and_text_parsers_either_parse_or_raise_urdm_error(text):
    for fn in (parse_unit, wavelength_from_text, unit_from_header, parse_number_list):
        try:
            out = fn(text)
        except UrdmError:
            continue
        if fn is parse_unit:
            assert out is None or out > 0
        if fn is wavelength_from_text:
            v, f = out
            assert v is None or (v > 0 and math.isfinite(v))
        if fn is parse_number_list:
            assert out.dtype == np.float64


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.05, max_value=25000.0), min_size=1, max_size=20),
    st.sampled_from(["nm", "um", "µm", "Micrometers", None, "Unknown"]),
)
def test_number_plus_unit_text_round_trips(values, unit):
    text = "{" + ", ".join(repr(v) for v in values) + "}"
    raw = parse_number_list(text)
    np.testing.assert_allclose(raw, values)
    nm = to_nm(raw, unit)
    factor = parse_unit(unit)
    if factor is None:
        factor = 1000.0 if max(values) < 30 else 1.0
    np.testing.assert_allclose(nm, np.asarray(values) * factor)
    if unit:
        v, f = wavelength_from_text(f"{values[0]:.6f} {unit}") if unit != "Unknown" else (None, None)
        if v is not None:
            assert f == parse_unit(unit)


# -- resampling -----------------------------------------------------------------------------

def test_linear_resampling_is_exact_for_linear_spectra():
    src = np.linspace(400, 2500, 50)
    S = np.stack([0.1 + 1e-4 * src, 0.9 - 2e-4 * src], axis=1)
    dst = np.array([401.3, 1000.0, 2499.9])
    out, how = resample_spectra(src, S, dst)
    assert how == "linear"
    np.testing.assert_allclose(out, np.stack([0.1 + 1e-4 * dst, 0.9 - 2e-4 * dst], 1), atol=1e-12)


def test_unsorted_library_wavelengths_are_sorted_first():
    src = np.array([500.0, 400.0, 600.0])
    out, _ = resample_spectra(src, np.array([[5.0], [4.0], [6.0]]), np.array([450.0, 550.0]))
    np.testing.assert_allclose(out[:, 0], [4.5, 5.5])


def test_gaussian_response_integration_for_fine_library_and_fwhm():
    src = np.arange(400.0, 1000.0, 1.0)  # 1 nm library
    dip = 1.0 - 0.8 * np.exp(-0.5 * ((src - 700.0) / 3.0) ** 2)  # narrow absorption
    dst = np.array([600.0, 700.0])
    fwhm = np.array([20.0, 20.0])
    out, how = resample_spectra(src, dip[:, None], dst, fwhm)
    assert how == "gaussian"
    # convolution of two Gaussians: depth 0.8 * 3 / sqrt(3^2 + sigma^2)
    sigma = 20.0 / (2 * math.sqrt(2 * math.log(2)))
    expected = 1.0 - 0.8 * 3.0 / math.sqrt(9.0 + sigma**2)
    assert out[1, 0] == pytest.approx(expected, abs=2e-3)
    assert out[0, 0] == pytest.approx(1.0, abs=1e-6)
    lin, _ = resample_spectra(src, dip[:, None], dst)  # linear keeps the full dip
    assert lin[1, 0] == pytest.approx(0.2, abs=1e-9)


def test_coarse_library_falls_back_to_linear_even_with_fwhm():
    src = np.arange(400.0, 1000.0, 50.0)
    _, how = resample_spectra(src, np.ones((src.size, 1)), np.array([500.0]), np.array([10.0]))
    assert how == "linear"


# -- matching -------------------------------------------------------------------------------

def lib_nm(wl, M=3, names=None):
    wl = np.asarray(wl, float)
    S = np.stack([0.1 + 0.1 * j + 1e-5 * wl for j in range(M)], axis=1)
    return SpectralLibrary(names or [f"E{j}" for j in range(M)], wl, S)


def test_water_bands_masked_by_default_and_listed():
    wl = np.arange(400.0, 2500.0, 10.0)
    info = make_info(wl)
    m = match_library(info, lib_nm(np.arange(350.0, 2560.0, 5.0)))
    used = m.wavelengths_nm
    assert not np.any((used >= 1340) & (used <= 1460))
    assert not np.any((used >= 1790) & (used <= 1960))
    assert used.max() <= 2450
    water = [d for d in m.report.dropped if d[2] == REASON_WATER]
    edge = [d for d in m.report.dropped if d[2] == REASON_EDGE]
    assert len(water) + len(edge) == info.band_count - m.report.n_used
    assert {d[0] for d in water + edge}.isdisjoint(set(m.band_indices.tolist()))
    # beyond 2450 nm is the detector's edge, not water vapour: each named for what it is
    assert all(d[1] >= 2450 for d in edge) and edge and all(d[1] < 2450 for d in water)
    assert "water-vapour" in m.report.summary() and "sensor edge" in m.report.summary()
    np.testing.assert_allclose(m.E[:, 0], 0.1 + 1e-5 * used, atol=1e-12)
    assert m.E.shape == (m.report.n_used, 3) and m.names == ["E0", "E1", "E2"]


def test_water_masking_can_be_switched_off():
    wl = np.arange(400.0, 2500.0, 10.0)
    m = match_library(make_info(wl), lib_nm(np.arange(350.0, 2560.0, 5.0)), mask_water_bands=False)
    assert m.report.n_used == wl.size and not m.report.dropped
    assert "not masked" in m.report.summary()


def test_bands_outside_library_range_dropped_and_reported():
    wl = np.arange(400.0, 1000.0, 10.0)
    m = match_library(make_info(wl), lib_nm(np.arange(500.0, 800.01, 5.0)))
    assert m.report.range_nm == (500.0, 800.0)
    out = [d for d in m.report.dropped if d[2] == REASON_RANGE]
    assert len(out) == 10 + 19
    assert "outside the library" in m.report.summary()


def _holed(lib_wl, lo, hi):
    return lib_nm(lib_wl[(lib_wl <= lo) | (lib_wl >= hi)])


@pytest.mark.parametrize("fwhm", [None, 11.0])
def test_bands_in_a_hole_of_the_library_are_left_out_and_named(fwhm):
    """A library cut between 1382 and 1511 nm must not feed the image bands at 1488 and
    1499 nm with values interpolated across the hole (issue #22): they are dropped, named."""
    wl = np.arange(1305.0, 1700.0, 11.6)
    info = make_info(wl, None if fwhm is None else np.full(wl.size, fwhm))
    m = match_library(info, _holed(np.arange(400.0, 2500.0, 10.0), 1382, 1511), mask_water_bands=False)
    gap = sorted(d[1] for d in m.report.dropped if d[2] == REASON_GAP)
    assert gap == [w for w in wl if 1380 < w < 1520]  # the last sample before, the first after
    assert any(abs(w - 1490.6) < 0.1 for w in gap) and any(abs(w - 1502.2) < 0.1 for w in gap)
    assert not set(gap) & set(m.wavelengths_nm.tolist())
    said = " ".join(m.report.warnings)
    assert "1380–1520 nm" in said and f"({gap[0]:.1f} nm)" in said
    assert "no library data" in m.report.summary()


@pytest.mark.parametrize("fwhm", [None, 10.0])
@pytest.mark.parametrize("lib_step", [10.0, 25.0, "mixed"])
def test_ordinary_libraries_cover_every_band(fwhm, lib_step):
    """10-nm libraries on a 10-nm image (aligned or offset by 5 nm), a coarser 25-nm one and
    one 1 nm in the VNIR but 10 nm beyond: no band is a gap."""
    wl = np.arange(405.0, 2400.0, 10.0)
    lib_wl = (np.r_[np.arange(400.0, 1000.0, 1.0), np.arange(1000.0, 2501.0, 10.0)] if lib_step == "mixed"
              else np.arange(400.0, 2501.0, lib_step))
    for shift in (0.0, 5.0):
        m = match_library(make_info(wl + shift, None if fwhm is None else np.full(wl.size, fwhm)), lib_nm(lib_wl),
                          mask_water_bands=False)
        assert m.report.n_used == wl.size and not m.report.dropped and not m.report.warnings


def test_bad_bands_from_bbl_dropped():
    wl = np.arange(400.0, 500.0, 10.0)
    usable = np.ones(10, bool)
    usable[[0, 5]] = False
    m = match_library(make_info(wl, usable=usable), lib_nm(wl))
    assert 0 not in m.band_indices and 5 not in m.band_indices and m.report.n_used == 8
    assert [d[0] for d in m.report.dropped if d[2] == REASON_BBL] == [0, 5]


def test_micrometre_library_gives_same_E_as_nm_library():
    wl = np.arange(400.0, 900.0, 7.0)
    lib = lib_nm(np.arange(380.0, 950.0, 3.0))
    lib_um = SpectralLibrary(lib.names, lib.wavelengths_nm, lib.spectra)  # already nm inside
    np.testing.assert_allclose(match_library(make_info(wl), lib).E, match_library(make_info(wl), lib_um).E)


def test_gaussian_used_when_image_has_fwhm():
    wl = np.arange(400.0, 900.0, 10.0)
    m = match_library(make_info(wl, fwhm=np.full(wl.size, 10.0)), lib_nm(np.arange(390.0, 910.0, 1.0)))
    assert m.report.method == "gaussian"
    np.testing.assert_allclose(m.E[:, 1], 0.2 + 1e-5 * wl, atol=1e-5)  # linear spectra unchanged


def test_no_overlap_is_a_clear_error():
    with pytest.raises(WavelengthError, match="do not overlap") as e:
        match_library(make_info(np.arange(400.0, 900.0, 10.0)), lib_nm(np.arange(1000.0, 2000.0, 10.0)))
    assert "nm vs µm" in str(e.value)


def test_without_wavelengths_counts_must_match():
    info = make_info(None, B=5)
    lib = SpectralLibrary(["a", "b"], None, np.ones((5, 2)))
    m = match_library(info, lib)
    assert m.report.n_used == 5 and m.wavelengths_nm is None and m.report.method == "index"
    with pytest.raises(WavelengthError, match="6 rows and the image 5 bands"):
        match_library(info, SpectralLibrary(["a", "b"], None, np.ones((6, 2))))
    # image with wavelengths, library without: same rule
    with pytest.raises(WavelengthError, match="library has no wavelengths"):
        match_library(make_info(np.arange(400.0, 460.0, 10.0)), SpectralLibrary(["a"], None, np.ones((4, 1))))


def test_require_bands_needs_p_plus_one():
    require_bands(4, 3)
    with pytest.raises(InputImageError, match="at least 4") as e:
        require_bands(3, 3)
    assert "fewer endmembers" in e.value.fix


def test_reflectance_scale_check_warns_on_digital_numbers():
    rng = np.random.default_rng(0)
    E = rng.uniform(0.05, 0.6, (50, 3))
    refl = rng.uniform(0.02, 0.7, (50, 200))
    assert check_reflectance_scale(refl, E) == []
    warns = check_reflectance_scale(refl * 10000, E)
    assert len(warns) == 1 and "digital numbers" in warns[0] and "0.0001" in warns[0]
    assert "percent" in check_reflectance_scale(refl, E * 100)[0]


def test_a_library_covering_part_of_the_image_is_warned_about():
    wl = np.arange(400.0, 2400.0, 10.0)
    info = make_info(wl)
    narrow = match_library(info, lib_nm(np.arange(400.0, 900.0, 5.0)))  # VNIR only
    msg = next(w for w in narrow.report.warnings if "covers only" in w)
    assert f"covers only {narrow.report.n_used} of" in msg and "% of the spectrum is ignored" in msg
    assert msg in narrow.report.summary()
    full = match_library(info, lib_nm(np.arange(350.0, 2560.0, 5.0)))
    assert not any("covers only" in w for w in full.report.warnings)


def test_a_bbl_marking_every_band_bad_is_named_as_the_cause():
    wl = np.arange(400.0, 500.0, 10.0)
    with pytest.raises(WavelengthError, match=r"Every band of 'mem.tif' is marked bad in its ENVI bad-band list"):
        match_library(make_info(wl, usable=np.zeros(wl.size, bool)), lib_nm(np.arange(350.0, 600.0, 5.0)))
    with pytest.raises(WavelengthError, match=r"\(10 water-vapour absorption\).*mask_water_bands=False"):
        match_library(make_info(np.arange(1350.0, 1450.0, 10.0)), lib_nm(np.arange(350.0, 2500.0, 5.0)))
