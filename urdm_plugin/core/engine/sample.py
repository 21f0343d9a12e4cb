"""The pixel sample a plan judges (scale, fit) and selects endmembers from: a few rows of
the extent, read where the file stores them cheaply (:func:`read_sample`), and kept for the
next plan of the same image, bands and extent (:class:`SampleCache`)."""

from __future__ import annotations

import numpy as np

from ..window import Window

#: Rows sampled across the extent for the scale check and automatic selection.
SAMPLE_ROWS = 32
#: Storage blocks (tiles, tile rows, strips) the sample is read from at most.
SAMPLE_BLOCKS = 4
#: Samples a :class:`SampleCache` keeps (a plan that leaves out dead bands reads a second).
CACHED_SAMPLES = 4


class SampleCache:
    """Samples read by earlier plans, by image, bands and extent: a front end that plans
    again on every change of its choices (the dialog) reads the pixels once. The dead bands
    found when a sample holds no valid pixel are kept too (finding them reads whole bands)."""

    def __init__(self):
        self._samples: dict = {}  # (image path, bands, extent) -> (bands used × N) float32
        self._dead: dict = {}  # the same keys -> dead bands (core.io.image.dead_bands)

    @staticmethod
    def _key(info, bands, extent) -> tuple:
        return str(info.path), tuple(int(b) for b in bands), extent

    @staticmethod
    def _keep(store: dict, key: tuple, make):
        if key not in store:
            if len(store) >= CACHED_SAMPLES:
                del store[next(iter(store))]  # the oldest
            store[key] = make()
        return store[key]

    def get(self, info, bands, extent) -> np.ndarray:
        """:func:`read_sample` of ``info`` (a :class:`core.io.image.ImageInfo`), or the one read before."""
        return self._keep(self._samples, self._key(info, bands, extent), lambda: read_sample(info, bands, extent))

    def dead_bands(self, info, bands, extent) -> list:
        """:func:`core.io.image.dead_bands` of ``info``, or the ones found before."""
        from ..io.image import dead_bands

        return self._keep(self._dead, self._key(info, bands, extent), lambda: dead_bands(info, bands, extent))


def read_sample(info, bands, extent: Window, held=None) -> np.ndarray:
    """About :data:`SAMPLE_ROWS` × width valid pixels spread over the ``extent`` (a
    :class:`~urdm_plugin.core.window.Window` of the image) as (nb, N).

    Every pixel read costs decoding its whole storage block, so the sample is read where
    the file stores it cheaply. A tiled file (blocks narrower than the extent): at most
    :data:`SAMPLE_BLOCKS` whole tiles on a diagonal (top left to bottom right), decoded side
    by side on every core, their pixels thinned evenly to the sample's size; with ``held``
    (a :class:`core.io.parallel_read.DecodedBlocks`) the tiles it has room for are read whole
    and kept, and the row-block pass pastes them instead of decoding them again (of the
    others only the sample's rows are kept in memory). Other files: rows in
    runs inside at most :data:`SAMPLE_BLOCKS` blocks (strips) spread over the extent.
    Values are not limited in magnitude (the plan judges them: ``plan._in_range``)."""
    from ..io.image import file_layout, window_reader

    r0, w, h = extent.row0, extent.width, extent.height
    layout = file_layout(info)
    bw, bh = layout.block_w, layout.block_h
    if bw < w and bh < h:
        tiles = _sample_tiles(extent, bw, bh)
        quota = int(np.ceil(SAMPLE_ROWS * w / len(tiles)))
        room = 0 if held is None else held.capacity - held.nbytes
        kept, runs = [], []  # tiles read whole (held), and a run of rows of each other tile
        for t in tiles:
            size = len(bands) * t.size * 4 + t.size
            if size <= room:
                kept.append(t)
                room -= size
            else:  # the same decoding, a fraction of the memory: the quota's rows at the centre
                n = min(t.height, int(np.ceil(quota / t.width)))
                runs.append(Window(t.row0 + (t.height - n) // 2, t.col0, n, t.width))
        cols = []
        with window_reader(info) as reader:
            for win, (data, valid) in zip(kept + runs, reader.read_each(bands, kept + runs, max_magnitude=None)):
                n = win.size
                idx = np.unique(np.linspace(0, n - 1, min(quota, n)).round().astype(np.int64))
                cols.append(data.reshape(data.shape[0], -1)[:, idx][:, valid.reshape(-1)[idx]])
                if win in kept:
                    held.offer(win, data, valid)
                del data, valid
        return np.concatenate(cols, axis=1)
    if bh <= 1 or h <= SAMPLE_ROWS:
        runs = [(int(r), 1) for r in np.unique(np.linspace(0, h - 1, min(h, SAMPLE_ROWS)).round().astype(int))]
    else:
        first, last = r0 // bh, (r0 + h - 1) // bh  # block rows the extent touches
        blocks = np.unique(np.linspace(first, last, min(SAMPLE_BLOCKS, last - first + 1)).round().astype(int))
        per = int(np.ceil(SAMPLE_ROWS / blocks.size))
        runs = []
        for b in blocks:
            lo, hi = max(b * bh, r0) - r0, min((b + 1) * bh, r0 + h) - r0  # this block's rows in the extent
            n = min(per, hi - lo)
            runs.append((int(lo + (hi - lo - n) // 2), int(n)))
    with window_reader(info) as reader:
        read = reader.read_each(bands, [Window(r0 + r, extent.col0, n, w) for r, n in runs], max_magnitude=None)
    cols = [data.reshape(data.shape[0], -1)[:, valid.reshape(-1)] for data, valid in read]
    return np.concatenate(cols, axis=1) if cols else np.zeros((len(bands), 0), np.float32)


def _sample_tiles(extent: Window, bw: int, bh: int) -> list:
    """At most :data:`SAMPLE_BLOCKS` tiles of a (bw × bh)-tiled file on the extent's diagonal,
    clipped to the extent: [Window] in image pixels, top to bottom."""
    r0, c0, h, w = extent.astuple()
    k = min(SAMPLE_BLOCKS, (r0 + h - 1) // bh - r0 // bh + 1)
    by = np.linspace(r0 // bh, (r0 + h - 1) // bh, k).round().astype(int)
    bx = np.linspace(c0 // bw, (c0 + w - 1) // bw, k).round().astype(int)
    out = []
    for x, y in dict.fromkeys(zip(bx.tolist(), by.tolist())):
        left, top = max(x * bw, c0), max(y * bh, r0)
        out.append(Window(top, left, min((y + 1) * bh, r0 + h) - top, min((x + 1) * bw, c0 + w) - left))
    return out
