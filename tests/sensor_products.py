"""Small sensor-product fixtures with the delivered structure (names, groups, attribute
spellings, array orientation) of EnMAP L2A, EMIT L2A RFL and PRISMA L2D.

Each writer mixes three smooth endmember spectra (:func:`spectra`) with known abundances
and returns ``(path, truth)``; ``truth`` holds the abundances on the product's own grid
(``"A"`` (3, H, W)), the wavelengths (nm, sorted), the invalid pixels and what else the
tests check. :func:`write_library` writes the matching 3-spectrum CSV library.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
from osgeo import gdal, osr

NAMES = ["Vegetation", "Soil", "Water"]


def spectra(wl_nm) -> np.ndarray:
    """(len(wl), 3) smooth reflectance spectra (vegetation-, soil-, water-like) at ``wl_nm``."""
    w = np.asarray(wl_nm, dtype=np.float64)
    veg = 0.05 + 0.40 / (1 + np.exp(-(w - 715) / 15)) - 0.15 * np.exp(-((w - 1450) / 120) ** 2)
    soil = 0.12 + 0.20 * (w - 400) / 2100 + 0.05 * np.exp(-((w - 2200) / 60) ** 2)
    water = 0.02 + 0.10 * np.exp(-((w - 500) / 80) ** 2)
    return np.stack([veg, soil, water], axis=1)


def write_library(path: Path) -> Path:
    """The three spectra of :func:`spectra` as a CSV library, every 2 nm from 380 to 2520."""
    wl = np.arange(380.0, 2521.0, 2.0)
    S = spectra(wl)
    rows = ["wavelength_nm," + ",".join(NAMES)]
    rows += [f"{w:.1f}," + ",".join(f"{v:.6f}" for v in S[i]) for i, w in enumerate(wl)]
    Path(path).write_text("\n".join(rows) + "\n")
    return Path(path)


def abundances(h: int, w: int, seed: int) -> np.ndarray:
    """(3, h, w) abundances, non-negative and summing to one."""
    return np.random.default_rng(seed).dirichlet([1.0, 1.0, 1.0], size=(h, w)).transpose(2, 0, 1)


def _srs(epsg: int) -> str:
    s = osr.SpatialReference()
    s.ImportFromEPSG(epsg)
    return s.ExportToWkt()


# ---------------------------------------------------------------------------------- EnMAP

ENMAP_ID = "ENMAP01-____L2A-DT0000001234_20230601T101010Z_001_V010400_20230602T000000Z"
ENMAP_GT = (400000.0, 30.0, 0.0, 5000000.0, 0.0, -30.0)


def enmap_bands() -> tuple:
    """(wavelengths, fwhm, gain, offset) in file order: 16 VNIR then 16 SWIR bands, the
    ranges overlapping at 940–990 nm."""
    wl = np.concatenate([np.linspace(420, 990, 16), np.linspace(940, 2400, 16)])
    fwhm = np.concatenate([np.full(16, 6.5), np.full(16, 10.0)])
    gain = 1e-4 * (1 + 0.02 * np.arange(32))
    offset = -0.002 * (np.arange(32) % 3)
    return wl, fwhm, gain, offset


def enmap_xml(wl, fwhm, gain, offset, background=None) -> str:
    bands = "\n".join(
        f'      <bandID number="{i + 1}">\n'
        f"        <wavelengthCenterOfBand>{wl[i]:.3f}</wavelengthCenterOfBand>\n"
        f"        <FWHMOfBand>{fwhm[i]:.2f}</FWHMOfBand>\n"
        f"        <GainOfBand>{gain[i]:.10e}</GainOfBand>\n"
        f"        <OffsetOfBand>{offset[i]:.6f}</OffsetOfBand>\n"
        f"      </bandID>" for i in range(len(wl)))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<level_X>\n  <metadata>\n'
            f"    <name>{ENMAP_ID}</name>\n    <processingLevel>L2A</processingLevel>\n  </metadata>\n"
            f"  <specific>\n    <numberOfBands>{len(wl)}</numberOfBands>\n"
            + ("" if background is None else f"    <backgroundValue>{background}</backgroundValue>\n")
            + f"    <bandCharacterisation>\n{bands}\n    </bandCharacterisation>\n  </specific>\n</level_X>\n")


def write_enmap(root: Path, h: int = 10, w: int = 12, seed: int = 1, xml: bool = True,
                image: bool = True, bands: tuple = None, dead_nm: tuple = (), background=None) -> tuple:
    """An EnMAP L2A product folder ``root/<ID>/``: int16 ``-SPECTRAL_IMAGE.TIF`` (nodata
    −32768 at pixel (1, 2)), ``-METADATA.XML`` and the five QL_QUALITY layers (cloud at
    (5, 6), haze at (7, 8), cirrus class 2 at (3, 9)).

    ``bands``: (wavelengths, fwhm, gain, offset) instead of :func:`enmap_bands`;
    ``dead_nm``: the bands nearest these wavelengths hold the no-data value everywhere (as
    delivered bad bands do); ``background``: written as ``specific/backgroundValue`` (as
    DLR's processor does) and used for the no-data pixel, the TIF then having no nodata."""
    folder = Path(root) / ENMAP_ID
    folder.mkdir(parents=True, exist_ok=True)
    wl, fwhm, gain, offset = enmap_bands() if bands is None else (np.asarray(v, float) for v in bands)
    B = wl.size
    nodata = -32768 if background is None else int(background)
    A = abundances(h, w, seed)
    Y = np.einsum("bk,khw->bhw", spectra(wl), A)
    dn = np.round((Y - offset[:, None, None]) / gain[:, None, None]).astype(np.int16)
    dn[:, 1, 2] = nodata
    dead = sorted({int(np.argmin(np.abs(wl - d))) for d in dead_nm})
    dn[dead] = nodata
    if image:
        ds = gdal.GetDriverByName("GTiff").Create(str(folder / f"{ENMAP_ID}-SPECTRAL_IMAGE.TIF"), w, h, B,
                                                  gdal.GDT_Int16, ["INTERLEAVE=BAND"])
        ds.SetGeoTransform(ENMAP_GT)
        ds.SetProjection(_srs(32633))
        for b in range(B):
            ds.GetRasterBand(b + 1).WriteArray(dn[b])
            if background is None:
                ds.GetRasterBand(b + 1).SetNoDataValue(-32768)
        ds = None
    if xml:
        (folder / f"{ENMAP_ID}-METADATA.XML").write_text(enmap_xml(wl, fwhm, gain, offset, background))
    flags = {"CLOUD": (5, 6, 1), "CLOUDSHADOW": None, "HAZE": (7, 8, 1), "SNOW": None, "CIRRUS": (3, 9, 2)}
    for name, at in flags.items():
        q = gdal.GetDriverByName("GTiff").Create(str(folder / f"{ENMAP_ID}-QL_QUALITY_{name}.TIF"), w, h, 1,
                                                 gdal.GDT_Byte)
        q.SetGeoTransform(ENMAP_GT)
        q.SetProjection(_srs(32633))
        a = np.zeros((h, w), np.uint8)
        if at:
            a[at[0], at[1]] = at[2]
        q.GetRasterBand(1).WriteArray(a)
        q = None
    order = np.argsort(wl, kind="stable")
    Ys = ((dn.astype(np.float64) * gain[:, None, None]) + offset[:, None, None])[order]
    return folder, {"A": A, "wl": wl[order], "fwhm": fwhm[order], "Y": Ys, "nodata": [(1, 2)],
                    "dead": [int(np.flatnonzero(order == d)[0]) for d in dead], "flagged": [(5, 6), (7, 8), (3, 9)], "gt": ENMAP_GT, "epsg": 32633}


def zip_folder(folder: Path, out: Path) -> Path:
    """``folder`` zipped with itself as the top-level entry (as products are delivered)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(Path(folder).iterdir()):
            z.write(f, f"{Path(folder).name}/{f.name}")
    return out


# ----------------------------------------------------------------------------------- EMIT

EMIT_NAME = "EMIT_L2A_RFL_001_20230601T101010_2315205_005.nc"
EMIT_GT = (500000.0, 60.0, 0.0, 4000000.0, 0.0, -60.0)
EMIT_BAD = (1340.0, 1460.0, 1790.0, 1960.0)  # good_wavelengths = 0 inside these ranges


def emit_glt(oy: int, ox: int, down: int, cross: int) -> tuple:
    """(glt_x, glt_y) int32 (oy, ox), 1-based, 0 = no data: ortho (r, c) ← swath
    (downtrack c − 1, crosstrack r − 2) — a quarter turn, so no identity slips through —
    plus ortho (0, 5) repeating swath (3, 3)."""
    r, c = np.mgrid[0:oy, 0:ox]
    d, x = c - 1, r - 2
    ok = (d >= 0) & (d < down) & (x >= 0) & (x < cross)
    gx = np.where(ok, x + 1, 0).astype(np.int32)
    gy = np.where(ok, d + 1, 0).astype(np.int32)
    gx[0, 5], gy[0, 5] = 4, 4
    return gx, gy


def write_emit(folder: Path, seed: int = 2, down: int = 9, cross: int = 8, n_bands: int = 24,
               oy: int = 12, ox: int = 11, name: str = EMIT_NAME, groups=("sensor_band_parameters", "location"),
               reflectance: str = "reflectance", cube=None, wavelengths=None) -> tuple:
    """An EMIT L2A RFL granule written with GDAL's multidimensional netCDF API: swath
    fill (−9999) at (downtrack 4, crosstrack 5). ``cube`` (downtrack × crosstrack × bands
    reflectance) with its ``wavelengths`` (nm) replaces the three-spectrum mixture (the
    demo's worked example packs its scene so); ``down``/``cross``/``n_bands`` then follow it."""
    path = Path(folder) / name
    if cube is not None:
        down, cross, n_bands = np.shape(cube)
        oy, ox = max(oy, cross + 3), max(ox, down + 2)  # the GLT's quarter turn needs the room
    wl = np.linspace(400, 2450, n_bands) if wavelengths is None else np.asarray(wavelengths, np.float64)
    fwhm = np.full(n_bands, 8.5)
    good = np.array([not any(lo <= v <= hi for lo, hi in (EMIT_BAD[:2], EMIT_BAD[2:])) for v in wl], np.uint8)
    A = abundances(down, cross, seed)  # (3, down, cross)
    if cube is None:
        Y = np.einsum("bk,kdc->dcb", spectra(wl), A).astype(np.float32)  # (down, cross, bands)
    else:
        Y = np.ascontiguousarray(cube, dtype=np.float32)
    Y[4, 5, :] = -9999.0
    gx, gy = emit_glt(oy, ox, down, cross)
    f32, i32 = gdal.ExtendedDataType.Create(gdal.GDT_Float32), gdal.ExtendedDataType.Create(gdal.GDT_Int32)
    ds = gdal.GetDriverByName("netCDF").CreateMultiDimensional(str(path))
    rg = ds.GetRootGroup()
    dd = rg.CreateDimension("downtrack", None, None, down)
    dc = rg.CreateDimension("crosstrack", None, None, cross)
    db = rg.CreateDimension("bands", None, None, n_bands)
    a = rg.CreateMDArray(reflectance, [dd, dc, db], f32)
    a.SetNoDataValueDouble(-9999.0)
    a.Write(Y)
    rg.CreateAttribute("geotransform", [6], gdal.ExtendedDataType.Create(gdal.GDT_Float64)).Write(list(EMIT_GT))
    rg.CreateAttribute("spatial_ref", [], gdal.ExtendedDataType.CreateString()).Write(_srs(32611))
    rg.CreateAttribute("title", [], gdal.ExtendedDataType.CreateString()).Write("EMIT L2A Surface Reflectance 60 m V001")
    g = rg.CreateGroup(groups[0])
    g.CreateMDArray("wavelengths", [db], f32).Write(wl.astype(np.float32))
    g.CreateMDArray("fwhm", [db], f32).Write(fwhm.astype(np.float32))
    g.CreateMDArray("good_wavelengths", [db], f32).Write(good.astype(np.float32))
    loc = rg.CreateGroup(groups[1])
    oyd = loc.CreateDimension("ortho_y", None, None, oy)
    oxd = loc.CreateDimension("ortho_x", None, None, ox)
    loc.CreateMDArray("glt_x", [oyd, oxd], i32).Write(gx)
    loc.CreateMDArray("glt_y", [oyd, oxd], i32).Write(gy)
    ds = None
    valid = (gx > 0) & ~((gy == 5) & (gx == 6))
    Ao = np.zeros((3, oy, ox))
    Ao[:, gx > 0] = A[:, gy[gx > 0] - 1, gx[gx > 0] - 1]
    return path, {"A": Ao, "wl": wl, "fwhm": fwhm, "good": good.astype(bool), "valid": valid, "gt": EMIT_GT,
                  "epsg": 32611, "glt": (gx, gy), "swath": Y}


EMIT_MASK_BANDS = ["Cloud flag", "Cirrus flag", "Water flag", "Spacecraft Flag", "Dilated Cloud Flag",
                   "AOD550", "H2O (g cm-2)", "Aggregate Flag"]


def write_emit_mask(folder: Path, down: int, cross: int, flagged: dict, name: str = "") -> Path:
    """The companion EMIT_L2A_MASK granule of :func:`write_emit`'s: ``mask`` (downtrack ×
    crosstrack × 8, float32, 1 = flagged) with ``sensor_band_parameters/mask_bands`` names;
    ``flagged`` maps a band name to the swath pixels (downtrack, crosstrack) flagged in it.
    The data bands (AOD, H2O) hold typical values everywhere."""
    name = name or EMIT_NAME.replace("_L2A_RFL_", "_L2A_MASK_")
    path = Path(folder) / name
    m = np.zeros((down, cross, len(EMIT_MASK_BANDS)), np.float32)
    m[:, :, 5], m[:, :, 6] = 0.08, 1.6
    for band, pixels in flagged.items():
        for d, c in pixels:
            m[d, c, EMIT_MASK_BANDS.index(band)] = 1.0
    ds = gdal.GetDriverByName("netCDF").CreateMultiDimensional(str(path))
    rg = ds.GetRootGroup()
    dd = rg.CreateDimension("downtrack", None, None, down)
    dc = rg.CreateDimension("crosstrack", None, None, cross)
    db = rg.CreateDimension("bands", None, None, len(EMIT_MASK_BANDS))
    a = rg.CreateMDArray("mask", [dd, dc, db], gdal.ExtendedDataType.Create(gdal.GDT_Float32))
    a.SetNoDataValueDouble(-9999.0)
    a.Write(m)
    g = rg.CreateGroup("sensor_band_parameters")
    g.CreateMDArray("mask_bands", [db], gdal.ExtendedDataType.CreateString()).Write(EMIT_MASK_BANDS)
    ds = None
    return path


# --------------------------------------------------------------------------------- PRISMA

PRISMA_NAME = "PRS_L2D_STD_20230601101010_20230601101014_0001.he5"
PRISMA_UL = (300015.0, 4499985.0)  # centre of the upper-left pixel; 30 m pixels
DATA = "HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields/"


def prisma_bands() -> dict:
    """Band lists as stored: VNIR 14 slots from long to short wavelength (slot 0 unused,
    wavelength 0), SWIR 20 slots ascending (last unused); one bad flag in each; SWIR
    starts at 940 nm, below the last good VNIR band (1000 nm)."""
    cw_v = np.concatenate([[0.0], np.linspace(1000, 420, 13)])
    cw_s = np.concatenate([np.linspace(940, 2450, 19), [0.0]])
    fl_v = np.ones(14, np.uint8)
    fl_v[5] = 0
    fl_s = np.ones(20, np.uint8)
    fl_s[10] = 0
    return {"cw_v": cw_v, "cw_s": cw_s, "fw_v": np.where(cw_v > 0, 9.0, 0.0), "fw_s": np.where(cw_s > 0, 11.0, 0.0),
            "fl_v": fl_v, "fl_s": fl_s}


def write_prisma(folder: Path, h: int = 10, w: int = 12, seed: int = 3, name: str = PRISMA_NAME,
                 drop: tuple = ()) -> tuple:
    """A PRISMA L2D .he5 (h5py): cubes rows × bands × columns uint16, scale range
    attributes, geocoding; row 0, columns 0–2 are padding (DN 0 in every band).
    ``drop`` names datasets/attributes left out (for the broken-product tests)."""
    path = Path(folder) / name
    bd = prisma_bands()
    lims = {"Vnir": (0.0, 0.8), "Swir": (-0.01, 1.2)}
    A = abundances(h, w, seed)
    cubes = {}
    for det, cw in (("Vnir", bd["cw_v"]), ("Swir", bd["cw_s"])):
        lo, hi = lims[det]
        Y = np.einsum("bk,khw->bhw", spectra(np.where(cw > 0, cw, 500.0)), A)
        dn = np.clip(np.round((Y - lo) / (hi - lo) * 65535), 1, 65535).astype(np.uint16)
        dn[:, 0, 0:3] = 0
        cubes[det] = dn.transpose(1, 0, 2)  # (rows, bands, cols)
    with h5py.File(path, "w") as f:
        attrs = {
            "Product_ID": np.bytes_("PRS_L2D_STD"), "Processing_Level": np.bytes_("2D"),
            "List_Cw_Vnir": bd["cw_v"].astype(np.float32), "List_Cw_Swir": bd["cw_s"].astype(np.float32),
            "List_Fwhm_Vnir": bd["fw_v"].astype(np.float32), "List_Fwhm_Swir": bd["fw_s"].astype(np.float32),
            "List_Cw_Vnir_Flags": bd["fl_v"], "List_Cw_Swir_Flags": bd["fl_s"],
            "L2ScaleVnirMin": np.float32(lims["Vnir"][0]), "L2ScaleVnirMax": np.float32(lims["Vnir"][1]),
            "L2ScaleSwirMin": np.float32(lims["Swir"][0]), "L2ScaleSwirMax": np.float32(lims["Swir"][1]),
            "Epsg_Code": np.int32(32632),
            "Product_ULcorner_easting": np.float64(PRISMA_UL[0]), "Product_ULcorner_northing": np.float64(PRISMA_UL[1]),
            "Product_LRcorner_easting": np.float64(PRISMA_UL[0] + 30 * (w - 1)),
            "Product_LRcorner_northing": np.float64(PRISMA_UL[1] - 30 * (h - 1)),
            "Product_LLcorner_easting": np.float64(PRISMA_UL[0]),
            "Product_LLcorner_northing": np.float64(PRISMA_UL[1] - 30 * (h - 1)),
            "Product_URcorner_easting": np.float64(PRISMA_UL[0] + 30 * (w - 1)),
            "Product_URcorner_northing": np.float64(PRISMA_UL[1]),
        }
        for k, v in attrs.items():
            if k not in drop:
                f.attrs[k] = v
        for det in ("Vnir", "Swir"):
            if f"{det.upper()}_Cube" not in drop:
                f.create_dataset(DATA + f"{det.upper()}_Cube", data=cubes[det])
        f.create_dataset("HDFEOS/SWATHS/PRS_L2D_HCO/Geolocation Fields/Latitude", data=np.zeros((h, w), np.float32))
    # the expected joined cube
    wl, Y, good = [], [], []
    top = max(c for c, fl in zip(bd["cw_v"], bd["fl_v"]) if c > 0 and fl)
    for det, cw, fl in (("Vnir", bd["cw_v"], bd["fl_v"]), ("Swir", bd["cw_s"], bd["fl_s"])):
        lo, hi = lims[det]
        keep = (cw > 0) & ((cw > top) if det == "Swir" else True)
        dn = cubes[det].transpose(1, 0, 2)[keep].astype(np.float64)
        Y.append(lo + dn * (hi - lo) / 65535)
        wl.append(cw[keep])
        good.append(fl[keep] != 0)
    wl, Y, good = np.concatenate(wl), np.concatenate(Y), np.concatenate(good)
    order = np.argsort(wl)
    gt = (PRISMA_UL[0] - 15, 30.0, 0.0, PRISMA_UL[1] + 15, 0.0, -30.0)
    return path, {"A": A, "wl": wl[order], "Y": Y[order], "good": good[order], "padding": [(0, 0), (0, 1), (0, 2)],
                  "gt": gt, "epsg": 32632, "top": top}


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
