"""Recognise which sensor product a user's path is (EnMAP L2A, EMIT L2A RFL, PRISMA L2D).

Accepted: the product folder (searched up to three levels down), its .zip (read
through GDAL's ``/vsizip/``), a ``/vsizip/`` path, the main file itself, or a GDAL
subdataset string (``NETCDF:"x.nc":reflectance``, ``HDF5:"x.he5"://...``) as QGIS gives
for a layer. Recognition is by the products' file names (``*-SPECTRAL_IMAGE.TIF`` and
``ENMAP*-METADATA.XML``, ``EMIT_L2A_RFL_*.nc``, ``PRS_L2D_*.he5``) and, for other
``.nc``/``.he5`` names, by their structure.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Optional

from ...errors import InputImageError
from ..gdal_quiet import QuietGdal

_SUBDATASET = re.compile(r'^(?P<drv>NETCDF|HDF5|HDF5IMAGE):(?:"(?P<q>[^"]+)"|(?P<u>[^:]+))(?::.*)?$',
                         re.IGNORECASE)
_VSIZIP = re.compile(r"^/vsizip/\{?(?P<zip>.+?\.zip)\}?(?:/(?P<inner>.*))?$", re.IGNORECASE)
_ENMAP_IMAGE = re.compile(r"-SPECTRAL_IMAGE\.TIFF?$", re.IGNORECASE)
_ENMAP_XML = re.compile(r"^ENMAP.*-METADATA\.XML$", re.IGNORECASE)
_EMIT = re.compile(r"^EMIT_L2A_RFL.*\.nc$", re.IGNORECASE)
_PRISMA = re.compile(r"^PRS_L2D.*\.he5$", re.IGNORECASE)


@dataclass
class Location:
    """Where a product's files are.

    ``folder`` GDAL path of the folder holding them (``/vsizip/...`` inside a zip);
    ``names`` the file names in it; ``main`` the main file's name ("" if missing);
    ``key_files`` on-disk files identifying the product (for the cache key);
    ``zip_path`` the .zip on disk and ``member`` the main file's name inside it.
    """

    folder: str
    names: list
    main: str
    key_files: list
    zip_path: str = ""
    member: str = ""
    extra: dict = field(default_factory=dict)

    def gdal_path(self, name: str) -> str:
        return self.folder.rstrip("/") + "/" + name if self.zip_path else os.path.join(self.folder, name)


def _kind(name: str) -> Optional[str]:
    if _ENMAP_IMAGE.search(name) or _ENMAP_XML.match(name):
        return "enmap"
    if _EMIT.match(name):
        return "emit"
    if _PRISMA.match(name):
        return "prisma"
    return None


def _sniff(path: str) -> Optional[str]:
    """'emit'/'prisma' when an unrecognised .nc/.he5 file has that product's structure."""
    from osgeo import gdal

    ext = os.path.splitext(path)[1].lower()
    if ext not in (".nc", ".he5", ".h5"):
        return None
    with QuietGdal():
        ds = gdal.OpenEx(path, gdal.OF_MULTIDIM_RASTER)
        rg = ds.GetRootGroup() if ds is not None else None
        if rg is None:
            return None
        groups = set(rg.GetGroupNames() or [])
        if ext == ".nc" and "reflectance" in (rg.GetMDArrayNames() or []) and \
                {"sensor_band_parameters", "location"} <= groups:
            return "emit"
        if ext != ".nc" and rg.OpenGroupFromFullname("/HDFEOS/SWATHS/PRS_L2D_HCO") is not None:
            return "prisma"
    return None


def _from_names(folder: str, names: list, where: str, key_files: list, zip_path: str = "") -> Optional[tuple]:
    """Classify the product among ``names`` (paths relative to ``folder``, '/'-separated)."""
    found = {}
    for n in names:
        k = _kind(n.rsplit("/", 1)[-1])
        if k == "enmap":
            found.setdefault(("enmap", n.rpartition("/")[0]), []).append(n)
        elif k:
            found.setdefault((k, n), []).append(n)
    if not found:
        return None
    if len(found) > 1:
        raise InputImageError(f"'{where}' holds {len(found)} sensor products",
                              "Give one product's folder, .zip or main file")
    (kind, sub), members = next(iter(found.items()))
    if kind == "enmap":
        base = (folder.rstrip("/") + "/" + sub if zip_path else os.path.join(folder, sub)) if sub else folder
        here = [n.rsplit("/", 1)[-1] for n in names if n.rpartition("/")[0] == sub]
        image = next((n for n in here if _ENMAP_IMAGE.search(n)), "")
        return kind, Location(base, here, image, key_files, zip_path, member=image)
    rel = members[0]
    parent, _, name = rel.rpartition("/")
    base = (folder.rstrip("/") + "/" + parent if zip_path else os.path.join(folder, parent)) if parent else folder
    here = [n.rsplit("/", 1)[-1] for n in names if n.rpartition("/")[0] == parent]  # e.g. EMIT's mask granule
    return kind, Location(base, here, name, key_files if zip_path else [os.path.join(base, name)],
                          zip_path, member=rel)


def _zip_location(zip_path: str, inner: str = "") -> Optional[tuple]:
    try:
        with zipfile.ZipFile(zip_path) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputImageError(f"Cannot read the zip file '{zip_path}' ({exc})",
                              "Download the product again, or unzip it and give the folder") from None
    inner = inner.strip("/")
    if inner:
        if _kind(inner.rsplit("/", 1)[-1]) is None:
            return None  # a single ordinary file inside a zip: GDAL reads it as it is
        prefix = inner.rpartition("/")[0]
        names = [n for n in names if n.rpartition("/")[0] == prefix]
    return _from_names("/vsizip/" + os.path.abspath(zip_path), names, zip_path, [os.path.abspath(zip_path)],
                       os.path.abspath(zip_path))


def _folder_location(folder: str) -> Optional[tuple]:
    names = []
    root_depth = folder.rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, filenames in os.walk(folder):
        if dirpath.count(os.sep) - root_depth >= 3:
            dirnames[:] = []
        rel = os.path.relpath(dirpath, folder)
        names += [f if rel == "." else f"{rel.replace(os.sep, '/')}/{f}" for f in filenames]
    found = _from_names(folder, names, folder, [])
    if found is None:
        return None
    kind, loc = found
    if kind == "enmap":
        loc.key_files = [os.path.join(loc.folder, n) for n in loc.names]
    return kind, loc


def detect(path: str) -> Optional[tuple]:
    """``(kind, Location)`` with kind 'enmap', 'emit' or 'prisma', or None when ``path``
    is not one of these products. Raises InputImageError for an unreadable .zip or a
    folder holding several products."""
    p = str(path).strip()
    if "|" in p and not os.path.exists(p):  # QGIS source options ("file|layername=...")
        p = p.split("|", 1)[0]
    m = _SUBDATASET.match(p)
    if m:
        p = m.group("q") or m.group("u")
    m = _VSIZIP.match(p)
    if m:
        return _zip_location(m.group("zip"), m.group("inner") or "")
    if os.path.isdir(p):
        return _folder_location(os.path.abspath(p))
    if not os.path.isfile(p):
        return None
    if p.lower().endswith(".zip"):
        return _zip_location(p)
    name = os.path.basename(p)
    kind = _kind(name) or _sniff(p)
    if kind is None:
        return None
    folder = os.path.dirname(os.path.abspath(p))
    if kind == "enmap":
        names = sorted(os.listdir(folder))
        image = name if _ENMAP_IMAGE.search(name) else next((n for n in names if _ENMAP_IMAGE.search(n)), "")
        return kind, Location(folder, names, image, [os.path.join(folder, n) for n in names], member=image)
    return kind, Location(folder, [name], name, [os.path.abspath(p)], member=name)
