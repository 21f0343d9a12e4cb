"""Sensor products opened as delivered (core/io/sensors): EnMAP L2A, EMIT L2A RFL,
PRISMA L2D — metadata, scaling, nodata, geocoding, quality masks, the cache, broken
products and a full ``unmix`` run on each (fixtures: tests/sensor_products.py)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sensor_products as sp  # noqa: E402

from urdm_plugin import cli  # noqa: E402
from urdm_plugin.core.errors import InputImageError  # noqa: E402
from urdm_plugin.core.io.image import open_image, read_image, read_window  # noqa: E402
from urdm_plugin.core.io.mask import load_mask  # noqa: E402
from urdm_plugin.core.io.sensors import resolve_product  # noqa: E402
from urdm_plugin.core.window import Window  # noqa: E402


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("URDM_CACHE_DIR", str(d))
    return d


def _epsg(wkt: str) -> int:
    s = osr.SpatialReference()
    s.ImportFromWkt(wkt)
    s.AutoIdentifyEPSG()
    return int(s.GetAuthorityCode(None))


# ---------------------------------------------------------------------------------- EnMAP


@pytest.mark.parametrize("given", ["folder", "relative", "parent", "zip", "image", "xml", "vsizip"])
def test_enmap_opens_as_delivered(tmp_path, cache, given, monkeypatch):
    folder, t = sp.write_enmap(tmp_path / "p")
    z = sp.zip_folder(folder, tmp_path / f"{folder.name}.zip")
    monkeypatch.chdir(tmp_path)
    path = {"folder": folder, "relative": f"p/{folder.name}", "parent": tmp_path / "p", "zip": z,
            "image": folder / f"{sp.ENMAP_ID}-SPECTRAL_IMAGE.TIF",
            "xml": folder / f"{sp.ENMAP_ID}-METADATA.XML",
            "vsizip": f"/vsizip/{z}/{folder.name}/{sp.ENMAP_ID}-SPECTRAL_IMAGE.TIF"}[given]
    info = open_image(path)
    monkeypatch.chdir("/")  # the derived VRT must not depend on the working folder
    assert info.product == "EnMAP L2A" and info.source_path == str(path) and "EnMAP L2A" in info.product_description
    assert Path(info.path).parent.parent == cache and info.path.endswith(".vrt")
    assert info.band_count == 32 and info.wavelength_unit == "nm"
    np.testing.assert_allclose(info.wavelengths_nm, t["wl"], atol=1e-3)
    assert np.all(np.diff(info.wavelengths_nm) >= 0)
    np.testing.assert_allclose(info.fwhm_nm, t["fwhm"], atol=1e-3)
    assert info.geotransform == t["gt"] and _epsg(info.crs_wkt) == t["epsg"]
    data, valid = read_window(info, None, Window.whole(info.height, info.width))
    assert not valid[1, 2] and valid.sum() == 10 * 12 - 1
    np.testing.assert_allclose(data[:, valid], t["Y"][:, valid], atol=1e-5)


def test_enmap_quality_layers_mask_flagged_pixels(tmp_path):
    folder, t = sp.write_enmap(tmp_path)
    info = open_image(folder)
    assert info.quality_mask_path and Path(info.quality_mask_path).exists()
    m = load_mask(info.quality_mask_path, info, Window.whole(info.height, info.width))
    assert m.shape == (10, 12)
    assert sorted(zip(*np.nonzero(~m))) == sorted(t["flagged"])
    q = gdal.Open(info.quality_mask_path)
    assert q.GetGeoTransform() == t["gt"] and _epsg(q.GetProjection()) == t["epsg"]


SHARED_ENMAP = Path(__file__).resolve().parents[1].parent / "shared" / "sensors" / "enmap_l2a_2020_qualification"


@pytest.mark.skipif(not SHARED_ENMAP.is_dir(), reason="../shared/sensors (real EnMAP metadata) is not in this checkout")
def test_the_real_enmap_metadata_gives_background_value_bands_and_gains():
    """A METADATA.XML as DLR delivers it (2020 qualification product): the spectral no-data
    is ``specific/backgroundValue`` (0; there is no ``noDataValue``), 218 bands."""
    from urdm_plugin.core.io.sensors.enmap import parse_metadata

    xml = next(SHARED_ENMAP.glob("*-METADATA.XML"))
    md = parse_metadata(xml.read_bytes(), xml.name)
    assert md["nodata"] == 0.0 and md["level"] == "L2A"
    assert md["wavelength"].size == md["fwhm"].size == md["gain"].size == 218
    assert md["wavelength"][0] == pytest.approx(423.03) and md["fwhm"][0] == pytest.approx(6.93)
    assert 2400 < md["wavelength"].max() < 2460 and md["fwhm"].min() == 5.75 and md["fwhm"].max() == 14.4
    assert np.all(md["gain"] == 1e-4) and np.all(md["offset"] == 0)


def test_enmap_background_value_is_the_nodata_before_the_tifs(tmp_path):
    """``backgroundValue`` 0 makes background pixels nodata (the TIF states none)."""
    folder, t = sp.write_enmap(tmp_path, background=0)
    info = open_image(folder)
    assert info.nodata == [0.0] * info.band_count
    valid = read_window(info, None, Window.whole(info.height, info.width))[1]
    assert not valid[1, 2] and valid.sum() == 10 * 12 - 1


def test_a_legacy_nodata_element_is_used_without_background_value():
    from urdm_plugin.core.io.sensors.enmap import parse_metadata

    wl, fwhm, gain, offset = sp.enmap_bands()
    xml = sp.enmap_xml(wl, fwhm, gain, offset).replace("<specific>", "<specific><noDataValue>-999</noDataValue>")
    assert parse_metadata(xml.encode(), "m.xml")["nodata"] == -999.0
    both = xml.replace("<specific>", "<specific><backgroundValue>0</backgroundValue>")
    assert parse_metadata(both.encode(), "m.xml")["nodata"] == 0.0
    assert parse_metadata(sp.enmap_xml(wl, fwhm, gain, offset).encode(), "m.xml")["nodata"] is None


# ----------------------------------------------------------------------------------- EMIT


@pytest.mark.parametrize("given", ["file", "subdataset", "folder"])
def test_emit_orthorectified_through_the_glt(tmp_path, given):
    path, t = sp.write_emit(tmp_path)
    arg = {"file": path, "subdataset": f'NETCDF:"{path}":reflectance', "folder": tmp_path}[given]
    info = open_image(arg)
    assert info.product == "EMIT L2A RFL"
    assert (info.width, info.height) == (11, 12)  # the GLT's grid, not the 8 × 9 swath
    assert info.geotransform == t["gt"] and _epsg(info.crs_wkt) == t["epsg"]
    assert info.band_count == 24
    np.testing.assert_allclose(info.wavelengths_nm, t["wl"], atol=1e-3)
    np.testing.assert_allclose(info.fwhm_nm, t["fwhm"], atol=1e-3)
    assert np.array_equal(info.usable, t["good"]) and not info.usable.all()
    data, valid = read_image(arg)
    assert np.array_equal(valid, t["valid"])
    gx, gy = t["glt"]
    # a known swath pixel at its GLT position: ortho (4, 3) <- swath (downtrack 2, crosstrack 2)
    assert (gx[4, 3], gy[4, 3]) == (3, 3)
    np.testing.assert_allclose(data[:, 4, 3], t["swath"][2, 2, :], rtol=1e-6)
    np.testing.assert_allclose(data[:, 0, 5], t["swath"][3, 3, :], rtol=1e-6)  # repeated by the GLT
    for r, c in zip(*np.nonzero(valid)):
        np.testing.assert_allclose(data[:, r, c], t["swath"][gy[r, c] - 1, gx[r, c] - 1, :], rtol=1e-6)
    assert not valid[0, 0] and not valid[11, 10]  # GLT 0 = no data


def test_emit_mask_granule_beside_it_flags_clouds_but_not_water(tmp_path, capsys):
    path, t = sp.write_emit(tmp_path)
    gx, gy = t["glt"]
    assert open_image(path).quality_mask_path == ""  # no companion: no mask
    # swath pixels: cloud at (2, 2) -> ortho (4, 3); cirrus at (6, 1); water at (1, 4) stays usable
    sp.write_emit_mask(tmp_path, 9, 8, {"Cloud flag": [(2, 2)], "Cirrus flag": [(6, 1)],
                                        "Water flag": [(1, 4)], "Aggregate Flag": [(1, 4)]})
    info = open_image(path)  # a new companion is a new product: the cache key changes
    assert info.quality_mask_path and Path(info.quality_mask_path).is_file()
    m = load_mask(info.quality_mask_path, info, Window.whole(info.height, info.width))

    def ortho(d, c):
        rs, cs = np.nonzero((gy == d + 1) & (gx == c + 1))
        return list(zip(rs.tolist(), cs.tolist()))

    for d, c in ((2, 2), (6, 1)):
        assert ortho(d, c) and all(not m[r, cc] for r, cc in ortho(d, c))
    assert all(m[r, cc] for r, cc in ortho(1, 4))  # water is a material, not a flag
    assert m[t["valid"]].sum() == t["valid"].sum() - len(ortho(2, 2)) - len(ortho(6, 1))
    # the run leaves the flagged pixels as nodata by default
    lib, out = sp.write_library(tmp_path / "lib.csv"), tmp_path / "out"
    assert cli.main(["unmix", str(path), str(lib), str(out), "--method", "fcls", "--quiet"]) == 0, \
        capsys.readouterr().err
    e = json.loads((out / "run.json").read_text())["endmembers"][0]
    ds = gdal.Open(str(out / e["file"]))
    a, nd = ds.GetRasterBand(1).ReadAsArray(), ds.GetRasterBand(1).GetNoDataValue()
    assert all(a[r, cc] == nd for r, cc in ortho(2, 2) + ortho(6, 1)) and all(a[r, cc] != nd for r, cc in ortho(1, 4))


def test_emit_mask_granule_in_the_same_zip_is_used(tmp_path):
    """Both granules of an acquisition zipped together: the mask is found inside the zip,
    and the cache keeps only the derived files (the unpacked granules are removed)."""
    import zipfile

    path, t = sp.write_emit(tmp_path)
    mask = sp.write_emit_mask(tmp_path, 9, 8, {"Cloud flag": [(2, 2)]})
    arg = tmp_path / "EMIT_granules.zip"
    with zipfile.ZipFile(arg, "w") as z:
        z.write(path, "granule/" + path.name)
        z.write(mask, "granule/" + mask.name)
    path.unlink()
    mask.unlink()
    info = open_image(arg)
    assert info.product == "EMIT L2A RFL" and info.quality_mask_path
    m = load_mask(info.quality_mask_path, info, Window.whole(info.height, info.width))
    gx, gy = t["glt"]
    cloud = list(zip(*np.nonzero((gy == 3) & (gx == 3))))
    assert cloud and all(not m[r, c] for r, c in cloud)
    assert m[t["valid"]].sum() == t["valid"].sum() - len(cloud)
    assert sorted(p.suffix for p in Path(info.path).parent.iterdir()) == [".json", ".tif", ".tif"]


def test_a_broken_emit_mask_granule_is_one_clear_message(tmp_path):
    path, _t = sp.write_emit(tmp_path)
    sp.write_emit_mask(tmp_path, 5, 8, {})  # not the swath's 9 × 8
    with pytest.raises(InputImageError, match="EMIT mask file .* not the reflectance swath 9×8"):
        open_image(path)


def test_emit_band_group_writing_matches_one_pass(tmp_path, monkeypatch):
    """Writing in small band groups (bounded memory) gives the same file."""
    from urdm_plugin.core.io.sensors import emit

    path, t = sp.write_emit(tmp_path)
    whole, _ = read_image(path)
    monkeypatch.setattr(emit, "MEMORY_MB", 0)  # one band per group
    monkeypatch.setenv("URDM_CACHE_DIR", str(tmp_path / "cache2"))
    parts, _ = read_image(path)
    assert np.array_equal(whole, parts)


# --------------------------------------------------------------------------------- PRISMA


@pytest.mark.parametrize("given", ["file", "subdataset", "zip"])
def test_prisma_cubes_joined_scaled_and_geocoded(tmp_path, given):
    path, t = sp.write_prisma(tmp_path)
    if given == "zip":
        import zipfile

        arg = tmp_path / "PRS_L2D.zip"
        with zipfile.ZipFile(arg, "w") as z:
            z.write(path, path.name)
    else:
        arg = {"file": path, "subdataset": f'HDF5:"{path}"://HDFEOS/SWATHS/PRS_L2D_HCO/Data_Fields/VNIR_Cube'}[given]
    info = open_image(arg)
    assert info.product == "PRISMA L2D"
    assert (info.width, info.height) == (12, 10)
    assert info.geotransform == t["gt"] and _epsg(info.crs_wkt) == t["epsg"]
    assert info.band_count == t["wl"].size == 13 + 18  # 0-wavelength slots and the 940 nm SWIR band dropped
    assert (info.wavelengths_nm <= t["top"]).sum() == 13 and not np.isclose(info.wavelengths_nm, 940).any()
    np.testing.assert_allclose(info.wavelengths_nm, t["wl"], atol=1e-3)
    assert np.all(np.diff(info.wavelengths_nm) > 0)
    assert np.array_equal(info.usable, t["good"]) and (~info.usable).sum() == 2
    if given == "zip":  # the unpacked .he5 served only to build the GeoTIFF
        assert not list(Path(info.path).parent.glob("*.he5"))
    data, valid = read_image(arg)
    assert [tuple(p) for p in zip(*np.nonzero(~valid))] == t["padding"]
    np.testing.assert_allclose(data[:, valid], t["Y"][:, valid], atol=2e-6)


# ------------------------------------------------------------------------------ full runs


@pytest.mark.slow
@pytest.mark.parametrize("sensor", ["enmap", "emit", "prisma"])
def test_unmix_run_on_each_product(tmp_path, sensor, capsys):
    lib = sp.write_library(tmp_path / "lib.csv")
    if sensor == "enmap":
        folder, t = sp.write_enmap(tmp_path / "p")
        product = sp.zip_folder(folder, tmp_path / "enmap.zip")
        valid = np.ones((10, 12), bool)
        for r, c in t["flagged"] + t["nodata"]:  # the quality flags apply by default
            valid[r, c] = False
    elif sensor == "emit":
        product, t = sp.write_emit(tmp_path)
        valid = t["valid"]
    else:
        product, t = sp.write_prisma(tmp_path)
        valid = np.ones((10, 12), bool)
        for r, c in t["padding"]:
            valid[r, c] = False
    out = tmp_path / "out"
    code = cli.main(["unmix", str(product), str(lib), str(out), "--method", "fcls", "--quiet"])
    assert code == 0, capsys.readouterr().err
    m = json.loads((out / "run.json").read_text())
    assert [e["name"] for e in m["endmembers"]] == sp.NAMES
    for k, e in enumerate(m["endmembers"]):
        ds = gdal.Open(str(out / e["file"]))
        assert ds.GetGeoTransform() == t["gt"] and _epsg(ds.GetProjection()) == t["epsg"]
        a = ds.GetRasterBand(1).ReadAsArray()
        nd = ds.GetRasterBand(1).GetNoDataValue()
        assert np.array_equal(a != nd, valid)
        assert np.sqrt(np.mean((a[valid] - t["A"][k][valid]) ** 2)) < 0.02, e["name"]


def test_enmap_quality_flags_are_nodata_unless_turned_off(tmp_path, capsys):
    lib = sp.write_library(tmp_path / "lib.csv")
    folder, t = sp.write_enmap(tmp_path / "p")

    def run(out, *extra):
        code = cli.main(["unmix", str(folder), str(lib), str(out), "--method", "fcls", "--quiet", *extra])
        assert code == 0, capsys.readouterr().err
        m = json.loads((out / "run.json").read_text())
        ds = gdal.Open(str(out / m["endmembers"][0]["file"]))
        return m, ds.GetRasterBand(1).ReadAsArray(), ds.GetRasterBand(1).GetNoDataValue()

    m, a, nd = run(tmp_path / "out")
    for r, c in t["flagged"] + t["nodata"]:
        assert a[r, c] == nd
    assert (a != nd).sum() == 120 - len(t["flagged"]) - len(t["nodata"])
    assert m["inputs"]["product"] == "EnMAP L2A" and m["inputs"]["quality_mask"] is True
    assert m["inputs"]["image"] == str(folder.resolve())  # what the user gave, not the cache file
    m, a, nd = run(tmp_path / "all", "--no-quality-mask")
    assert (a != nd).sum() == 120 - len(t["nodata"]) and m["inputs"]["quality_mask"] is False


def test_enmap_dead_bands_are_left_out_named_and_the_run_goes_on(tmp_path, capsys):
    """Delivered L2A products fill bad bands with the no-data value: three such bands (1320,
    1333, 1467 nm) are dropped and named (plan warning, match report, run.json), exit 0."""
    wl, fwhm, gain, offset = sp.enmap_bands()
    dead_nm = (1320.2, 1332.6, 1467.0)
    bands = (np.r_[wl, dead_nm], np.r_[fwhm, [11.0] * 3], np.r_[gain, [1e-4] * 3], np.r_[offset, [0.0] * 3])
    folder, t = sp.write_enmap(tmp_path / "p", bands=bands, dead_nm=dead_nm)
    lib = sp.write_library(tmp_path / "lib.csv")
    out = tmp_path / "out"
    code = cli.main(["unmix", str(folder), str(lib), str(out), "--method", "fcls"])
    err = capsys.readouterr().err
    assert code == 0, err
    m = json.loads((out / "run.json").read_text())
    said = " ".join(m["warnings"])
    for nm in ("1320.2", "1332.6", "1467.0"):
        assert f"{nm} nm" in said and nm in err, said
    dropped = {b for b, _w, why in m["match"]["dropped"] if "no usable value" in why}
    assert dropped == set(t["dead"]) and not dropped & {b - 1 for b in m["inputs"]["bands_used"]}
    assert "no usable value" in m["match"]["summary"]
    a = gdal.Open(str(out / m["endmembers"][0]["file"])).ReadAsArray()
    assert (a != -9999).sum() == 120 - len(t["flagged"]) - len(t["nodata"])
    assert m["fit"]["pixels"] > 0 and m["fit"]["relative_residual"] < 0.05


# --------------------------------------------------------------------------- bad products


def _enmap_no_xml(tmp):
    folder, _ = sp.write_enmap(tmp, xml=False)
    return folder, ["METADATA.XML", folder.name]


def _enmap_no_image(tmp):
    folder, _ = sp.write_enmap(tmp, image=False)
    return folder, ["SPECTRAL_IMAGE.TIF", folder.name]


def _enmap_bad_xml(tmp):
    folder, _ = sp.write_enmap(tmp)
    (folder / f"{sp.ENMAP_ID}-METADATA.XML").write_text("<level_X><specific></specific></level_X>")
    return folder, ["bandCharacterisation", "METADATA.XML"]


def _enmap_truncated_xml(tmp):
    folder, _ = sp.write_enmap(tmp)
    xml = folder / f"{sp.ENMAP_ID}-METADATA.XML"
    xml.write_text(xml.read_text()[:400])
    return folder, ["not readable XML", "METADATA.XML"]


def _enmap_declared_entity(tmp):
    """Values taken from a DTD entity are read as written, never expanded (an entity may
    name another file, or expand exponentially): the bands have no readable wavelength."""
    folder, _ = sp.write_enmap(tmp)
    xml = folder / f"{sp.ENMAP_ID}-METADATA.XML"
    text = xml.read_text().replace("<level_X>", '<!DOCTYPE level_X [<!ENTITY wl "500.0">]>\n<level_X>', 1)
    xml.write_text(re.sub(r"<wavelengthCenterOfBand>[^<]*<", "<wavelengthCenterOfBand>&wl;<", text))
    return folder, ["Band 1 ", "wavelengthCenterOfBand", "METADATA.XML"]


def _emit_truncated(tmp):
    path, _ = sp.write_emit(tmp)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, [sp.EMIT_NAME, "incomplete"]


def _emit_wrong_group(tmp):
    path, _ = sp.write_emit(tmp, groups=("sensor_band_parameters", "geolocation"))
    return path, [sp.EMIT_NAME, "group 'location'"]


def _emit_wrong_variable(tmp):
    path, _ = sp.write_emit(tmp, reflectance="rfl")
    return path, [sp.EMIT_NAME, "variable 'reflectance'"]


def _prisma_no_swir(tmp):
    path, _ = sp.write_prisma(tmp, drop=("SWIR_Cube",))
    return path, [sp.PRISMA_NAME, "SWIR_Cube"]


def _prisma_no_scale(tmp):
    path, _ = sp.write_prisma(tmp, drop=("L2ScaleSwirMax",))
    return path, [sp.PRISMA_NAME, "L2ScaleSwirMax"]


def _prisma_truncated(tmp):
    path, _ = sp.write_prisma(tmp)
    path.write_bytes(path.read_bytes()[:4000])
    return path, [sp.PRISMA_NAME, "HDF5"]


BAD = [_enmap_no_xml, _enmap_no_image, _enmap_bad_xml, _enmap_truncated_xml, _enmap_declared_entity,
       _emit_truncated, _emit_wrong_group,
       _emit_wrong_variable, _prisma_no_swir, _prisma_no_scale, _prisma_truncated]


@pytest.mark.parametrize("make", BAD, ids=[f.__name__[1:] for f in BAD])
def test_bad_product_one_line_message(tmp_path, make):
    path, words = make(tmp_path)
    with pytest.raises(InputImageError) as ei:
        open_image(path)
    msg = str(ei.value)
    assert "\n" not in msg and ei.value.fix
    for w in words:
        assert w in msg, msg


def test_bad_product_on_the_command_line_exits_2_with_one_line(tmp_path, capsys):
    path, words = _emit_wrong_group(tmp_path)
    lib = sp.write_library(tmp_path / "lib.csv")
    code = cli.main(["unmix", str(path), str(lib), str(tmp_path / "out"), "--method", "fcls", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "group 'location'" in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------- cache


def test_cache_reused_and_invalidated_by_a_changed_product(tmp_path, cache):
    folder, t = sp.write_enmap(tmp_path / "p")
    p1 = resolve_product(folder)
    stamp = os.stat(p1.path).st_mtime_ns
    p2 = resolve_product(folder)
    assert p2.path == p1.path and os.stat(p2.path).st_mtime_ns == stamp
    assert not [f for f in cache.rglob(".tmp-*")]
    xml = folder / f"{sp.ENMAP_ID}-METADATA.XML"
    wl, fwhm, gain, offset = sp.enmap_bands()
    xml.write_text(sp.enmap_xml(wl, fwhm, gain * 2, offset))
    st = os.stat(xml)
    os.utime(xml, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    p3 = resolve_product(folder)
    assert p3.path != p1.path
    d1, v = read_image(p1.path)
    d3, _ = read_image(p3.path)
    np.testing.assert_allclose(d3[:, v] - (offset[np.argsort(wl, kind="stable")])[:, None],
                               2 * (d1[:, v] - offset[np.argsort(wl, kind="stable")][:, None]), rtol=1e-5, atol=1e-6)


def test_emit_cache_rebuilt_when_done_marker_missing(tmp_path, cache):
    path, _ = sp.write_emit(tmp_path)
    p1 = resolve_product(path)
    (Path(p1.path).parent / "done.json").unlink()  # as if a run was stopped half way
    p2 = resolve_product(path)
    assert p2.path == p1.path and (Path(p2.path).parent / "done.json").exists()


def test_ordinary_rasters_are_no_product(tmp_path):
    tif = tmp_path / "plain.tif"
    gdal.GetDriverByName("GTiff").Create(str(tif), 4, 3, 5, gdal.GDT_Float32).FlushCache()
    assert resolve_product(tif) is None and resolve_product(tmp_path) is None
    info = open_image(tif)
    assert info.product == "" and info.source_path == "" and info.path == str(tif)


def test_folder_with_several_products_says_so(tmp_path):
    sp.write_emit(tmp_path)
    sp.write_prisma(tmp_path)
    with pytest.raises(InputImageError, match="holds 2 sensor products"):
        open_image(tmp_path)
    assert open_image(tmp_path / sp.PRISMA_NAME).product == "PRISMA L2D"  # one file is fine


def test_the_cache_forgets_products_unused_for_long_and_killed_builds(tmp_path, cache, monkeypatch):
    """A product that changed or moved gets a new cache folder; old ones go after
    CACHE_MAX_AGE_DAYS without use, killed builds after a day; nothing else is touched."""
    import os
    import time

    from urdm_plugin.core.io.sensors import cache as pc

    path, _t = sp.write_emit(tmp_path)
    used = Path(open_image(path).path).parent  # a real product, built now
    day = 86400
    now = time.time()

    def folder(name, age_days, done=True):
        d = cache / name
        d.mkdir()
        (d / "reflectance_ortho.tif").write_bytes(b"x")
        if done:
            (d / pc.DONE).write_text("{}")
        for p in [*d.iterdir(), d]:
            os.utime(p, (now - age_days * day, now - age_days * day))
        return d

    old, recent = folder("a" * 24, pc.CACHE_MAX_AGE_DAYS + 1), folder("b" * 24, pc.CACHE_MAX_AGE_DAYS - 1)
    killed, building = folder("c" * 24, 2, done=False), folder("d" * 24, 0.1, done=False)
    mine = folder("my_notes", 400)
    os.utime(used / pc.DONE, (now - 90 * day, now - 90 * day))
    assert Path(open_image(path).path).parent == used  # a use marks it recent again
    assert (used / pc.DONE).stat().st_mtime > now - day
    assert sorted(pc.prune_cache()) == sorted([old, killed])
    assert all(d.exists() for d in (recent, building, mine, used))
    monkeypatch.setenv("URDM_CACHE_MAX_AGE_DAYS", "0")  # never prune
    os.utime(recent / pc.DONE, (now - 400 * day, now - 400 * day))
    assert pc.prune_cache() == [] and recent.exists()
