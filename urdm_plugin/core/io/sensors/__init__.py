"""Sensor products opened as delivered: EnMAP L2A, EMIT L2A RFL, PRISMA L2D.

:func:`resolve_product` recognises a product from what the user gives (the product
folder, its .zip, the main file, or a GDAL subdataset string such as
``NETCDF:"x.nc":reflectance``) and returns a :class:`Product` whose ``path`` is a
GDAL-openable file on disk — a VRT (EnMAP) or a cached GeoTIFF (EMIT orthorectified
through its GLT, PRISMA with both cubes joined) — carrying what
:func:`~urdm_plugin.core.io.image.open_image` reads: ENVI-domain ``wavelength``/``fwhm``
in nm with ``wavelength_units = Nanometers``, ``bbl``, per-band scale/offset and nodata.
Derived files live in the per-user cache of :mod:`.cache`. Ordinary rasters give None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

from ..gdal_quiet import errors_as_values


@dataclass
class Product:
    """A recognised sensor product.

    ``sensor`` e.g. "EnMAP L2A"; ``source_path`` what the user gave; ``path`` the derived
    GDAL-openable raster on disk (bands in increasing wavelength order);
    ``quality_mask_path`` a uint8 raster on the image grid (1 = use, 0 = flagged) or "";
    ``description`` one line for messages (sensor and what was read).
    """

    sensor: str
    source_path: str
    path: str
    quality_mask_path: str = ""
    description: str = ""


@errors_as_values()
def resolve_product(path: Union[str, os.PathLike]) -> Optional[Product]:
    """The :class:`Product` behind ``path``, building its cached files when needed, or
    None when ``path`` is no EnMAP/EMIT/PRISMA product. Raises
    :class:`~urdm_plugin.core.errors.InputImageError` for a recognised but broken product."""
    from .detect import detect

    found = detect(str(path))
    if found is None:
        return None
    kind, loc = found
    if kind == "enmap":
        from .enmap import build_enmap
        return build_enmap(loc, str(path))
    if kind == "emit":
        from .emit import build_emit
        return build_emit(loc, str(path))
    from .prisma import build_prisma
    return build_prisma(loc, str(path))


__all__ = ["Product", "resolve_product"]
