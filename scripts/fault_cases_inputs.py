"""Fault-audit cases of issue #22 part B: the inputs — masks and no-data from every source,
georeferencing, library holes, dead bands, sensor no-data and the messages about them.

``cases()`` is appended to :func:`fault_audit.cases`; each case builds its inputs in its
set-up, in the sandbox (see ``scripts/fault_audit.py`` for what makes a case clean).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from fault_audit import Case, _cube, _unmix, _warned, write_cube, write_library

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _sensor_products():
    """tests/sensor_products.py: the EnMAP fixture writer (the product as DLR delivers it)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import sensor_products

    return sensor_products


def _dead(Y: np.ndarray) -> np.ndarray:
    Y[[20, 21, 30]] = -9999.0  # the scene's nodata value in three whole bands
    return Y


def _enmap(**kw):
    """An EnMAP L2A product folder ``enmap/<ID>`` and its library ``enmap_lib.csv``."""
    def setup(box: Path, sc) -> dict:
        sp = _sensor_products()
        folder, _ = sp.write_enmap(box / "enmap", **kw)
        sp.write_library(box / "enmap_lib.csv")
        return {}
    return setup


def _enmap_dead_bands():
    sp = _sensor_products()
    wl, fwhm, gain, offset = sp.enmap_bands()
    dead = (1320.2, 1332.6, 1467.0)
    return _enmap(bands=(np.r_[wl, dead], np.r_[fwhm, [11.0] * 3], np.r_[gain, [1e-4] * 3],
                         np.r_[offset, [0.0] * 3]), dead_nm=dead)


def _background_is_nodata(box: Path) -> Optional[str]:
    """The EnMAP fixture's background pixel (1, 2) holds ``backgroundValue`` 0: nodata."""
    from urdm_plugin.core.io.image import read_image

    m = json.loads((box / "out" / "run.json").read_text(encoding="utf-8"))
    valid = read_image(str(box / "out" / m["endmembers"][0]["file"]))[1]
    return None if not valid[1, 2] else "the background pixel (backgroundValue 0) was unmixed"


def _holed_library(box: Path, sc) -> dict:
    keep = (sc.wl < 1000) | (sc.wl > 1300)
    write_library(box / "holed.csv", sc.wl[keep], sc.E[keep])
    return {}


def _mask_away(box: Path, sc) -> dict:
    """A mask raster of the image's size, 100 km east of it."""
    write_cube(box / "away.tif", np.ones((1, *sc.Y.shape[1:]), np.float32), None, nodata=None)
    from osgeo import gdal

    ds = gdal.Open(str(box / "away.tif"), gdal.GA_Update)
    gt = list(ds.GetGeoTransform())
    ds.SetGeoTransform([gt[0] + 100000.0, *gt[1:]])
    ds = None
    return {}


def _internal_mask(box: Path, sc) -> dict:
    """scene.tif with an internal (per-dataset) mask: 0 on rows 2–4, columns 3–6."""
    from osgeo import gdal

    write_cube(box / "masked.tif", sc.Y, sc.wl)
    ds = gdal.Open(str(box / "masked.tif"), gdal.GA_Update)
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    m = np.full(sc.Y.shape[1:], 255, np.uint8)
    m[2:5, 3:7] = 0
    ds.GetRasterBand(1).GetMaskBand().WriteArray(m)
    ds = None
    return {}


def _internal_mask_nodata(box: Path) -> Optional[str]:
    from urdm_plugin.core.io.image import read_image

    valid = read_image(str(box / "out" / "Tree.tif"))[1]
    return "masked pixels were unmixed" if valid[2:5, 3:7].any() else None


def _ungeoreferenced(box: Path, name: str, sc):
    """The scene as ``name`` without geotransform or CRS: (dataset open for update, W, H)."""
    from osgeo import gdal

    B, H, W = sc.Y.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(box / name), W, H, B, gdal.GDT_Float32)
    for b in range(B):
        ds.GetRasterBand(b + 1).WriteArray(sc.Y[b])
        ds.GetRasterBand(b + 1).SetMetadataItem("wavelength", f"{sc.wl[b]:.3f}")
    return ds, W, H


def _no_geotransform(box: Path, sc) -> dict:
    """``nogt.tif``: the scene without any georeferencing; ``gcps.tif``: with four GCPs only."""
    from osgeo import gdal, osr

    _ungeoreferenced(box, "nogt.tif", sc)
    ds, W, H = _ungeoreferenced(box, "gcps.tif", sc)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32610)
    ds.SetGCPs([gdal.GCP(500000.0 + 30 * px, 4100000.0 - 30 * ln, 0.0, px, ln)
                for px, ln in ((0, 0), (W, 0), (0, H), (W, H))], srs.ExportToWkt())
    ds = None
    return {}


def _no_geotransform_kept(box: Path) -> Optional[str]:
    from osgeo import gdal

    out = gdal.Open(str(box / "out" / "Tree.tif"))
    return None if out.GetGeoTransform(can_return_null=True) is None else "the output got an invented geotransform"


def _gcps_kept(box: Path) -> Optional[str]:
    from osgeo import gdal

    return None if gdal.Open(str(box / "out" / "Tree.tif")).GetGCPCount() == 4 else "the GCPs were dropped"


def _complex(box: Path, sc) -> dict:
    from osgeo import gdal

    B, H, W = sc.Y.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(box / "cplx.tif"), W, H, B, gdal.GDT_CFloat32)
    for b in range(B):
        ds.GetRasterBand(b + 1).WriteArray(sc.Y[b].astype(np.complex64))
        ds.GetRasterBand(b + 1).SetMetadataItem("wavelength", f"{sc.wl[b]:.3f}")
    ds = None
    return {}


def _zipped(box: Path, sc) -> dict:
    """scene.tif inside ``s.zip`` and as ``scene.tif.gz``; its first band as netCDF."""
    import gzip
    import shutil
    import zipfile

    from osgeo import gdal

    with zipfile.ZipFile(box / "s.zip", "w") as z:
        z.write(box / "scene.tif", "in/scene.tif")
    with open(box / "scene.tif", "rb") as src, gzip.open(box / "scene.tif.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    gdal.Translate(str(box / "one.nc"), str(box / "scene.tif"), format="netCDF", bandList=[1])
    return {}


def _envi_bbl_all_bad(box: Path, sc) -> dict:
    """The scene as an ENVI image whose bad-band list marks every band bad."""
    from osgeo import gdal

    gdal.Translate(str(box / "bbl.img"), str(box / "scene.tif"), format="ENVI")
    hdr = box / "bbl.hdr"
    hdr.write_text(hdr.read_text() + "wavelength units = Nanometers\nwavelength = {" + ",".join(f"{w:.3f}" for w in sc.wl)
                   + "}\nbbl = {" + ",".join("0" * 1 for _ in sc.wl) + "}\n")
    for aux in box.glob("bbl.img.aux.xml"):
        aux.unlink()
    return {}


def _water_only(box: Path, sc) -> dict:
    """Ten bands all inside the 1340–1460 nm water-vapour window."""
    write_cube(box / "water.tif", sc.Y[:10], np.linspace(1350, 1450, 10))
    return {}


def _some_wavelengths(box: Path, sc) -> dict:
    from osgeo import gdal

    write_cube(box / "some.tif", sc.Y, sc.wl)
    ds = gdal.Open(str(box / "some.tif"), gdal.GA_Update)
    for b in (3, 7):
        ds.GetRasterBand(b).SetMetadata({})
    ds = None
    return {}


def _case_names(box: Path, sc) -> dict:
    write_library(box / "case.csv", sc.wl, sc.E, ["Tree", "TREE", "Water"])
    return {}


def _utf16(box: Path, sc) -> dict:
    text = (box / "library.csv").read_text(encoding="utf-8")
    (box / "utf16.csv").write_bytes(text.encode("utf-16"))
    return {}


def _sli_swapped(box: Path, sc) -> dict:
    """library.csv as an ENVI .sli (float32, big-endian) whose header says little-endian."""
    (box / "swapped.sli").write_bytes(sc.E.T.astype(">f4").tobytes())
    (box / "swapped.hdr").write_text(
        f"ENVI\nfile type = ENVI Spectral Library\nsamples = {sc.E.shape[0]}\nlines = {sc.E.shape[1]}\nbands = 1\n"
        "header offset = 0\ndata type = 4\ninterleave = bsq\nbyte order = 0\nwavelength units = Nanometers\n"
        "wavelength = {" + ",".join(f"{w:.3f}" for w in sc.wl) + "}\nspectra names = {Tree, Soil, Water}\n")
    return {}


def _two_case_files(box: Path) -> Optional[str]:
    names = {p.name.lower() for p in (box / "out").glob("*.tif")}
    return None if {"tree.tif", "tree_2.tif"} <= names else f"files {sorted(names)}"


def cases() -> list:
    C = []
    enmap = ["{box}/enmap/" + _sensor_products().ENMAP_ID, "{box}/enmap_lib.csv"]
    # 5. dead bands: left out, named, the run goes on
    C += [Case("inputs", "three bands all nodata (left out, named)", _unmix(img="{box}/dead.tif"), code=0, out="out",
               setup=_cube("dead.tif", _dead), check=_warned("band 21")),
          Case("inputs", "an EnMAP product with dead bands at 1320, 1333, 1467 nm",
               _unmix(img=enmap[0], lib=enmap[1]), code=0, out="out", setup=_enmap_dead_bands(),
               check=_warned("1467.0 nm"))]
    # 6. the real EnMAP no-data element
    C += [Case("inputs", "EnMAP specific/backgroundValue 0 is the no-data", _unmix(img=enmap[0], lib=enmap[1]),
               code=0, out="out", setup=_enmap(background=0), check=_background_is_nodata)]
    # 1. masks from every source GDAL offers; a --mask placed by georeference
    C += [Case("inputs", "a mask of the image's size 100 km away", _unmix("--mask", "{box}/away.tif"),
               setup=_mask_away, word="does not overlap"),
          Case("inputs", "a GeoTIFF's internal mask band", _unmix(img="{box}/masked.tif"), code=0, out="out",
               setup=_internal_mask, check=_internal_mask_nodata)]
    # 2. degenerate images
    C += [Case("inputs", "an all-zero image (no signal)", _unmix(img="{box}/zero.tif"), word="no signal",
               setup=_cube("zero.tif", np.zeros_like)),
          Case("inputs", "vca on an all-zero image", ["vca", "{box}/zero.tif", "3", "{box}/em.csv"], word="no signal",
               setup=_cube("zero.tif", np.zeros_like)),
          Case("inputs", "vca auto on an all-zero image", ["vca", "{box}/zero.tif", "auto", "{box}/em.csv"],
               word="no signal", setup=_cube("zero.tif", np.zeros_like)),
          Case("inputs", "vca of 4 endmembers on a 2×2 image", ["vca", "{box}/tiny.tif", "4", "{box}/em.csv"],
               word="distinct", setup=_cube("tiny.tif", lambda Y: Y[:, :2, :2]))]
    # 3. georeferencing kept, or its absence kept; complex images refused
    C += [Case("inputs", "an image without geotransform (none invented, a warning)", _unmix(img="{box}/nogt.tif"),
               code=0, out="out", setup=_no_geotransform,
               check=lambda box: _warned("no georeferencing")(box) or _no_geotransform_kept(box)),
          Case("inputs", "an image georeferenced by GCPs (copied to the outputs)", _unmix(img="{box}/gcps.tif"),
               code=0, out="out", setup=_no_geotransform, check=_gcps_kept),
          Case("inputs", "a complex-valued image", _unmix(img="{box}/cplx.tif"), setup=_complex,
               word="complex-valued")]
    # 4. a library with a hole: the bands in it left out and named
    C += [Case("inputs", "a library without data between 1000 and 1300 nm", _unmix(lib="{box}/holed.csv"), code=0,
               out="out", setup=_holed_library, check=_warned("no data"))]
    # 7. messages
    C += [Case("inputs", "a /vsizip/ image path", _unmix(img="/vsizip/{box}/s.zip/in/scene.tif"), code=0, out="out",
               setup=_zipped),
          Case("inputs", "a /vsigzip/ image path", _unmix(img="/vsigzip/{box}/scene.tif.gz"), code=0, out="out",
               setup=_zipped),
          Case("inputs", "a NETCDF:\"…\":var path (opened: its one band is too few)",
               _unmix(img='NETCDF:"{box}/one.nc":Band1'), setup=_zipped, word="usable band"),
          Case("inputs", "an ENVI bbl marking every band bad", _unmix(img="{box}/bbl.img"), setup=_envi_bbl_all_bad,
               word="bad-band list"),
          Case("inputs", "only water-vapour bands (the CLI's switch named)", _unmix(img="{box}/water.tif"),
               setup=_water_only, word="--no-water-mask"),
          Case("inputs", "wavelengths on some bands only", _unmix(img="{box}/some.tif"), setup=_some_wavelengths,
               word="have no wavelength"),
          Case("inputs", "spectra 'Tree' and 'TREE'", _unmix(lib="{box}/case.csv"), code=0, out="out",
               setup=_case_names, check=_two_case_files),
          Case("inputs", "a UTF-16 CSV library", _unmix(lib="{box}/utf16.csv"), code=0, out="out", setup=_utf16),
          Case("inputs", "an .sli whose header states the wrong byte order", _unmix(lib="{box}/swapped.sli"),
               setup=_sli_swapped, word="byte order = 1")]
    return C
