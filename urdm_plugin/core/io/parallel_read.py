"""Reading windows of an image on every core, cut along the file's storage blocks, and
keeping blocks decoded once (the plan's sample) for the pass that reads every row.

A compressed GeoTIFF spends most of a per-pixel run decoding its tiles, which GDAL does on
one core per dataset handle. :class:`WindowReader` cuts a window along the file's block
boundaries (tile columns, else strips or tile rows) into one piece per thread; each thread
reads its pieces through its own dataset handle (opened in that thread; GDAL releases the
GIL while it decodes) straight into the caller's arrays, so the memory is that of one
single-threaded read. GDAL's own multi-threaded decoding (``NUM_THREADS``) is not used:
GDAL before 3.7.1 errs and can crash on band-interleaved (PlanarConfiguration=Separate)
files with it (OSGeo/gdal#7963), and this machine's GDAL is 3.6.

A pixel-interleaved file stores every band of a pixel in the same block, so its windows are
read with all bands in one request (the block is decoded once, not once per band group).

:class:`DecodedBlocks` holds windows already decoded (scaled, validity applied without the
magnitude limit) up to a byte capacity; :meth:`WindowReader.read` pastes them instead of
decoding those blocks again and drops each once the rows below it are being read.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from osgeo import gdal

from ..limits import MAX_MAGNITUDE, address_space_is_tight
from ..window import Window

#: Most threads one reader uses (2-core laptops to workstations; beyond this the disk and
#: the memory bus, not decoding, bound a read).
MAX_THREADS = 8


def decode_threads() -> int:
    """Threads a read uses: GDAL's ``GDAL_NUM_THREADS`` when set (a number, or ``ALL_CPUS``),
    else the cores this process may run on, at most :data:`MAX_THREADS`; one under a tight
    address-space limit (``ulimit -v``, see :func:`~urdm_plugin.core.limits.address_space_is_tight`)."""
    if address_space_is_tight():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    want = (gdal.GetConfigOption("GDAL_NUM_THREADS") or "").strip().upper()
    if want.isdigit():
        cores = int(want)
    return max(1, min(cores, MAX_THREADS))


@dataclass(frozen=True)
class Layout:
    """How the file stores pixels: block size (columns, rows) and whether every band of a
    pixel sits in the same block (``pixel_interleaved``)."""

    block_w: int
    block_h: int
    pixel_interleaved: bool


def layout_of(ds) -> Layout:
    """The :class:`Layout` of an open GDAL dataset."""
    bw, bh = ds.GetRasterBand(1).GetBlockSize()
    inter = (ds.GetMetadataItem("INTERLEAVE", "IMAGE_STRUCTURE") or "").upper()
    return Layout(max(1, int(bw)), max(1, int(bh)), inter == "PIXEL" and ds.RasterCount > 1)


def _cuts(start: int, length: int, block: int) -> list:
    """[start, b1, b2, ..., start + length]: the block boundaries inside the range."""
    first = (start // block + 1) * block
    return [start] + list(range(first, start + length, block)) + [start + length]


def _groups(cuts: list, n: int) -> list:
    """``cuts`` merged into at most ``n`` consecutive ranges of nearly equal block counts."""
    k = len(cuts) - 1
    idx = np.unique(np.linspace(0, k, min(n, k) + 1).round().astype(int))
    return [(cuts[a], cuts[b]) for a, b in zip(idx[:-1], idx[1:])]


def split_window(layout: Layout, window: Window, n: int) -> list:
    """``[Window]``: ``window`` cut along block boundaries into at most ``n`` pieces — by
    block columns when it spans several, else by block rows — so no block is decoded by two
    threads. A pixel-interleaved file is cut into single block columns (its pieces read all
    bands at once: ``n`` pieces at a time bound the raw buffers)."""
    row0, col0, h, w = window.astuple()
    cols = _cuts(col0, w, layout.block_w)
    if n > 1 and len(cols) > 2:
        return [Window(row0, a, h, b - a) for a, b in (zip(cols[:-1], cols[1:]) if layout.pixel_interleaved
                                                        else _groups(cols, n))]
    rows = _cuts(row0, h, layout.block_h)
    if n > 1 and len(rows) > 2:
        return [Window(a, col0, b - a, w) for a, b in _groups(rows, n)]
    return [window]


@dataclass
class DecodedBlocks:
    """Windows (image pixels) already read for ``bands``, kept up to ``capacity`` bytes:
    ``Window -> (data (nb, h, w) float32, valid (h, w))`` read without the magnitude limit
    (only non-finite values invalid)."""

    bands: tuple
    capacity: int
    windows: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(d.nbytes + v.nbytes for d, v in self.windows.values())

    def offer(self, window: Window, data: np.ndarray, valid: np.ndarray) -> bool:
        """Keep a decoded window when it fits the capacity; True if kept."""
        if self.nbytes + data.nbytes + valid.nbytes > self.capacity:
            return False
        self.windows[window] = (data, valid)
        return True

    def drop_above(self, row: int) -> None:
        """Forget the windows that end above image row ``row`` (already used)."""
        for key in [k for k in self.windows if k.row1 <= row]:
            del self.windows[key]


def _subtract(window: Window, held: list) -> tuple:
    """``window`` minus the ``held`` windows: (pieces to read [Window], pastes [(held
    window, piece Window)]), in image pixels."""
    row0, col0, row1, col1 = window.row0, window.col0, window.row1, window.col1
    inside = [k for k in held if k.col0 < col1 and k.col1 > col0 and k.row0 < row1 and k.row1 > row0]
    rows = sorted({row0, row1} | {min(max(v, row0), row1) for k in inside for v in (k.row0, k.row1)})
    reads, pastes = [], []
    for a, b in zip(rows[:-1], rows[1:]):
        cover = sorted((k for k in inside if k.row0 <= a and k.row1 >= b), key=lambda k: k.col0)
        c = col0
        for k in cover:
            lo, hi = max(k.col0, col0), min(k.col1, col1)
            if lo < c:  # overlapping held windows: take the first one's columns
                lo = c
            if lo >= hi:
                continue
            if lo > c:
                reads.append(Window(a, c, b - a, lo - c))
            pastes.append((k, Window(a, lo, b - a, hi - lo)))
            c = hi
        if c < col1:
            reads.append(Window(a, c, b - a, col1 - c))
    return reads, pastes


class WindowReader:
    """Reads windows of ``info`` on :func:`decode_threads` threads (see the module
    docstring). Use as a context manager (or call :meth:`close`): the threads and their
    dataset handles live until then. ``open_dataset(path)`` and ``read_into(ds, info, bands,
    window, max_magnitude, out, bands_per_read)`` are :mod:`.image`'s (made by
    :func:`.image.window_reader`)."""

    def __init__(self, info, open_dataset: Callable, read_into: Callable, threads: Optional[int] = None,
                 flush: bool = False):
        self.info = info
        self._open, self._read = open_dataset, read_into
        ds = open_dataset(info.path)
        self.layout = layout_of(ds)
        ds = None
        self.threads = decode_threads() if threads is None else max(1, int(threads))
        self.flush = flush  # drop each handle's cached raw blocks after its piece
        self._local = threading.local()
        self._handles: list = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.threads, "urdm-read") if self.threads > 1 else None

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            self._handles.clear()
        self._local = threading.local()

    def _dataset(self):
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = self._local.ds = self._open(self.info.path)
            with self._lock:
                self._handles.append(ds)
        return ds

    def band_group(self, n_bands: int) -> Optional[int]:
        """Bands per GDAL request: all of them for a pixel-interleaved file, else the default."""
        return n_bands if self.layout.pixel_interleaved else None

    def _piece(self, bands: list, piece: Window, origin: Window, out: tuple, max_magnitude) -> None:
        rows, cols = piece.offset(-origin.row0, -origin.col0).slices()
        data, valid = out
        ds = self._dataset()
        self._read(ds, self.info, bands, piece, max_magnitude, out=(data[:, rows, cols], valid[rows, cols]),
                   bands_per_read=self.band_group(len(bands)))
        if self.flush:
            ds.FlushCache()

    def read(self, bands: Sequence[int], window: Window, max_magnitude: Optional[float] = MAX_MAGNITUDE,
             held: Optional[DecodedBlocks] = None) -> tuple:
        """``(data (nb, h, w) float32, valid (h, w))`` of the :class:`Window`, exactly as
        :func:`.image.read_window` gives it; the parts ``held`` holds are pasted, not read."""
        bands = [int(b) for b in bands]
        data = np.empty((len(bands), window.height, window.width), np.float32)
        valid = np.empty((window.height, window.width), bool)
        use = held is not None and held.windows and tuple(held.bands) == tuple(bands)
        reads, pastes = _subtract(window, list(held.windows) if use else [])
        jobs = [(p, window, (data, valid)) for piece in reads for p in split_window(self.layout, piece, self.threads)]
        self._run(bands, jobs, max_magnitude)
        for key, piece in pastes:
            d, v = held.windows[key]
            src = piece.offset(-key.row0, -key.col0).slices()
            rows, cols = piece.offset(-window.row0, -window.col0).slices()
            dst, vv = data[:, rows, cols], valid[rows, cols]
            dst[...] = d[(slice(None), *src)]
            vv[...] = v[src]
            if max_magnitude is not None:  # the limit the held window was read without
                big = (np.abs(dst) > max_magnitude).any(axis=0)
                if big.any():
                    vv &= ~big
                    dst[:, big] = 0.0
        if use:
            held.drop_above(window.row1)
        return data, valid

    def read_each(self, bands: Sequence[int], windows: Sequence[Window],
                  max_magnitude: Optional[float] = MAX_MAGNITUDE) -> list:
        """``[(data, valid)]`` of several :class:`Window` objects, read side by side."""
        bands = [int(b) for b in bands]
        outs = [(np.empty((len(bands), w.height, w.width), np.float32), np.empty((w.height, w.width), bool))
                for w in windows]
        self._run(bands, [(p, win, out) for win, out in zip(windows, outs)
                          for p in split_window(self.layout, win, self.threads)], max_magnitude)
        return outs

    def _run(self, bands: list, jobs: list, max_magnitude) -> None:
        """Read each ``(piece, origin, out)``: the piece (a :class:`Window` of the image) into
        ``out``, arrays whose (0, 0) is the top left pixel of the window ``origin``."""
        if self._pool is None or len(jobs) < 2:
            for piece, origin, out in jobs:
                self._piece(bands, piece, origin, out, max_magnitude)
            return
        futures = [self._pool.submit(self._piece, bands, *job, max_magnitude) for job in jobs]
        for f in futures:
            f.result()  # the first failure (an InputImageError naming the rows) is raised here
