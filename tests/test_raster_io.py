"""core.io.image on small generated rasters: metadata, masking, block reads, output writing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr

from urdm_plugin.core.bands import match_library
from urdm_plugin.core.errors import InputImageError, OutputError, OutputExistsError, WavelengthError
from urdm_plugin.core.io.image import iter_row_blocks, open_image, read_window, sample_pixels
from urdm_plugin.core.io.library import SpectralLibrary, read_library
from urdm_plugin.core.io.manifest import RunManifest, build_manifest
from urdm_plugin.core.io.safe_names import safe_filename
from urdm_plugin.core.io.writer import NODATA, RESIDUAL_KEY, OutputWriter
from urdm_plugin.core.window import Window

GT = (500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0)
ROTATED = (500000.0, 8.660254, 5.0, 4100000.0, 5.0, -8.660254)


def utm_wkt(epsg=32617) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def make_tif(path: Path, cube: np.ndarray, gdal_type=gdal.GDT_Float32, gt=GT, wkt=None, nodata=None,
             scale=None, offset=None, envi_md=None, band_md=None, imagery=None, descriptions=None,
             options=("TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16")) -> str:
    """Write cube (B, H, W) as a GeoTIFF with the given metadata."""
    B, H, W = cube.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, B, gdal_type, options=list(options))
    assert ds is not None
    if gt is not None:
        ds.SetGeoTransform(gt)
    if wkt:
        ds.SetProjection(wkt)
    if envi_md:
        ds.SetMetadata(envi_md, "ENVI")
    for i in range(B):
        b = ds.GetRasterBand(i + 1)
        b.WriteArray(cube[i])
        if nodata is not None:
            b.SetNoDataValue(nodata)
        if scale is not None:
            b.SetScale(scale)
        if offset is not None:
            b.SetOffset(offset)
        if band_md:
            b.SetMetadata(band_md[i])
        if imagery:
            b.SetMetadata(imagery[i], "IMAGERY")
        if descriptions:
            b.SetDescription(descriptions[i])
    ds = None
    return str(path)


def make_envi(path: Path, cube: np.ndarray, header_extra: str = "", interleave="bsq") -> str:
    """Write cube (B, H, W) float32 as ENVI by hand (data + .hdr)."""
    B, H, W = cube.shape
    arr = cube.astype("<f4")
    if interleave == "bip":
        arr = np.transpose(arr, (1, 2, 0))
    elif interleave == "bil":
        arr = np.transpose(arr, (1, 0, 2))
    Path(path).write_bytes(np.ascontiguousarray(arr).tobytes())
    hdr = (f"ENVI\nsamples = {W}\nlines = {H}\nbands = {B}\nheader offset = 0\nfile type = ENVI Standard\n"
           f"data type = 4\ninterleave = {interleave}\nbyte order = 0\n"
           "map info = {UTM, 1, 1, 500000, 4100000, 10, 10, 17, North, WGS-84}\n" + header_extra)
    Path(path).with_suffix(".hdr").write_text(hdr)
    return str(path)


def cube(B=6, H=9, W=7, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.01, 0.9, (B, H, W)).astype(np.float32)


WL_NM = [450.0, 550.0, 650.0, 750.0, 850.0, 950.0]


# -- wavelengths and metadata -----------------------------------------------------------------

def test_envi_file_wavelengths_fwhm_bbl_in_micrometres(tmp_path):
    c = cube()
    p = make_envi(tmp_path / "scene.img", c, "wavelength units = Micrometers\n"
                  "wavelength = {0.45, 0.55, 0.65,\n 0.75, 0.85, 0.95}\n"
                  "fwhm = {0.01, 0.01, 0.01, 0.01, 0.01, 0.012}\nbbl = {1, 1, 0, 1, 1, 1}\n", "bip")
    info = open_image(p)
    np.testing.assert_allclose(info.wavelengths_nm, WL_NM)
    np.testing.assert_allclose(info.fwhm_nm, [10, 10, 10, 10, 10, 12])
    assert info.usable.tolist() == [True, True, False, True, True, True]
    assert info.wavelength_source == "ENVI metadata" and info.wavelength_unit == "µm"
    assert (info.width, info.height, info.band_count) == (7, 9, 6)
    data, valid = read_window(info, None, Window.from_xywh((0, 0, 7, 9)))  # BIP interleave read correctly
    np.testing.assert_array_equal(data, c)
    lib = SpectralLibrary(["a", "b"], np.array([400.0, 1000.0]), np.array([[0.1, 0.2], [0.3, 0.4]]))
    m = match_library(info, lib)
    assert 2 not in m.band_indices and m.report.n_used == 5


def test_geotiff_envi_domain_wavelength_units_key(tmp_path):
    p = make_tif(tmp_path / "a.tif", cube(), envi_md={"wavelength": "{" + ",".join(map(str, WL_NM)) + "}",
                                                     "wavelength_units": "Nanometers"})
    np.testing.assert_allclose(open_image(p).wavelengths_nm, WL_NM)


def test_per_band_metadata_and_imagery_domain(tmp_path):
    md = [{"wavelength": str(w / 1000), "wavelength_units": "μm"} for w in WL_NM]
    info = open_image(make_tif(tmp_path / "a.tif", cube(), band_md=md))
    assert info.wavelength_source == "band metadata"
    np.testing.assert_allclose(info.wavelengths_nm, WL_NM)
    im = [{"CENTRAL_WAVELENGTH_UM": str(w / 1000), "FWHM_UM": "0.02"} for w in WL_NM]
    info = open_image(make_tif(tmp_path / "b.tif", cube(), imagery=im))
    assert info.wavelength_source == "IMAGERY metadata"
    np.testing.assert_allclose(info.wavelengths_nm, WL_NM)
    np.testing.assert_allclose(info.fwhm_nm, 20.0)


@pytest.mark.parametrize("descs,expected", [
    ([f"{w:.2f} nm" for w in WL_NM], WL_NM),
    ([f"Band {i + 1} ({w / 1000:.4f} µm)" for i, w in enumerate(WL_NM)], WL_NM),
    ([f"{w / 1000:.3f}" for w in WL_NM], WL_NM),  # bare numbers < 30: µm
    ([f"Band {i + 1}" for i in range(6)], None),
])
def test_wavelengths_from_band_descriptions(tmp_path, descs, expected):
    info = open_image(make_tif(tmp_path / "a.tif", cube(), descriptions=descs))
    if expected is None:
        assert info.wavelengths_nm is None and info.wavelength_source == ""
    else:
        np.testing.assert_allclose(info.wavelengths_nm, expected)
    assert info.band_names == descs


def test_no_wavelengths_at_all_is_allowed(tmp_path):
    info = open_image(make_tif(tmp_path / "a.tif", cube()))
    assert info.wavelengths_nm is None and info.fwhm_nm is None and info.usable.all()


def test_unknown_unit_in_metadata_is_wavelength_error(tmp_path):
    md = [{"wavelength": str(w), "wavelength_units": "furlongs"} for w in WL_NM]
    with pytest.raises(WavelengthError, match="furlongs"):
        open_image(make_tif(tmp_path / "a.tif", cube(), band_md=md))


def test_missing_or_unreadable_image(tmp_path):
    with pytest.raises(InputImageError, match="does not exist"):
        open_image(tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    with pytest.raises(InputImageError, match="GDAL cannot open") as e:
        open_image(junk)
    assert "GeoTIFF" in e.value.fix


@pytest.mark.skipif(not hasattr(gdal, "ExceptionMgr"), reason="GDAL < 3.7 (QGIS 3.22's 3.6) has no per-thread "
                    "error mode; make test's QGIS 3.40 run (GDAL 3.10) runs this")
def test_bad_files_are_user_errors_while_qgis_keeps_gdal_exceptions_on(tmp_path):
    """QGIS 3.40's Processing turns GDAL exceptions on process-wide: the core still answers
    a missing or broken file with its one-line error (not a RuntimeError), writes rasters,
    and leaves the mode as it found it."""
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    with gdal.ExceptionMgr(useExceptions=True):
        with pytest.raises(InputImageError, match="does not exist"):
            open_image(tmp_path / "nope.tif")
        with pytest.raises(InputImageError, match="GDAL cannot open"):
            open_image(junk)
        info = open_image(make_tif(tmp_path / "a.tif", np.zeros((3, 4, 5), np.float32), gdal.GDT_Float32))
        data, valid = read_window(info, None, Window.from_xywh((0, 0, 5, 4)))
        assert data.shape == (3, 4, 5) and gdal.GetUseExceptions()


# -- pixel values and masks ---------------------------------------------------------------------

def test_scale_offset_applied_uint16(tmp_path):
    raw = np.random.default_rng(1).integers(0, 5000, (4, 5, 6)).astype(np.uint16)
    info = open_image(make_tif(tmp_path / "a.tif", raw, gdal.GDT_UInt16, scale=1 / 5000, offset=0.01))
    assert info.dtype_name == "UInt16"
    data, valid = read_window(info, [1, 3], Window.from_xywh((0, 0, 6, 5)))
    assert data.dtype == np.float32 and valid.all()
    np.testing.assert_allclose(data, raw[[1, 3]] / 5000 + 0.01, rtol=1e-6)


def test_nodata_border_and_nan_pixels_masked(tmp_path):
    c = cube(B=3, H=8, W=8)
    c[:, 0, :] = -9999.0  # nodata border (all bands)
    c[1, :, -1] = -9999.0  # nodata in one band only: pixel invalid
    c[2, 4, 4] = np.nan
    c[0, 5, 5] = np.inf
    info = open_image(make_tif(tmp_path / "a.tif", c, nodata=-9999.0))
    data, valid = read_window(info, None, Window.from_xywh((0, 0, 8, 8)))
    expect = np.ones((8, 8), bool)
    expect[0, :] = False
    expect[:, -1] = False
    expect[4, 4] = expect[5, 5] = False
    np.testing.assert_array_equal(valid, expect)
    assert np.all(np.isfinite(data)) and np.all(data[:, ~valid] == 0)
    np.testing.assert_array_equal(data[:, valid], c[:, valid])
    # a band subset that avoids the band with the nodata column keeps that column
    _, valid02 = read_window(info, [0], Window.from_xywh((0, 0, 8, 8)))
    assert valid02[3, -1] and not valid02[5, 5]


def test_block_wise_read_equals_whole_read(tmp_path):
    c = cube(B=5, H=37, W=11, seed=4)
    c[:, 3, 2] = -1.0
    info = open_image(make_tif(tmp_path / "a.tif", c, nodata=-1.0))
    whole, wvalid = read_window(info, [0, 2, 4], Window.from_xywh((0, 0, 11, 37)))
    blocks = list(iter_row_blocks(info, [0, 2, 4], memory_mb=0.002))  # a few rows per block
    assert len(blocks) > 3
    assert [b.row0 for b in blocks] == sorted(b.row0 for b in blocks) and blocks[0].row0 == 0
    np.testing.assert_array_equal(np.concatenate([b.data for b in blocks], axis=1), whole)
    np.testing.assert_array_equal(np.concatenate([b.valid for b in blocks], axis=0), wvalid)
    win = list(iter_row_blocks(info, [1], memory_mb=0.001, window=Window.from_xywh((2, 5, 6, 20))))
    np.testing.assert_array_equal(np.concatenate([b.data for b in win], axis=1), c[[1], 5:25, 2:8])
    assert win[0].row0 == 0


def test_all_nodata_raises_after_iteration(tmp_path):
    info = open_image(make_tif(tmp_path / "a.tif", np.full((2, 6, 5), 7.0, np.float32), nodata=7.0))
    with pytest.raises(InputImageError, match="Every pixel .* nodata") as e:
        list(iter_row_blocks(info, None, memory_mb=0.001))
    assert "nodata value" in e.value.fix
    assert len(list(iter_row_blocks(info, None, require_valid=False))) >= 1
    with pytest.raises(InputImageError, match="nodata"):
        sample_pixels(info)


def test_sample_pixels_only_valid(tmp_path):
    c = cube(B=3, H=30, W=30)
    c[:, :10] = -9999
    info = open_image(make_tif(tmp_path / "a.tif", c, nodata=-9999))
    Y = sample_pixels(info, [0, 1, 2], n=100)
    assert Y.shape == (3, 100) and Y.min() > 0


def test_bad_window_and_band_indices(tmp_path):
    info = open_image(make_tif(tmp_path / "a.tif", cube()))
    with pytest.raises(InputImageError, match="not inside"):
        read_window(info, None, Window.from_xywh((5, 0, 5, 2)))
    with pytest.raises(InputImageError, match="Band index 6"):
        read_window(info, [6], Window.from_xywh((0, 0, 2, 2)))


# -- writing -------------------------------------------------------------------------------------

def _write_run(out, info, names=("Tree", "Soil"), overwrite=False, window=None, fail=False):
    window = None if window is None else Window.from_xywh(window)  # (col0, row0, w, h) given
    w = info.width if window is None else window.width
    h = info.height if window is None else window.height
    with OutputWriter(out, info, overwrite=overwrite, window=window) as wr:
        for k, n in enumerate(names):
            wr.add_raster(n, n, f"abundance of {n}")
            a = np.full((h, w), 0.25 * (k + 1), np.float32)
            valid = np.ones((h, w), bool)
            valid[0, 0] = False
            wr.write(n, a[: h // 2], 0, 0, valid=valid[: h // 2])
            wr.write(n, a[h // 2:], h // 2, 0)
        wr.add_raster(RESIDUAL_KEY, RESIDUAL_KEY, "residual RMSE")
        wr.write(RESIDUAL_KEY, np.full((h, w), np.nan, np.float32), 0, 0)
        if fail:
            raise RuntimeError("boom")
        wr.write_library_csv(SpectralLibrary(list(names), np.array([400.0, 500.0]), np.ones((2, len(names)))))
        return wr.commit(build_manifest("fcls", info, "lib.csv", writer=wr, version="0.1.0", seconds=1.5))


@pytest.mark.parametrize("gt,wkt", [(GT, "utm"), (ROTATED, "utm"), (GT, "")])
def test_written_rasters_reopen_with_identical_georeferencing(tmp_path, gt, wkt):
    wkt = utm_wkt() if wkt else ""
    info = open_image(make_tif(tmp_path / "in.tif", cube(B=3), gt=gt, wkt=wkt))
    final = _write_run(tmp_path / "out", info)
    assert Path(final) == (tmp_path / "out").absolute()
    for name, value in (("Tree", 0.25), ("Soil", 0.5)):
        ds = gdal.Open(os.path.join(final, f"{name}.tif"))
        assert ds.GetGeoTransform() == pytest.approx(gt, abs=1e-9)
        if wkt:
            assert osr.SpatialReference(ds.GetProjection()).IsSame(osr.SpatialReference(wkt))
        else:
            assert ds.GetProjection() == ""
        b = ds.GetRasterBand(1)
        assert b.DataType == gdal.GDT_Float32 and b.GetNoDataValue() == NODATA
        assert b.GetDescription() == name
        assert ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
        assert b.GetBlockSize()[1] > 1 or ds.RasterYSize == 1  # tiled, not strips
        a = b.ReadAsArray()
        assert a[0, 0] == NODATA and np.all(a.ravel()[1:] == np.float32(value))
        assert float(b.GetMetadataItem("STATISTICS_MEAN")) == pytest.approx(value)
    res = gdal.Open(os.path.join(final, "residual_rmse.tif")).ReadAsArray()
    assert np.all(res == NODATA)  # non-finite values become nodata
    manifest = json.loads(Path(final, "run.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["method"] == "fcls"
    assert manifest["endmembers"] == [{"name": "Tree", "file": "Tree.tif"}, {"name": "Soil", "file": "Soil.tif"}]
    assert manifest["residual_file"] == "residual_rmse.tif"
    assert set(manifest["inputs"]) == {"image", "library", "bands_used", "scale", "offset", "wavelengths_nm", "unit"}
    assert manifest["inputs"]["bands_used"] == [1, 2, 3]
    assert set(manifest) >= {"extra_files", "parameters", "version", "seconds", "created"}
    assert read_library(os.path.join(final, "endmembers_used.csv")).names == ["Tree", "Soil"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp left


def test_window_output_has_shifted_geotransform(tmp_path):
    info = open_image(make_tif(tmp_path / "in.tif", cube(B=2, H=20, W=15), gt=ROTATED, wkt=utm_wkt()))
    final = _write_run(tmp_path / "out", info, window=(3, 4, 8, 10))
    ds = gdal.Open(os.path.join(final, "Tree.tif"))
    assert (ds.RasterXSize, ds.RasterYSize) == (8, 10)
    g = ROTATED
    expect = (g[0] + 3 * g[1] + 4 * g[2], g[1], g[2], g[3] + 3 * g[4] + 4 * g[5], g[4], g[5])
    assert ds.GetGeoTransform() == pytest.approx(expect)
    with pytest.raises(OutputError, match="not inside"):
        OutputWriter(tmp_path / "o2", info, window=Window.from_xywh((10, 0, 8, 5)))


def test_failing_run_leaves_nothing(tmp_path):
    info = open_image(make_tif(tmp_path / "in.tif", cube(B=2)))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(RuntimeError, match="boom"):
        _write_run(tmp_path / "out", info, fail=True)
    assert sorted(os.listdir(tmp_path)) == before


def test_existing_folder_refused_and_untouched_then_replaced_at_commit(tmp_path):
    info = open_image(make_tif(tmp_path / "in.tif", cube(B=2)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputError, match="already exists and is not empty") as e:
        _write_run(out, info)
    assert isinstance(e.value, OutputExistsError) and "new or empty folder" in e.value.fix
    assert os.listdir(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"
    # overwriting never replaces a folder holding anything a run did not write
    with pytest.raises(OutputError, match="keep.txt"):
        _write_run(out, info, overwrite=True)
    assert os.listdir(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"
    # a previous run's folder is replaced: old content stays until commit, a failure keeps it
    prev = tmp_path / "prev"
    _write_run(prev, info, names=("Old",))
    with pytest.raises(RuntimeError):
        _write_run(prev, info, overwrite=True, fail=True)
    assert "Old.tif" in os.listdir(prev)
    _write_run(prev, info, overwrite=True)
    assert "Old.tif" not in os.listdir(prev) and "Tree.tif" in os.listdir(prev)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out", "prev"]
    # ... unless something was added to it since
    (prev / "notes.docx").write_text("mine")
    with pytest.raises(OutputError, match="notes.docx"):
        _write_run(prev, info, overwrite=True)
    assert (prev / "notes.docx").exists() and (prev / "Tree.tif").exists()
    # an existing empty folder is fine without overwrite
    (tmp_path / "empty").mkdir()
    _write_run(tmp_path / "empty", info)
    assert "run.json" in os.listdir(tmp_path / "empty")


def test_unwritable_output_folder(tmp_path):
    info = open_image(make_tif(tmp_path / "in.tif", cube(B=2)))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot be made: .*/file' is a file"):
        OutputWriter(blocker / "sub" / "out", info)
    with pytest.raises(OutputError, match="is a file"):
        OutputWriter(blocker, info)


def test_hostile_names_stay_inside_and_unique(tmp_path):
    info = open_image(make_tif(tmp_path / "in.tif", cube(B=2, H=4, W=4)))
    names = ["../../x", "CON", "a/b", "", "residual_rmse", "x", "X", "nul.txt", ".hidden", "a:b", "Straße"]
    out = tmp_path / "out"
    with OutputWriter(out, info) as wr:
        paths = [wr.add_raster(f"k{i}", n) for i, n in enumerate(names)]
        wr.add_raster(RESIDUAL_KEY, RESIDUAL_KEY)
        tmp = wr.tmp_dir
        final = Path(wr.commit(RunManifest(method="fcls")))
    files = [Path(p).name for p in paths]
    assert all(Path(p).parent == tmp for p in paths)
    assert len({f.lower() for f in files}) == len(files)
    assert "residual_rmse.tif" not in files and not any(f.startswith(".") for f in files)
    assert all(f.split(".")[0].lower() not in {"con", "nul"} for f in files)
    assert sorted(os.listdir(final)) == sorted([*files, "residual_rmse.tif", "run.json"])
    assert not (tmp_path / "x.tif").exists() and not (tmp_path.parent / "x.tif").exists()
    for i, n in enumerate(names):
        assert gdal.Open(str(final / files[i])).GetRasterBand(1).GetDescription() == n
    assert safe_filename("../../x") == "x" and safe_filename("a/b") == "a_b" and safe_filename("") == "endmember"


def test_statistics_written_as_aux_inside_the_folder(tmp_path):
    info = open_image(make_tif(tmp_path / "in.tif", cube(B=2, H=4, W=4)))
    final = _write_run(tmp_path / "out", info)
    # statistics (in .aux.xml or the tif) travel with the folder
    ds = gdal.Open(os.path.join(final, "Soil.tif"))
    assert ds.GetRasterBand(1).GetMetadataItem("STATISTICS_MAXIMUM") is not None
    assert all(Path(f).parent == Path(final) for f in ds.GetFileList())


def test_unwritten_pixels_read_back_as_nodata(tmp_path):
    info = open_image(make_tif(tmp_path / "in.tif", cube(B=2, H=40, W=40)))
    with OutputWriter(tmp_path / "out", info) as wr:
        wr.add_raster("a", "a")
        wr.write("a", np.ones((5, 40), np.float32), 10, 0)  # rows 10-14 only
        final = wr.commit(RunManifest(method="fcls"))
    a = gdal.Open(os.path.join(final, "a.tif")).ReadAsArray()
    assert np.all(a[10:15] == 1.0) and np.all(a[:10] == NODATA) and np.all(a[15:] == NODATA)


def _unmix_small(tmp_path, tif, **kw):
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster

    c = gdal.Open(str(tif))
    B = c.RasterCount
    wl = [float(c.GetRasterBand(b + 1).GetMetadataItem("wavelength")) for b in range(B)]
    c = None
    lib = SpectralLibrary(["A", "B"], np.array(wl), np.stack([np.linspace(0.1, 0.5, B), np.linspace(0.6, 0.2, B)], 1))
    return unmix_raster(tif, lib, tmp_path / "out", UnmixOptions(method="fcls", mask_water_bands=False, **kw))


def _cube_with_wavelengths(path, gt=GT, wkt=None):
    c = cube(B=6, H=7, W=8, seed=3)
    return make_tif(path, c, gt=gt, wkt=wkt, band_md=[{"wavelength": str(500 + 40 * b)} for b in range(6)])


def test_an_image_without_geotransform_gives_outputs_without_one_and_a_warning(tmp_path):
    tif = _cube_with_wavelengths(tmp_path / "nogt.tif", gt=None)
    info = open_image(tif)
    assert not info.georeferenced
    res = _unmix_small(tmp_path, tif)
    assert any("no georeferencing" in w for w in res.manifest["warnings"])
    out = gdal.Open(str(tmp_path / "out" / "A.tif"))
    assert out.GetGeoTransform(can_return_null=True) is None and out.GetProjection() == ""


def test_gcps_and_rpcs_are_copied_to_the_outputs(tmp_path):
    tif = _cube_with_wavelengths(tmp_path / "gcp.tif", gt=None)
    ds = gdal.Open(str(tif), gdal.GA_Update)
    gcps = [gdal.GCP(500000.0 + 10 * px, 4100000.0 - 10 * ln, 0.0, px, ln) for px, ln in ((0, 0), (8, 0), (0, 7), (8, 7))]
    ds.SetGCPs(gcps, utm_wkt())
    ds = None
    res = _unmix_small(tmp_path, tif, window=(2, 1, 5, 4))
    assert not any("no georeferencing" in w for w in res.manifest["warnings"])
    out = gdal.Open(str(tmp_path / "out" / "A.tif"))
    got = sorted((g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY) for g in out.GetGCPs())
    assert got == sorted((px - 2, ln - 1, 500000.0 + 10 * px, 4100000.0 - 10 * ln) for px, ln in
                         ((0, 0), (8, 0), (0, 7), (8, 7)))
    assert "32617" in out.GetGCPProjection()
    info = open_image(tif)
    info.rpc = {"LINE_OFF": "100", "SAMP_OFF": "200", "LAT_OFF": "47.6"}
    from urdm_plugin.core.io.writer import set_georeferencing

    mem = gdal.GetDriverByName("MEM").Create("", 5, 4, 1)
    set_georeferencing(mem, info, Window(1, 2, 4, 5))  # from column 2, row 1
    rpc = mem.GetMetadata("RPC")
    assert float(rpc["LINE_OFF"]) == 99 and float(rpc["SAMP_OFF"]) == 198 and rpc["LAT_OFF"] == "47.6"


def test_a_complex_image_is_refused_in_one_line(tmp_path):
    c = cube(B=3, H=4, W=5).astype(np.complex64)
    tif = make_tif(tmp_path / "cplx.tif", c, gdal.GDT_CFloat32)
    with pytest.raises(InputImageError, match=r"complex-valued \(CFloat32, band 1 and others\)"):
        open_image(tif)


def test_wavelengths_on_some_bands_only_are_refused_not_matched_by_band_order(tmp_path):
    md = [{"wavelength": str(500 + 40 * b)} if b not in (2, 4) else {} for b in range(6)]
    tif = make_tif(tmp_path / "some.tif", cube(B=6), band_md=md)
    with pytest.raises(WavelengthError, match=r"2 of the 6 bands of .* have no wavelength \(band 3, 5\)"):
        open_image(tif)


def test_a_per_band_mask_leaves_its_pixels_invalid_when_that_band_is_read(tmp_path):
    """A VRT whose band 2 has its own mask band: pixels 0 there are invalid when band 2 is
    read, valid when only the other bands are."""
    c = cube(B=3, H=4, W=5)
    make_tif(tmp_path / "a.tif", c)
    m = np.full((4, 5), 255, np.uint8)
    m[1, 2] = m[3, 4] = 0
    make_tif(tmp_path / "m.tif", m[None], gdal.GDT_Byte)
    bands = "".join(
        f'<VRTRasterBand dataType="Float32" band="{b}"><SimpleSource><SourceFilename relativeToVRT="1">a.tif'
        f"</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource>"
        + ('<MaskBand><VRTRasterBand dataType="Byte"><SimpleSource><SourceFilename relativeToVRT="1">m.tif'
           "</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></MaskBand>" if b == 2 else "")
        + "</VRTRasterBand>" for b in (1, 2, 3))
    vrt = tmp_path / "a.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="5" rasterYSize="4">{bands}</VRTDataset>')
    info = open_image(vrt)
    assert info.mask_bands == ["", "band", ""]
    valid = read_window(info, None, Window.from_xywh((0, 0, 5, 4)))[1]
    np.testing.assert_array_equal(valid, m != 0)
    assert read_window(info, [0, 2], Window.from_xywh((0, 0, 5, 4)))[1].all()


def test_a_read_gdal_could_not_allocate_for_blames_memory_not_the_file():
    from urdm_plugin.core.io.image import _read_failure_fix

    oom = "band 1: IReadBlock failed at X offset 0, Y offset 31: gdalrasterblock.cpp, 1108: cannot allocate 384 bytes"
    assert "ran out of memory" in _read_failure_fix(oom) and "complete" not in _read_failure_fix(oom)
    assert _read_failure_fix("TIFFReadEncodedTile() failed") == "Check that the file is complete and readable"
    assert _read_failure_fix(None) == "Check that the file is complete and readable"
