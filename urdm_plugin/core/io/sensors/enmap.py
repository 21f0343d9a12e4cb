"""EnMAP L2A (also L1C) products: ``*-SPECTRAL_IMAGE.TIF`` + ``*-METADATA.XML``.

The spectral image is an int16 GeoTIFF of scaled reflectance, bands VNIR then SWIR
(their ranges overlap near 900–1000 nm). ``METADATA.XML`` holds, per band,
``bandCharacterisation/bandID[@number]`` with ``wavelengthCenterOfBand`` (nm),
``FWHMOfBand`` (nm), ``GainOfBand`` and ``OffsetOfBand`` (value = DN · gain + offset).
The derived file is a VRT over the TIF with the bands in increasing wavelength order,
per-band scale = gain, offset, nodata (the XML's ``specific/backgroundValue`` — where
delivered products state it, 0 in DLR's L2A — else a legacy ``noDataValue`` element, else
the TIF's own, else −32768) and ENVI-domain wavelengths/FWHM in nm. The quality layers
``*-QL_QUALITY_CLOUD``, ``_CLOUDSHADOW``, ``_HAZE``, ``_SNOW`` and ``_CIRRUS`` (``.TIF``)
present are combined into one uint8 mask on the image grid: 1 = use, 0 = any layer
non-zero (flagged).
"""

from __future__ import annotations

import re
from typing import Iterator, NamedTuple

import numpy as np
from osgeo import gdal

from ...errors import InputImageError
from ..gdal_quiet import QuietGdal
from . import Product
from .cache import (
    atomic_path,
    cached_product,
    envi_metadata,
    read_bytes,
    write_done,
)
from .detect import Location

QUALITY_LAYERS = ("CLOUD", "CLOUDSHADOW", "HAZE", "SNOW", "CIRRUS")
DEFAULT_NODATA = -32768.0
_ROWS = 512  # rows per block when combining quality layers


def _local(tag: str) -> str:
    """The name without its namespace (``{uri}name`` or ``prefix:name``)."""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


class _Element(NamedTuple):
    tag: str  # local name
    attrs: dict
    text: str  # the element's own text, stripped
    children: list

    def iter(self) -> Iterator[_Element]:
        """This element and all below it, in document order."""
        yield self
        for c in self.children:
            yield from c.iter()

    def get(self, key: str, default=None):
        return self.attrs.get(key, default)


def _element(node: list) -> _Element:
    attrs, text, children = {}, [], []
    for c in node[2:]:
        if c[0] == gdal.CXT_Element:
            children.append(_element(c))
        elif c[0] == gdal.CXT_Attribute:
            attrs[_local(c[1])] = c[2][1] if len(c) > 2 else ""
        elif c[0] == gdal.CXT_Text:
            text.append(c[1])
    return _Element(_local(node[1]), attrs, "".join(text).strip(), children)


def _parse_xml(xml: bytes, name: str) -> _Element:
    """The document as a tree of :class:`_Element`, parsed by GDAL's own XML reader: it
    reads no DTD, expands no declared entity and fetches nothing, so a hostile metadata
    file cannot make it read other files or blow up memory (what the standard library's
    parsers would need defusedxml for, a package QGIS does not ship)."""
    with QuietGdal() as quiet:
        tree = gdal.ParseXMLString(xml.decode("utf-8", errors="replace"))
    if tree is None:
        raise InputImageError(f"The EnMAP metadata '{name}' is not readable XML ({quiet.last or 'empty'})",
                              "Download the product again (the XML is incomplete)")
    return _element(tree)


def parse_metadata(xml: bytes, name: str) -> dict:
    """``{"wavelength", "fwhm", "gain", "offset"}`` (B,) float64 arrays in band-number
    order, ``"nodata"`` (float or None) and ``"level"`` ("L2A", "L1C", ... or "")."""
    root = _parse_xml(xml, name)
    bands = []
    for el in root.iter():
        if el.tag != "bandCharacterisation":
            continue
        for b in el.children:
            if b.tag != "bandID":
                continue
            vals = {c.tag: c.text for c in b.children}
            try:
                num = int(b.get("number", len(bands) + 1))
                wl = float(vals["wavelengthCenterOfBand"])
                fw = float(vals.get("FWHMOfBand", "nan"))
                gain = float(vals.get("GainOfBand", "1"))
                off = float(vals.get("OffsetOfBand", "0"))
            except (KeyError, ValueError):
                raise InputImageError(f"Band {b.get('number', '?')} of the EnMAP metadata '{name}' has no "
                                      "readable wavelengthCenterOfBand/GainOfBand/OffsetOfBand",
                                      "Download the product again (the XML is incomplete)") from None
            bands.append((num, wl, fw, gain, off))
    if not bands:
        raise InputImageError(f"The EnMAP metadata '{name}' has no bandCharacterisation/bandID entries",
                              "Give the product's own *-METADATA.XML (it lists each band's wavelength and gain)")
    bands.sort()
    arr = np.array([b[1:] for b in bands], dtype=np.float64)
    nodata = _nodata(root)
    level = ""
    m = re.search(rb"L(1B|1C|2A)", xml[:20000])
    if m:
        level = "L" + m.group(1).decode()
    return {"wavelength": arr[:, 0], "fwhm": arr[:, 1], "gain": arr[:, 2], "offset": arr[:, 3],
            "nodata": nodata, "level": level}


def _number(el) -> float | None:
    try:
        return float(el.text)
    except ValueError:
        return None


def _nodata(root) -> float | None:
    """The spectral no-data value: ``specific/backgroundValue`` (what DLR's processor
    writes, 0 in L2A), else any legacy ``noDataValue``/``noData`` element, else None."""
    for parent in root.iter():
        if parent.tag != "specific":
            continue
        for el in parent.children:
            if el.tag == "backgroundValue" and _number(el) is not None:
                return _number(el)
    for el in root.iter():
        if el.tag.lower() in ("nodatavalue", "nodata") and _number(el) is not None:
            return _number(el)
    return None


def _find(loc: Location, pattern: str) -> str:
    rx = re.compile(pattern, re.IGNORECASE)
    return next((n for n in sorted(loc.names) if rx.search(n)), "")


def build_enmap(loc: Location, source: str) -> Product:
    """The :class:`Product` of an EnMAP product folder/zip (VRT in the cache)."""
    if not loc.main:
        raise InputImageError(f"The EnMAP product '{loc.folder}' has no *-SPECTRAL_IMAGE.TIF",
                              "Give the complete product folder or .zip (with its -SPECTRAL_IMAGE.TIF)")
    xml_name = _find(loc, r"-METADATA\.XML$")
    image = loc.gdal_path(loc.main)
    if not xml_name:
        raise InputImageError(f"The EnMAP product '{loc.folder}' has no *-METADATA.XML beside {loc.main}",
                              "Keep the product's -METADATA.XML beside the spectral image "
                              "(it holds the wavelengths and gains)")
    folder, done = cached_product(loc.key_files, "enmap", source)
    if done is not None:
        return done
    xml = read_bytes(loc.gdal_path(xml_name))
    if xml is None:
        raise InputImageError(f"Cannot read the EnMAP metadata '{loc.gdal_path(xml_name)}'",
                              "Check that the file is complete and readable")
    md = parse_metadata(xml, xml_name)
    with QuietGdal() as q:
        src = gdal.Open(image)
    if src is None:
        raise InputImageError(f"GDAL cannot open the EnMAP spectral image '{image}' ({q.last or 'unknown error'})",
                              "Download the product again (the TIF is incomplete)")
    B = src.RasterCount
    if md["wavelength"].size != B:
        raise InputImageError(f"The EnMAP metadata '{xml_name}' describes {md['wavelength'].size} bands but "
                              f"'{loc.main}' has {B}", "Use the METADATA.XML of the same product")
    nodata = md["nodata"]
    if nodata is None:
        nodata = src.GetRasterBand(1).GetNoDataValue()
    if nodata is None:
        nodata = DEFAULT_NODATA
    order = np.argsort(md["wavelength"], kind="stable")
    sensor = f"EnMAP {md['level'] or 'L2A'}"
    out = folder / "spectral_image.vrt"
    with atomic_path(out) as tmp:
        with QuietGdal() as q:
            vrt = gdal.Translate(tmp, src, format="VRT", bandList=[int(i) + 1 for i in order])
        if vrt is None:
            raise InputImageError(f"Cannot write the EnMAP VRT '{out}' ({q.last})",
                                  "Set URDM_CACHE_DIR to a writable folder")
        for j, i in enumerate(order):
            b = vrt.GetRasterBand(j + 1)
            b.SetScale(float(md["gain"][i]))
            b.SetOffset(float(md["offset"][i]))
            b.SetNoDataValue(float(nodata))
            b.SetDescription(f"{md['wavelength'][i]:.2f} nm")
        fw = md["fwhm"][order]
        vrt.SetMetadata(envi_metadata(md["wavelength"][order], fw if np.all(np.isfinite(fw) & (fw > 0)) else None),
                        "ENVI")
        vrt = None
    layers = [(k, _find(loc, rf"-QL_QUALITY_{k}\.TIFF?$")) for k in QUALITY_LAYERS]
    layers = [(k, n) for k, n in layers if n]
    mask = ""
    if layers:
        mask = "quality_mask.tif"
        _write_quality_mask(loc, layers, src.RasterXSize, src.RasterYSize, src, folder / mask)
    desc = (f"{sensor} '{loc.main}': {B} bands {md['wavelength'].min():.0f}–{md['wavelength'].max():.0f} nm, "
            f"gain/offset and wavelengths from {xml_name}"
            + (f"; quality mask from {', '.join(k.lower() for k, _ in layers)}" if layers else ""))
    write_done(folder, {"sensor": sensor, "path": out.name, "quality_mask_path": mask, "description": desc,
                        "source": source})
    return Product(sensor, source, str(out), str(folder / mask) if mask else "", desc)


def _write_quality_mask(loc: Location, layers: list, W: int, H: int, src, out) -> None:
    """uint8 GeoTIFF ``out`` (H, W): 1 where no quality layer is non-zero, else 0."""
    dss = []
    for _k, n in layers:
        with QuietGdal():
            ds = gdal.Open(loc.gdal_path(n))
        if ds is None or (ds.RasterXSize, ds.RasterYSize) != (W, H):
            raise InputImageError(f"The EnMAP quality layer '{n}' is unreadable or not on the image grid "
                                  f"({W}×{H} pixels)", "Download the product again")
        dss.append(ds)
    with atomic_path(out) as tmp:
        dst = gdal.GetDriverByName("GTiff").Create(tmp, W, H, 1, gdal.GDT_Byte, ["COMPRESS=DEFLATE", "TILED=YES"])
        dst.SetGeoTransform(src.GetGeoTransform())
        dst.SetProjection(src.GetProjection())
        band = dst.GetRasterBand(1)
        band.SetDescription("quality (1 = use, 0 = " + "/".join(k.lower() for k, _ in layers) + ")")
        for r0 in range(0, H, _ROWS):
            h = min(_ROWS, H - r0)
            ok = np.ones((h, W), dtype=bool)
            for ds in dss:
                a = ds.GetRasterBand(1).ReadAsArray(0, r0, W, h)
                nd = ds.GetRasterBand(1).GetNoDataValue()
                flagged = a != 0
                if nd is not None:
                    flagged &= a != nd
                ok &= ~flagged
            band.WriteArray(ok.astype(np.uint8), 0, r0)
        dst = None
