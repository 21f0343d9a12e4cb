"""Overlapping tiles and seamless blending for spatial methods.

A spatial method sees one tile (P × h × w abundances out). Tiles overlap by ``overlap``
pixels; :class:`TileBlender` weights each tile by a separable window that ramps (raised cosine)
across the overlap (full weight in the interior and at the image edges) and divides by the
accumulated weight, so the result is seamless and, for a per-pixel method, exactly equal to
solving the image at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError


@dataclass(frozen=True)
class Tile:
    """A window of the image: rows ``row0 : row0+height``, cols ``col0 : col0+width``.

    ``core`` = (row0, col0, height, width) of the part this tile "owns" (the tiles' cores
    partition the image; the rest is overlap shared with neighbours).
    """

    row0: int
    col0: int
    height: int
    width: int
    core: tuple

    @property
    def h(self) -> int:
        return self.height

    @property
    def w(self) -> int:
        return self.width

    def slices(self) -> tuple:
        return slice(self.row0, self.row0 + self.height), slice(self.col0, self.col0 + self.width)


def _starts(n: int, tile: int, overlap: int) -> list:
    if n <= tile:
        return [0]
    step = tile - overlap
    k = int(np.ceil((n - tile) / step)) + 1
    # spread the tiles evenly so every overlap is at least `overlap`
    return [int(round(i * (n - tile) / (k - 1))) for i in range(k)]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list:
    """Tiles of at most ``tile`` × ``tile`` pixels covering a ``height`` × ``width`` image,
    neighbours overlapping by at least ``overlap`` pixels (row-major order)."""
    height, width, tile, overlap = int(height), int(width), int(tile), int(overlap)
    if height < 1 or width < 1:
        raise OptionError(f"Cannot tile an empty image ({height}×{width} pixels)",
                          "Check the image extent or window.")
    if tile < 1 or overlap < 0 or overlap * 2 >= tile:
        raise OptionError(f"Tile size {tile} with overlap {overlap} is not usable",
                          "Use a tile size of at least 32 and an overlap below half the tile size.")
    rows, cols = _starts(height, tile, overlap), _starts(width, tile, overlap)
    th, tw = min(tile, height), min(tile, width)

    def cores(starts, size, n):
        out = []
        for i, s in enumerate(starts):
            lo = 0 if i == 0 else (starts[i - 1] + size + s) // 2
            hi = n if i == len(starts) - 1 else (s + size + starts[i + 1]) // 2
            out.append((lo, hi - lo))
        return out

    rc, cc = cores(rows, th, height), cores(cols, tw, width)
    return [Tile(r, c, th, tw, (rc[i][0], cc[j][0], rc[i][1], cc[j][1]))
            for i, r in enumerate(rows) for j, c in enumerate(cols)]


def tile_size_for_memory(memory_mb: float, bands: int, P: int, bytes_per_value: int = 4,
                         factor: float = 12.0, minimum: int = 32, maximum: int = 2048) -> int:
    """Largest square tile edge (pixels) whose working set fits in ``memory_mb`` MiB.

    A tile holds the B-band data plus about ``factor`` P-band work arrays (ADMM copies,
    duals, FFT buffers), each pixel costing ``(bands + factor·P)·bytes_per_value`` bytes.
    """
    per_px = (int(bands) + float(factor) * int(P)) * int(bytes_per_value)
    side = int(np.sqrt(max(float(memory_mb), 0.0) * 2**20 / max(per_px, 1)))
    return int(min(max(side, minimum), maximum))


def _ramp(n: int, lo_overlap: int, hi_overlap: int) -> np.ndarray:
    """1-D weight: raised-cosine ramp over each overlapping end (edges of the image get 1).

    sin² rising on one tile meets cos² falling on its neighbour, so the two sum to one; the
    weight is tiny right at a tile's border, where a spatial method suffers edge effects.
    """
    w = np.ones(n)
    if lo_overlap > 0:
        r = np.sin(0.5 * np.pi * (np.arange(min(lo_overlap, n)) + 0.5) / lo_overlap) ** 2
        w[: r.size] = np.minimum(w[: r.size], r)
    if hi_overlap > 0:
        r = np.sin(0.5 * np.pi * (np.arange(min(hi_overlap, n)) + 0.5) / hi_overlap) ** 2
        w[n - r.size:] = np.minimum(w[n - r.size:], r[::-1])
    return w


class TileBlender:
    """Accumulates weighted tile results into a (P × H × W) float32 array.

    ``add(tile, A_tile)`` with ``A_tile`` (P × h × w); ``result()`` returns the blended
    abundances (weights normalised per pixel, so they sum to one everywhere; pixels no tile
    covered are NaN). ``overlap`` is accepted for symmetry with :func:`plan_tiles`; the
    actual overlap with neighbours is measured from the tiles added.
    """

    def __init__(self, P: int, H: int, W: int, overlap: int = 0):
        self.P, self.H, self.W = int(P), int(H), int(W)
        self.overlap = int(overlap)
        self._acc = np.zeros((self.P, self.H, self.W), np.float64)
        self._wsum = np.zeros((self.H, self.W), np.float64)

    @staticmethod
    def _window(t: Tile, H: int, W: int) -> np.ndarray:
        r_core, c_core, h_core, w_core = t.core
        # overlap on each side = how far the tile reaches past its core on that side
        top = r_core - t.row0
        bottom = t.row0 + t.height - (r_core + h_core)
        left = c_core - t.col0
        right = t.col0 + t.width - (c_core + w_core)
        # ramps span twice the reach (the neighbour's mirrored reach) so weights sum to one
        wr = _ramp(t.height, 2 * top if t.row0 > 0 else 0, 2 * bottom if t.row0 + t.height < H else 0)
        wc = _ramp(t.width, 2 * left if t.col0 > 0 else 0, 2 * right if t.col0 + t.width < W else 0)
        return np.outer(wr, wc)

    def add(self, tile: Tile, A_tile: np.ndarray) -> None:
        A_tile = np.asarray(A_tile, np.float64)
        if A_tile.shape != (self.P, tile.height, tile.width):
            raise ValueError(f"tile result {A_tile.shape} != {(self.P, tile.height, tile.width)}")
        w = self._window(tile, self.H, self.W)
        rs, cs = tile.slices()
        self._acc[:, rs, cs] += np.nan_to_num(A_tile) * w
        self._wsum[rs, cs] += w

    def result(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = self._acc / self._wsum
        out[:, self._wsum <= 0] = np.nan
        return out.astype(np.float32)
