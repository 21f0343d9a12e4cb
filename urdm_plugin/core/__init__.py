"""URDM unmixing engine: pure numpy/torch/GDAL, never imports qgis.

Public API for scripts and notebooks::

    from urdm_plugin.core import unmix_array
    A = unmix_array(Y, E, method="fcls")   # Y (bands, H, W) or (bands, N); E (bands, P)

torch is imported lazily (only by the ``urdm`` method), so importing this package stays
fast and works in a QGIS Python without torch.
"""

from __future__ import annotations

from .errors import Cancelled, UrdmError

__all__ = ["Cancelled", "UrdmError", "unmix_array", "unmix_raster"]


def __getattr__(name):  # lazy: the pipeline pulls in GDAL, keep plain imports cheap
    if name == "unmix_array":
        from .engine.arrays import unmix_array

        return unmix_array
    if name == "unmix_raster":
        from .engine.pipeline import unmix_raster

        return unmix_raster
    raise AttributeError(name)
