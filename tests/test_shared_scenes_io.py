"""Reading the real benchmark scenes (../shared/data) and matching their libraries."""

from __future__ import annotations

import numpy as np
import pytest

from urdm_plugin.core.bands import REASON_EDGE, REASON_WATER, check_reflectance_scale, match_library
from urdm_plugin.core.io.image import iter_row_blocks, open_image, read_window
from urdm_plugin.core.io.library import read_library
from urdm_plugin.core.window import Window


@pytest.fixture(scope="module")
def jasper(shared_data):
    return open_image(shared_data / "jasper_ridge" / "jasper_ridge.tif")


def test_samson_envi_nm_wavelengths(shared_data):
    info = open_image(shared_data / "samson" / "samson.img")
    assert info.band_count == 156 and (info.width, info.height) == (95, 95)
    assert info.wavelengths_nm[0] == pytest.approx(401.0) and info.wavelengths_nm[-1] == pytest.approx(889.0)
    assert np.all(np.diff(info.wavelengths_nm) > 0)
    assert info.crs_wkt and info.geotransform[1] == 10.0
    lib = read_library(shared_data / "samson" / "samson_endmembers.csv")
    m = match_library(info, lib)
    assert m.report.n_used == 156 and not m.report.dropped  # 401-889 nm: no water band
    np.testing.assert_allclose(m.E, lib.spectra, atol=1e-9)  # same sampling: unchanged


def test_jasper_uint16_scaled_to_reflectance(jasper):
    assert jasper.band_count == 198 and jasper.dtype_name == "UInt16"
    np.testing.assert_allclose(jasper.scales, 1 / 5000)
    data, valid = read_window(jasper, None, Window.whole(jasper.height, jasper.width))
    assert valid.all() and data.dtype == np.float32
    assert 0.0 <= data.min() and data.max() <= 1.1
    assert 0.01 < float(np.median(data)) < 0.5
    blocks = list(iter_row_blocks(jasper, [0, 100, 197], memory_mb=0.05))
    assert len(blocks) > 1
    np.testing.assert_array_equal(np.concatenate([b.data for b in blocks], axis=1), data[[0, 100, 197]])


def test_micrometre_sli_matches_nm_csv(shared_data, jasper):
    d = shared_data / "jasper_ridge"
    sli, csv = read_library(d / "jasper_ridge_endmembers.sli"), read_library(d / "jasper_ridge_endmembers.csv")
    assert sli.names == csv.names == ["Tree", "Water", "Soil", "Road"]
    for water in (True, False):
        a, b = match_library(jasper, sli, water), match_library(jasper, csv, water)
        np.testing.assert_array_equal(a.band_indices, b.band_indices)
        np.testing.assert_allclose(a.E, b.E, atol=1e-5)
    assert a.report.n_used == 198  # rounding of µm values does not drop the end bands
    m = match_library(jasper, csv)
    # dropped: the water-vapour windows, and band 198 (2452 nm) as the sensor edge it is
    assert m.report.n_used < 198 and {r for _, _, r in m.report.dropped} == {REASON_WATER, REASON_EDGE}
    assert [b for b, _, r in m.report.dropped if r == REASON_EDGE] == [197]
    sample = read_window(jasper, m.band_indices, Window.from_xywh((0, 0, 100, 100)))[0].reshape(m.report.n_used, -1)
    assert check_reflectance_scale(sample, m.E) == []


def test_usgs_library_resampled_onto_jasper(shared_data, jasper):
    lib = read_library(shared_data / "usgs_1995" / "usgs_1995.sli")
    assert len(lib) == 498 and len(set(lib.names)) == 498
    m = match_library(jasper, lib)
    assert m.E.shape == (m.report.n_used, 498) and np.all(np.isfinite(m.E))
    csv = read_library(shared_data / "usgs_1995" / "usgs_1995.csv")
    # ENVI names cannot hold commas; the CSV keeps the original (quoted) name
    assert "Dipyre BM1959,505.HLsp" in csv.names and "Dipyre BM1959 505.HLsp" in lib.names
    assert [n.replace(",", " ") for n in csv.names] == lib.names
    np.testing.assert_allclose(match_library(jasper, csv).E, m.E, atol=1e-4)
    sel = lib.select(["Acmite NMNH133746", 5])
    assert sel.names == ["Acmite NMNH133746", lib.names[5]]
