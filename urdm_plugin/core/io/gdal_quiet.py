"""GDAL settings scoped to a block: error messages collected instead of printed (never
calls UseExceptions), and the block cache held to a run's memory budget."""

from __future__ import annotations

from osgeo import gdal


def declare_exceptions_mode() -> None:
    """Say explicitly which error mode GDAL is in, keeping the one in force: GDAL ≥ 3.9
    prints a two-line FutureWarning ("Neither gdal.UseExceptions() nor
    gdal.DontUseExceptions() has been explicitly called") at the first of many calls
    otherwise, which breaks the command line's one-line stderr. For processes the project
    owns (the CLI); never call it inside QGIS, whose process is not ours to configure."""
    if not gdal.GetUseExceptions():  # already on means someone called UseExceptions()
        gdal.DontUseExceptions()


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




#: Share of a run's memory budget GDAL's block cache may hold (its default is 5 % of the
#: machine's RAM, 1.2 GB here: a run read a 400 MB image into it whatever its budget).
CACHE_SHARE = 0.25
MIN_CACHE_MB = 16


class BudgetedGdalCache:
    """Lower GDAL's block cache to :data:`CACHE_SHARE` of ``memory_mb`` (at least
    :data:`MIN_CACHE_MB`) inside the block, and restore it after; never raise it. The cache is
    process-wide (in QGIS too), hence only for the run's duration."""

    def __init__(self, memory_mb: float):
        self.limit = int(max(MIN_CACHE_MB, CACHE_SHARE * float(memory_mb)) * 2 ** 20)
        self.before = None

    def __enter__(self):
        self.before = gdal.GetCacheMax()
        if self.limit < self.before:
            gdal.SetCacheMax(self.limit)
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            gdal.SetCacheMax(self.before)
        return False
