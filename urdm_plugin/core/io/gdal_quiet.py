"""Collect GDAL error messages instead of printing them (never calls UseExceptions)."""

from __future__ import annotations

from osgeo import gdal


class QuietGdal:
    """Silence GDAL's error printing inside a block; the message is kept for ours."""

    def __enter__(self):
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        gdal.ErrorReset()
        return self

    def __exit__(self, *exc):
        self.last = gdal.GetLastErrorMsg()
        gdal.PopErrorHandler()
        return False


