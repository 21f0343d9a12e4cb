"""core.engine.pipeline.unmix_raster on small generated GeoTIFFs and on Jasper Ridge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster
from urdm_plugin.core.errors import Cancelled, InputImageError, LibraryError
from urdm_plugin.core.synthetic import make_scene
from urdm_plugin.core.window import Window
from urdm_plugin.paths import plugin_version

GT = (500000.0, 30.0, 0.0, 4200000.0, 0.0, -30.0)
NODATA_PIXELS = ((0, 0), (3, 5), (19, 23))
NAMES = ["Soil", "Tree", "Water"]


def write_scene(folder: Path, snr_db=40.0, H=20, W=24, seed=1_000_200, all_nodata=False, gain=1.0):
    """A georeferenced float32 GeoTIFF (EPSG:32610, wavelengths in nm per band, nodata
    -9999 at NODATA_PIXELS) and its 3-endmember CSV library. Returns (tif, csv, scene)."""
    sc = make_scene(height=H, width=W, n_endmembers=3, snr_db=snr_db, seed=seed, n_bands=50)
    B = sc.Y.shape[0]
    tif, csv = folder / "scene.tif", folder / "library.csv"
    ds = gdal.GetDriverByName("GTiff").Create(str(tif), W, H, B, gdal.GDT_Float32)
    ds.SetGeoTransform(GT)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32610)
    ds.SetProjection(srs.ExportToWkt())
    Y = (sc.Y * gain).astype(np.float32)  # gain 10000: digital numbers without a scale
    for r, c in NODATA_PIXELS:
        Y[:, r, c] = -9999.0
    if all_nodata:
        Y[:] = -9999.0
    for b in range(B):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(Y[b])
        band.SetNoDataValue(-9999.0)
        band.SetMetadataItem("wavelength", f"{sc.wavelengths_nm[b]:.3f}")
        band.SetMetadataItem("wavelength_units", "nm")
    ds = None
    with open(csv, "w") as fh:
        fh.write("wavelength_nm," + ",".join(NAMES) + "\n")
        for b in range(B):
            fh.write(f"{sc.wavelengths_nm[b]:.3f}," + ",".join(f"{v:.8f}" for v in sc.E[b]) + "\n")
    return tif, csv, sc


def read(path):
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    return band.ReadAsArray(), ds.GetGeoTransform(), ds.GetProjection(), band.GetNoDataValue()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="module")
def full_run(scene, tmp_path_factory):
    tif, csv, sc = scene
    out = tmp_path_factory.mktemp("runs") / "fcls"
    return unmix_raster(tif, csv, out, UnmixOptions(method="fcls")), sc


def test_outputs_are_georeferenced_like_the_input_and_accurate(full_run, scene):
    res, sc = full_run
    src = gdal.Open(str(scene[0]))
    out = Path(res.out_dir)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["Soil.tif", "Tree.tif", "Water.tif", "endmembers_used.csv", "residual_rmse.tif", "run.json"]
    valid = np.ones((20, 24), bool)
    for r, c in NODATA_PIXELS:
        valid[r, c] = False
    total = np.zeros((20, 24))
    for k, name in enumerate(NAMES):
        a, gt, wkt, nd = read(out / f"{name}.tif")
        assert gt == src.GetGeoTransform() and wkt == src.GetProjection() and nd == -9999.0
        assert (a[~valid] == -9999.0).all()  # nodata stays nodata
        assert np.sqrt(np.mean((a[valid] - sc.A[k][valid]) ** 2)) < 0.02  # 40 dB: close to truth
        total += np.where(valid, a, 0)
    np.testing.assert_allclose(total[valid], 1.0, atol=1e-4)  # FCLS sums to one
    res_map = read(out / "residual_rmse.tif")[0]
    assert (res_map[~valid] == -9999.0).all()
    assert 0 < np.median(res_map[valid]) < 3 * sc.noise_sigma


def test_run_json_describes_the_run(full_run):
    res, _ = full_run
    m = json.loads((Path(res.out_dir) / "run.json").read_text())
    assert m == json.loads(json.dumps(res.manifest))
    assert m["schema_version"] == 1 and m["method"] == "fcls"
    assert m["endmembers"] == [{"name": n, "file": f"{n}.tif"} for n in NAMES]
    assert m["residual_file"] == "residual_rmse.tif"
    assert m["version"] == plugin_version() != "unknown"
    assert m["seconds"] > 0 and m["valid_pixels"] == 20 * 24 - len(NODATA_PIXELS)
    assert m["selection"]["mode"] == "all"
    assert m["inputs"]["unit"] == "nm" and len(m["inputs"]["bands_used"]) == m["match"]["n_used"]
    assert m["match"]["n_dropped"] > 0  # water-vapour bands of the 400-2500 nm grid
    csv = (Path(res.out_dir) / "endmembers_used.csv").read_text().splitlines()
    assert csv[0] == "wavelength_nm,Soil,Tree,Water" and len(csv) == 2 + m["match"]["n_used"]
    assert csv[-1].startswith("# written by URDM")  # the marker that lets --overwrite recognise it


def test_window_output_has_the_sub_extent_georeferencing(scene, full_run, tmp_path):
    tif, csv, _ = scene
    res = unmix_raster(tif, csv, tmp_path / "win", UnmixOptions(window=(4, 2, 10, 7)))
    a, gt, wkt, _ = read(Path(res.out_dir) / "Tree.tif")
    assert a.shape == (7, 10)
    assert gt == (GT[0] + 4 * 30.0, 30.0, 0.0, GT[3] - 2 * 30.0, 0.0, -30.0)
    full = read(Path(full_run[0].out_dir) / "Tree.tif")[0]
    np.testing.assert_allclose(a, full[2:9, 4:14], atol=1e-5)
    assert res.manifest["inputs"]["window"] == [4, 2, 10, 7]


def test_cancel_after_first_block_leaves_no_output(scene, tmp_path):
    tif, csv, _ = scene
    blocks = []

    def progress(f, msg):
        if msg.startswith("Unmixed rows"):
            blocks.append(msg)

    with pytest.raises(Cancelled):  # the scene is one block: cancelled after it, before commit
        unmix_raster(tif, csv, tmp_path / "out", UnmixOptions(),
                     progress=progress, cancel=lambda: bool(blocks))
    assert len(blocks) == 1
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary folder


def test_cancel_between_blocks_of_a_large_image(tmp_path):
    tif, csv, _ = write_scene(tmp_path, H=120, W=600, seed=1_000_201)
    seen = []
    with pytest.raises(Cancelled):
        unmix_raster(tif, csv, tmp_path / "out", UnmixOptions(memory_mb=1),
                     progress=lambda f, m: seen.append(m) if m.startswith("Unmixed rows") else None,
                     cancel=lambda: bool(seen))
    assert len(seen) == 1 and seen[0].startswith("Unmixed rows 1–") and "–120 of" not in seen[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["library.csv", "scene.tif"]


def test_named_endmembers_and_unknown_name(scene, tmp_path):
    tif, csv, _ = scene
    res = unmix_raster(tif, csv, tmp_path / "two", UnmixOptions(endmembers=["water", "Soil"]))
    assert [e["name"] for e in res.manifest["endmembers"]] == ["Water", "Soil"]
    assert res.manifest["selection"] == {"mode": "given", "names": ["Water", "Soil"]}
    with pytest.raises(LibraryError, match="Gold"):
        unmix_raster(tif, csv, tmp_path / "bad", UnmixOptions(endmembers=["Gold"]))
    assert not (tmp_path / "bad").exists()


def test_all_nodata_image_is_a_clear_error_without_output(tmp_path):
    tif, csv, _ = write_scene(tmp_path, all_nodata=True)
    with pytest.raises(InputImageError, match="nodata"):
        unmix_raster(tif, csv, tmp_path / "out", UnmixOptions())
    assert not (tmp_path / "out").exists()


def test_vector_mask_limits_the_processed_pixels(scene, tmp_path):
    tif, csv, _ = scene
    gpkg = tmp_path / "mask.geojson"
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32610)
    drv = ogr.GetDriverByName("GeoJSON")
    ds = drv.CreateDataSource(str(gpkg))
    lyr = ds.CreateLayer("m", srs, ogr.wkbPolygon)
    # left half of the image: columns 0..11
    x0, y0 = GT[0], GT[3]
    ring = f"POLYGON(({x0} {y0},{x0 + 12 * 30} {y0},{x0 + 12 * 30} {y0 - 20 * 30},{x0} {y0 - 20 * 30},{x0} {y0}))"
    feat = ogr.Feature(lyr.GetLayerDefn())
    feat.SetGeometry(ogr.CreateGeometryFromWkt(ring))
    lyr.CreateFeature(feat)
    ds = None
    res = unmix_raster(tif, csv, tmp_path / "masked", UnmixOptions(mask_path=str(gpkg)))
    a = read(Path(res.out_dir) / "Soil.tif")[0]
    expected = np.zeros((20, 24), bool)
    expected[:, :12] = True
    for r, c in NODATA_PIXELS:
        expected[r, c] = False
    np.testing.assert_array_equal(a != -9999.0, expected)
    assert res.manifest["valid_pixels"] == expected.sum()


def _tiny_scene(tmp_path, n_bands):
    sc = make_scene(height=6, width=6, n_endmembers=3, snr_db=40, seed=1_000_202, n_bands=max(n_bands, 3))
    tif = tmp_path / "tiny.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(tif), 6, 6, n_bands, gdal.GDT_Float32)
    ds.SetGeoTransform(GT)
    for b in range(n_bands):
        ds.GetRasterBand(b + 1).WriteArray(sc.Y[b].astype(np.float32))
        ds.GetRasterBand(b + 1).SetMetadataItem("wavelength", f"{500 + 100 * b}")
        ds.GetRasterBand(b + 1).SetMetadataItem("wavelength_units", "nm")
    ds = None
    csv = tmp_path / "lib.csv"
    csv.write_text("wavelength_nm,a,b,c,d\n" + "".join(
        f"{500 + 100 * b},{sc.E[b, 0]},{sc.E[b, 1]},{sc.E[b, 2]},{0.5 * (sc.E[b, 0] + sc.E[b, 2])}\n"
        for b in range(n_bands)))
    return tif, csv


def test_more_named_endmembers_than_the_bands_support_are_selected_from(tmp_path):
    # The dialog's ticked rows: three named spectra on three bands (at most two can be told
    # apart) are selected from, never from the rest of the library, and the run says so.
    tif, csv = _tiny_scene(tmp_path, n_bands=3)
    res = unmix_raster(tif, csv, tmp_path / "out", UnmixOptions(endmembers=["a", "b", "c"]))
    sel = res.manifest["selection"]
    assert sel["mode"] == "automatic" and sel["subset"] is True and sel["from"] == 3
    assert 1 <= len(sel["names"]) <= 2 and set(sel["names"]) <= {"a", "b", "c"}
    assert any("3 spectra were given" in w for w in res.manifest["warnings"])


def test_a_single_band_image_is_refused_even_with_named_endmembers(tmp_path):
    tif, csv = _tiny_scene(tmp_path, n_bands=1)
    with pytest.raises(InputImageError, match="at least"):
        unmix_raster(tif, csv, tmp_path / "out", UnmixOptions(endmembers=["a", "b"]))
    assert not (tmp_path / "out").exists()


def test_tv_runs_in_blended_tiles(tmp_path):
    tif, csv, sc = write_scene(tmp_path, H=40, W=70, seed=1_000_203, snr_db=30.0)
    res = unmix_raster(tif, csv, tmp_path / "tv", UnmixOptions(method="tv", tile_size=32,
                                                                params={"max_iter": 60}))
    params = res.manifest["parameters"]
    lams = params["lam_chosen_per_tile"]
    assert len(lams) >= 4  # several tiles ...
    assert len(set(lams)) == 1  # ... one weight for the whole scene, so no seams
    sel = params["lambda_selection"]  # chosen once, from the scene, with every candidate's SURE
    assert sel["chosen"] == pytest.approx(max(lams[0], 0.0), abs=1e-9) or lams[0] == pytest.approx(1e-12)
    assert len(sel["candidates"]) >= 4 and sel["candidates"][0]["weight"] == 0.0
    maps = np.stack([read(Path(res.out_dir) / f"{n}.tif")[0] for n in NAMES])
    ok = maps[0] != -9999.0
    expected = np.ones((40, 70), bool)
    for r, c in NODATA_PIXELS:
        expected[r, c] = False
    np.testing.assert_array_equal(ok, expected)  # every pixel filled, nodata kept, no seam gaps
    np.testing.assert_allclose(maps[:, ok].sum(axis=0), 1.0, atol=1e-3)  # blend stays on the simplex
    assert maps[:, ok].min() >= -1e-6
    assert np.sqrt(np.mean((maps[:, ok] - sc.A[:, ok]) ** 2)) < 0.05


def test_fcls_on_jasper_ridge_reproduces_the_reference_rmse(shared_data, tmp_path):
    # The published 0.0851 uses all 198 shipped bands (the curators already removed the
    # water-vapour bands), so the pipeline's own water-band mask is switched off here.
    jr = shared_data / "jasper_ridge"
    res = unmix_raster(jr / "jasper_ridge.tif", jr / "jasper_ridge_endmembers.csv", tmp_path / "jr",
                       UnmixOptions(method="fcls", mask_water_bands=False))
    assert res.manifest["match"]["n_used"] == 198
    gt = gdal.Open(str(jr / "jasper_ridge_gt_abundances.tif"))
    names = [gt.GetRasterBand(i + 1).GetDescription() for i in range(gt.RasterCount)]
    err = []
    for k, name in enumerate(names):
        a = read(Path(res.out_dir) / f"{name}.tif")[0].astype(np.float64)
        ref = gt.GetRasterBand(k + 1).ReadAsArray().astype(np.float64)
        err.append((a - ref) ** 2)
    rmse = float(np.sqrt(np.mean(err)))
    assert rmse == pytest.approx(0.0851, abs=0.001)


def test_large_library_is_reduced_automatically_and_reported(scene, tmp_path):
    from urdm_plugin.core.synthetic import synthetic_spectra

    tif, _, sc = scene
    extra = synthetic_spectra(22, sc.wavelengths_nm, np.random.default_rng(1_000_250))
    E = np.concatenate([sc.E, extra], axis=1)  # 25 spectra > 20
    names = NAMES + [f"decoy_{i}" for i in range(22)]
    big = tmp_path / "big.csv"
    big.write_text("wavelength_nm," + ",".join(names) + "\n" + "".join(
        f"{sc.wavelengths_nm[b]:.3f}," + ",".join(f"{v:.8f}" for v in E[b]) + "\n" for b in range(E.shape[0])))
    res = unmix_raster(tif, big, tmp_path / "auto", UnmixOptions())
    sel = res.manifest["selection"]
    assert sel["mode"] == "automatic" and sel["from"] == 25 and len(sel["names"]) <= 20
    assert set(NAMES) <= set(sel["names"])
    assert [e["name"] for e in res.manifest["endmembers"]] == sel["names"]
    assert any("selected" in w for w in res.manifest["warnings"])


def test_digital_numbers_without_scale_are_warned_about(tmp_path):
    tif, csv, _ = write_scene(tmp_path, gain=10000.0)
    messages = []
    res = unmix_raster(tif, csv, tmp_path / "dn", UnmixOptions(), progress=lambda f, m: messages.append(m))
    assert any("digital numbers" in w for w in res.manifest["warnings"])
    assert any(m.startswith("warning: ") and "scale" in m for m in messages)


def test_urdm_with_samples_writes_uncertainty_maps(scene, tmp_path):
    pytest.importorskip("torch", reason="urdm needs torch")
    tif, csv, _ = scene
    res = unmix_raster(tif, csv, tmp_path / "u", UnmixOptions(method="urdm", seed=1,
                                                               params={"quality": "fast", "samples": 2}))
    std = res.manifest["extra_files"]["std"]
    assert [s["file"] for s in std] == [f"{n}_std.tif" for n in NAMES]
    s = read(Path(res.out_dir) / "Tree_std.tif")[0]
    ok = s != -9999.0
    assert ok.sum() == 20 * 24 - len(NODATA_PIXELS) and (s[ok] >= 0).all() and s[ok].max() > 0
    params = res.manifest["parameters"]
    assert params["samples"] == 2 and params["lam_chosen"] == pytest.approx(params["lambda_selection"]["chosen"])


def test_run_json_records_the_fit_of_the_endmembers(tmp_path):
    tif, csv, _sc = write_scene(tmp_path, seed=1_000_209)
    res = unmix_raster(tif, csv, tmp_path / "out", UnmixOptions(endmembers=NAMES[:1]))
    on_disk = json.loads((Path(res.out_dir) / "run.json").read_text())
    assert on_disk["fit"]["poor"] is True and on_disk["fit"]["pixels"] > 0
    assert any(w.startswith("Poor fit") for w in on_disk["warnings"])


def _raster_mask(path, a, gt, epsg=32610, nodata=None):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), a.shape[1], a.shape[0], 1, gdal.GDT_Byte)
    ds.SetGeoTransform(gt)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(a)
    if nodata is not None:
        ds.GetRasterBand(1).SetNoDataValue(nodata)
    ds = None
    return str(path)


def test_a_mask_raster_is_placed_by_georeference_not_pixel_by_pixel(scene, tmp_path):
    """A mask of the image's size 100 km away is refused (it covers nothing); one on a
    coarser, shifted grid is resampled onto the image grid (nearest); one on the image grid
    is read as it is."""
    from urdm_plugin.core.io.image import open_image
    from urdm_plugin.core.io.mask import load_mask

    tif = scene[0]
    info = open_image(tif)
    away = _raster_mask(tmp_path / "away.tif", np.ones((20, 24), np.uint8), (GT[0] + 100000, *GT[1:]))
    with pytest.raises(InputImageError, match="does not overlap the image"):
        load_mask(away, info, Window.from_xywh((0, 0, 24, 20)))
    # 60 m pixels starting 4 image columns right, 2 rows down: its (r, c) covers image rows
    # 2 + 2r, 2 + 2r + 1 and columns 4 + 2c, 5 + 2c; value 1 on its left half, 0 elsewhere
    coarse = np.zeros((8, 8), np.uint8)
    coarse[:, :4] = 1
    gt = (GT[0] + 4 * 30, 60.0, 0.0, GT[3] - 2 * 30, 0.0, -60.0)
    m = load_mask(_raster_mask(tmp_path / "coarse.tif", coarse, gt), info, Window.from_xywh((0, 0, 24, 20)))
    expect = np.zeros((20, 24), bool)
    expect[2:18, 4:12] = True
    np.testing.assert_array_equal(m, expect)
    # the window's part only
    np.testing.assert_array_equal(load_mask(str(tmp_path / "coarse.tif"), info, Window.from_xywh((3, 1, 10, 6))), expect[1:7, 3:13])
    same = np.zeros((20, 24), np.uint8)
    same[5:9, 6:20] = 1
    np.testing.assert_array_equal(load_mask(_raster_mask(tmp_path / "same.tif", same, GT), info, Window.from_xywh((0, 0, 24, 20))),
                                  same == 1)


def test_a_geotiff_internal_mask_leaves_its_pixels_nodata(scene, tmp_path):
    """Pixels a GeoTIFF's internal (per-dataset) mask marks invalid come out as nodata, not
    abundances."""
    tif, csv, _ = scene
    masked = tmp_path / "masked.tif"
    gdal.Translate(str(masked), str(tif))
    ds = gdal.Open(str(masked), gdal.GA_Update)
    assert ds.CreateMaskBand(gdal.GMF_PER_DATASET) == 0
    m = np.full((20, 24), 255, np.uint8)
    m[4:7, 10:14] = 0
    ds.GetRasterBand(1).GetMaskBand().WriteArray(m)
    ds = None
    res = unmix_raster(masked, csv, tmp_path / "out", UnmixOptions(method="fcls"))
    a = read(Path(res.out_dir) / "Soil.tif")[0]
    expected = m != 0
    for r, c in NODATA_PIXELS:
        expected[r, c] = False
    np.testing.assert_array_equal(a != -9999.0, expected)
