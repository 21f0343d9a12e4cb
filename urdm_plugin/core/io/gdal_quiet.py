"""GDAL settings scoped to a block: errors as return values in this thread, error messages
collected instead of printed (never calls UseExceptions), and the block cache held to a
run's memory budget."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from osgeo import gdal


def declare_exceptions_mode() -> None:
    """Say explicitly which error mode GDAL is in, keeping the one in force: GDAL ≥ 3.9
    prints a two-line FutureWarning ("Neither gdal.UseExceptions() nor
    gdal.DontUseExceptions() has been explicitly called") at the first of many calls
    otherwise, which breaks the command line's one-line stderr. For processes the project
    owns (the CLI); never call it inside QGIS, whose process is not ours to configure."""
    if not gdal.GetUseExceptions():  # already on means someone called UseExceptions()
        gdal.DontUseExceptions()


#: Whether :func:`native_stderr_captured` redirects; only processes the project owns (the
#: CLI, through :func:`capture_native_stderr`) turn it on: the file descriptors are the process's.
_CAPTURE_NATIVE = [False]


def capture_native_stderr() -> None:
    """Let :func:`native_stderr_captured` take what native code prints (for the CLI only)."""
    _CAPTURE_NATIVE[0] = True


@contextlib.contextmanager
def native_stderr_captured():
    """Inside, what C code writes to file descriptor 2 goes to a list (yielded; one string
    appended on exit) instead of the terminal. libtiff under GDAL 3.10 prints
    "_tiffWriteProc: File too large." past every error handler when a write fails, which
    would break the CLI's one-line stderr. Does nothing unless :func:`capture_native_stderr`
    was called (never inside QGIS). Not for blocks that other threads may overlap."""
    box: list = []
    if not _CAPTURE_NATIVE[0]:
        yield box
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.append(tmp.read().decode("utf-8", errors="replace"))


@contextlib.contextmanager
def errors_as_values():
    """Inside (a ``with`` block, or a function it decorates): GDAL, OGR and OSR report errors
    as return values (None, error codes), as the core's checks expect, whatever mode the
    process is in. QGIS 3.40's Processing plugin calls ``gdal.UseExceptions()`` process-wide
    when it loads, so inside QGIS an unguarded ``gdal.Open`` of a missing file raises
    RuntimeError there. The mode is set for this thread only (GDAL >= 3.7's ExceptionMgr)
    and restored on exit; GDAL < 3.7 has no per-thread mode and nothing changes (exceptions
    stay off unless someone turned them on, which QGIS 3.22 does not)."""
    from osgeo import ogr, osr

    with contextlib.ExitStack() as stack:
        for module in (gdal, ogr, osr):
            if hasattr(module, "ExceptionMgr"):
                stack.enter_context(module.ExceptionMgr(useExceptions=False))
        yield


class QuietGdal:
    """Silence GDAL's error printing inside a block (errors as values, see
    :func:`errors_as_values`); the message is kept for ours."""

    def __enter__(self):
        self._values = errors_as_values()
        self._values.__enter__()
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        gdal.ErrorReset()
        return self

    def __exit__(self, *exc):
        self.last = gdal.GetLastErrorMsg()
        gdal.PopErrorHandler()
        self._values.__exit__(None, None, None)
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


@contextlib.contextmanager
def pam_enabled():
    """GDAL's PAM side files (``.aux.xml``) on in this thread for the block, whatever the
    process-wide setting (``qgis_process`` runs of this plugin turn it off for the inputs)."""
    old = gdal.GetThreadLocalConfigOption("GDAL_PAM_ENABLED", None)
    gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", "YES")
    try:
        yield
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", old)
