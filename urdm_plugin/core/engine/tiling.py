"""Overlapping tiles, seamless blending, and the one loop that runs a spatial method over a scene.

:func:`solve_tiled` is used by the array API and the raster pipeline alike: the scene-wide
context (noise level, the regularisation weight, band weights) is fixed once on a central
window before the tiles, every tile sees the same context, and the results are blended.
A spatial method sees one tile (P × h × w abundances out). Tiles overlap by ``overlap``
pixels; :class:`TileBlender` weights each tile by a separable window that ramps (raised cosine)
across the overlap (full weight in the interior and at the image edges) and divides by the
accumulated weight, so the result is seamless and, for a per-pixel method, exactly equal to
solving the image at once.

Size note: ~530 lines; the tile plan, the blender, the scene context with its share of the
progress bar and the one loop (here or on an executor, with its row assembler) belong together.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from ..errors import Cancelled, OptionError
from ..window import Window


@dataclass(frozen=True)
class Tile(Window):
    """A :class:`~urdm_plugin.core.window.Window` of the scene and its ``core``: the
    :class:`Window` this tile "owns" (the tiles' cores partition the scene; the rest is
    overlap shared with neighbours)."""

    core: Window


def _axis(n: int, tile: int, overlap: int) -> tuple:
    """(starts, size) along one axis: the fewest tiles of at most ``tile`` pixels whose
    neighbours overlap by at least ``overlap``, each as short as that allows.

    Fewest, then shortest: a fixed size makes the last tiles overlap by up to a whole tile
    (1024 px in 512-px tiles: 3 tiles of 512, 1536 px of work per row; shortest: 3 of 363,
    1089 px).
    """
    if n <= tile:
        return [0], n
    k = int(np.ceil((n - overlap) / (tile - overlap)))
    size = min(tile, int(np.ceil((n + (k - 1) * overlap) / k)))
    # spread the tiles evenly so every overlap is at least `overlap`
    return [int(round(i * (n - size) / (k - 1))) for i in range(k)], size


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list:
    """Tiles of at most ``tile`` × ``tile`` pixels covering a ``height`` × ``width`` image,
    neighbours overlapping by at least ``overlap`` pixels (row-major order); as few tiles
    as that allows, each as small as it can be (see :func:`_axis`)."""
    height, width, tile, overlap = int(height), int(width), int(tile), int(overlap)
    if height < 1 or width < 1:
        raise OptionError(f"Cannot tile an empty image ({height}×{width} pixels)",
                          "Check the image extent or window.")
    if tile < 1 or overlap < 0 or overlap * 2 >= tile:
        raise OptionError(f"Tile size {tile} with overlap {overlap} is not usable",
                          "Use a tile size of at least 32 and an overlap below half the tile size.")
    (rows, th), (cols, tw) = _axis(height, tile, overlap), _axis(width, tile, overlap)

    def cores(starts, size, n):
        out = []
        for i, s in enumerate(starts):
            lo = 0 if i == 0 else (starts[i - 1] + size + s) // 2
            hi = n if i == len(starts) - 1 else (s + size + starts[i + 1]) // 2
            out.append((lo, hi - lo))
        return out

    rc, cc = cores(rows, th, height), cores(cols, tw, width)
    return [Tile(r, c, th, tw, Window(rc[i][0], cc[j][0], rc[i][1], cc[j][1]))
            for i, r in enumerate(rows) for j, c in enumerate(cols)]


#: Copies of a tile's data alive at once while a spatial method solves it (the reading,
#: its zero-filled float64 copy, the method's own working copy).
TILE_DATA_COPIES = 3


def tile_edge_for_memory(tile_size: int, memory_mb: float, bands: int) -> int:
    """The largest tile edge (pixels) to plan with: ``tile_size``, or less when
    :data:`TILE_DATA_COPIES` float64 copies of a tile's ``bands`` bands would exceed
    ``memory_mb`` MiB; never below 32."""
    fit = int(np.sqrt(float(memory_mb) * 2 ** 20 / (max(int(bands), 1) * 8 * TILE_DATA_COPIES)))
    return int(max(32, min(int(tile_size), fit)))


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
    """Accumulates weighted tile results over a P × H × W scene and hands out finished rows.

    ``add(tile, A_tile)`` with ``A_tile`` (P × h × w). Only the rows between the last
    :meth:`flush` and the lowest row a tile reached are held (float64 weighted sums and the
    weight sum), so a scene tiled row of tiles by row of tiles needs memory for about one
    row of tiles, not for the scene. ``flush(upto)`` returns the blended rows up to ``upto``
    (weights normalised per pixel, so they sum to one everywhere; pixels no tile covered
    are NaN) and forgets them; ``result()`` is every row not flushed yet (the whole scene
    when nothing was). The overlap with neighbours is measured from the tiles added.
    """

    def __init__(self, P: int, H: int, W: int):
        self.P, self.H, self.W = int(P), int(H), int(W)
        self.row0 = 0  # first row held
        self._acc = np.zeros((self.P, 0, self.W), np.float64)
        self._wsum = np.zeros((0, self.W), np.float64)

    @staticmethod
    def _window(t: Tile, H: int, W: int) -> np.ndarray:
        # overlap on each side = how far the tile reaches past its core on that side
        top, bottom = t.core.row0 - t.row0, t.row1 - t.core.row1
        left, right = t.core.col0 - t.col0, t.col1 - t.core.col1
        # ramps span twice the reach (the neighbour's mirrored reach) so weights sum to one
        wr = _ramp(t.height, 2 * top if t.row0 > 0 else 0, 2 * bottom if t.row0 + t.height < H else 0)
        wc = _ramp(t.width, 2 * left if t.col0 > 0 else 0, 2 * right if t.col0 + t.width < W else 0)
        return np.outer(wr, wc)

    def _reach(self, end: int) -> None:
        """Hold rows up to ``end`` (exclusive)."""
        n = end - self.row0 - self._wsum.shape[0]
        if n > 0:
            self._acc = np.concatenate([self._acc, np.zeros((self.P, n, self.W))], axis=1)
            self._wsum = np.concatenate([self._wsum, np.zeros((n, self.W))], axis=0)

    def add(self, tile: Tile, A_tile: np.ndarray) -> None:
        A_tile = np.asarray(A_tile, np.float64)
        if A_tile.shape != (self.P, tile.height, tile.width):
            raise ValueError(f"tile result {A_tile.shape} != {(self.P, tile.height, tile.width)}")
        if tile.row0 < self.row0:
            raise ValueError(f"tile at row {tile.row0} reaches rows already flushed (below {self.row0})")
        self._reach(tile.row0 + tile.height)
        w = self._window(tile, self.H, self.W)
        rs, cs = tile.offset(-self.row0, 0).slices()
        self._acc[:, rs, cs] += np.nan_to_num(A_tile) * w
        self._wsum[rs, cs] += w

    def flush(self, upto: int) -> tuple:
        """``(row0, A (P, n, W) float32)``: the blended rows ``row0 … upto − 1``, forgotten here."""
        upto = int(min(max(upto, self.row0), self.H))
        self._reach(upto)
        n = upto - self.row0
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (self._acc[:, :n] / self._wsum[:n]).astype(np.float32)
        out[:, self._wsum[:n] <= 0] = np.nan
        row0, self.row0 = self.row0, upto
        self._acc = np.ascontiguousarray(self._acc[:, n:])
        self._wsum = np.ascontiguousarray(self._wsum[n:])
        return row0, out

    def result(self) -> np.ndarray:
        return self.flush(self.H)[1]


# ----------------------------------------------------------------------------- the tile loop
#: Side of the central window the scene's noise level is estimated on (pixels).
NOISE_WINDOW = 256
#: float64 copies of the noise window the σ estimate holds at once (data, FCLS residual,
#: its differences): measured ~500 MB above the tiles' level for 256² × 200 bands.
NOISE_COPIES = 4
#: Largest default overlap between neighbouring tiles (pixels).
MAX_DEFAULT_OVERLAP = 32


def default_overlap(tile_size: int) -> int:
    """Tile overlap (pixels) used when none is given: tile_size/8, between 4 and 32."""
    return int(max(4, min(MAX_DEFAULT_OVERLAP, int(tile_size) // 8)))


#: ``read(window) -> (Y (B, h, w) float, valid (h, w) bool)``: the scene's data and valid
#: mask in a :class:`Window` of it (scene pixel coordinates); ``valid`` is False at every
#: pixel with a non-finite band (the raster reader and the array API both ensure it).
ReadFn = Callable[[Window], tuple]


@dataclass
class TiledResult:
    """``A`` (P, H, W) float32 (NaN where not valid), ``std`` the method's extra maps
    (k·P, H, W), stacked in the order of :func:`core.methods.registry.aux_layers`, or None, ``valid``
    (H, W) bool (pixels a tile solved), ``info`` (scene and per-tile solver facts)."""

    A: np.ndarray
    std: Optional[np.ndarray]
    valid: np.ndarray
    info: dict = field(default_factory=dict)


def _central(read: ReadFn, H: int, W: int, size: int) -> tuple:
    from ..methods.weight_selection import central_window

    Y, valid = read(central_window(H, W, size))
    valid = np.asarray(valid, bool)
    Y = np.array(Y, np.float64)  # our own copy (the array API's reader gives views of the caller's)
    Y[:, ~valid] = 0.0
    return Y, valid


def noise_window(bands: int, memory_mb: Optional[float] = None) -> int:
    """Edge (pixels) of the central window the scene's noise σ and weight come from:
    :data:`NOISE_WINDOW`, or less when :data:`NOISE_COPIES` float64 copies of it would exceed
    ``memory_mb`` MiB (512 MiB keeps 256 up to 256 bands); never below 64 (4,096 pixels,
    plenty for a robust σ)."""
    if memory_mb is None:
        return NOISE_WINDOW
    fit = int(np.sqrt(float(memory_mb) * 2 ** 20 / (max(int(bands), 1) * 8 * NOISE_COPIES)))
    return int(max(64, min(NOISE_WINDOW, fit)))


def scene_context(spec, read: ReadFn, shape: tuple, E: np.ndarray, params: dict, ctx,
                  choose_weight: bool, progress=None, cancel=None) -> tuple:
    """Fix what every tile must share, from the scene's central window: the white-noise σ
    (window of :func:`noise_window`², within the run's memory budget) and, when ``choose_weight`` and the weight is "auto",
    the weight (and URDM's band weights) by the method's chooser. Returns (params, ctx,
    info); a window with fewer than 16 valid pixels leaves each tile to itself."""
    from ..methods.noise import estimate_noise_sigma

    H, W = shape
    Y, valid = _central(read, H, W, noise_window(E.shape[0], ctx.memory_mb))
    info: dict = {}
    if valid.sum() < 16:
        return params, ctx, info
    if ctx.sigma is None:
        sigma = float(estimate_noise_sigma(Y, E, valid=valid))
        ctx = replace(ctx, sigma=sigma, signal_rms=float(np.sqrt(np.mean(np.square(Y[:, valid])))))
    info["noise_sigma"] = ctx.sigma
    if params.get("variability") == "auto" and ctx.variability is None:
        from ..methods.elmm import variability_test

        test = variability_test(Y, E, valid, ctx.sigma)
        ctx = replace(ctx, variability=test["use"])
        info["variability_decision"] = dict(test, model="scaling" if test["use"] else "none", rule="auto (scene window)")
    if choose_weight and spec.weight_is_auto(params):
        if progress is not None:
            progress(0.0, "choosing the regularisation weight from the scene")
        params, ctx, report = spec.load_weight_chooser()(Y, E, valid, params, ctx, progress=progress, cancel=cancel)
        box = Window(*report["window"])
        info["lambda_selection"] = dict(report, window=f"central window of the scene, {box.height}×{box.width} pixels")
    return params, ctx, info


#: Runs of the method the weight choice costs on its window, for the bar's split: about six
#: candidates (0, a grid of three, two refinements), each solved twice (SURE's probe).
CHOOSER_SOLVES = 12


def chooser_share(spec, params: dict, n_tiles: int, scene_pixels: int) -> float:
    """The part of a tiled run's bar the scene-wide weight choice takes (0 when none runs):
    its solves on the ≤ SELECTION_WINDOW² window against the tiles' pixels."""
    if n_tiles <= 1 or not spec.weight_is_auto(params):
        return 0.0
    from ..methods.weight_selection import SELECTION_WINDOW

    cost = CHOOSER_SOLVES * min(SELECTION_WINDOW ** 2, scene_pixels)
    return cost / (cost + scene_pixels)


def _part(progress, lo: float, hi: float):
    """``progress`` for the sub-range [lo, hi] of the bar (None stays None)."""
    if progress is None:
        return None
    return lambda f, m: progress(lo + (hi - lo) * min(max(float(f), 0.0), 1.0), m)


#: ``sink(row0, A (P, n, W) float32, std like A or None, valid (n, W) bool)``: rows of the
#: scene that no later tile touches, handed out as soon as they are blended (row0 in scene rows).
RowSink = Callable[[int, np.ndarray, Optional[np.ndarray], np.ndarray], None]


def solve_tiled(spec, read: ReadFn, shape: tuple, E: np.ndarray, params: dict, ctx,
                tile_size: int, overlap: Optional[int] = None, progress=None, cancel=None,
                executor=None, sink: Optional[RowSink] = None) -> TiledResult:
    """Run the spatial method ``spec`` (a registry :class:`MethodSpec`) over a scene of
    ``shape`` = (H, W) pixels in overlapping tiles of at most ``tile_size``² pixels.

    ``read`` gives the data of a window (see :data:`ReadFn`); ``E`` (B, P) the endmembers;
    ``params`` the method's validated parameters (its weight may be "auto": with more than
    one tile it is chosen once for the scene); ``ctx`` a :class:`SceneContext` (seed,
    device; the noise level is filled in here). ``progress(fraction, message)`` and
    ``cancel()`` are called per tile and inside the method.

    ``sink``: None (the result holds the scene's maps) or a :data:`RowSink` that receives
    each band of finished rows once the row of tiles below it is done, so only about one row
    of tiles is ever held (the raster pipeline writes them; the result's ``A``, ``std`` and
    ``valid`` are then None).

    ``executor``: None (tiles one after the other, here) or anything with ``submit(fn,
    *args) -> future`` whose futures have ``result()`` and ``cancel()`` — a
    ``concurrent.futures`` executor or a ``dask.distributed.Client``. The scene context is
    fixed here first, so remote tiles compute exactly what local ones would; the blend
    happens here, in tile order, with at most :data:`MAX_IN_FLIGHT` tiles outstanding.
    """
    H, W = int(shape[0]), int(shape[1])
    overlap = default_overlap(tile_size) if overlap is None else int(overlap)
    tiles = plan_tiles(H, W, int(tile_size), overlap)
    n = len(tiles)
    spec.load()  # fails here, with the reason, when the method cannot run
    share = chooser_share(spec, params, n, H * W)
    params, ctx, info = scene_context(spec, read, (H, W), E, params, ctx, choose_weight=n > 1,
                                      progress=_part(progress, 0.0, share), cancel=cancel)
    progress = _part(progress, share, 1.0)  # the tiles take the rest of the bar
    info["tiles"] = n
    scene = _SceneMaps(E.shape[1], H, W) if sink is None else None
    rows = _RowAssembler(E.shape[1], H, W, scene.take if scene is not None else sink)
    facts = _TileFacts(info, n)
    jobs = _tile_jobs(tiles, read, spec.id, E, params, ctx, progress, cancel, executor)
    for i, (A, std, tinfo, v) in enumerate(run_in_order(jobs, executor, cancel)):
        facts.add(tinfo)
        rows.add(tiles[i], A, std, v)
        del A, std, v
        if i + 1 == n or tiles[i + 1].row0 != tiles[i].row0:  # a row of tiles is done
            rows.flush(tiles[i + 1].row0 if i + 1 < n else H)
        if cancel is not None and cancel():
            raise Cancelled()
        if progress is not None:
            progress((i + 1) / n, f"unmixed tile {i + 1} of {n}")
    info = facts.finish()
    if scene is None:
        return TiledResult(None, None, None, info)
    return TiledResult(scene.A, scene.std, scene.valid, info)


def _tile_jobs(tiles: list, read: ReadFn, method_id: str, E: np.ndarray, params: dict, ctx, progress, cancel,
               executor):
    """``(fn, args)`` per tile, in order, for :func:`run_in_order`. With an executor and a
    reader that hands out windows (the raster pipeline's), each worker reads its own tile;
    otherwise the tile is read here and its pixels shipped (or solved here)."""
    n = len(tiles)
    remote_read = executor is not None and hasattr(read, "window")
    for i, t in enumerate(tiles):
        if remote_read:  # a Tile is the Window it reads
            yield (read_and_solve_tile, (method_id, read.window(t), t.height, t.width, E, params,
                                         ctx.at(t.row0, t.col0)))
            continue
        Y, v = read(t)
        v = np.asarray(v, bool)
        sub = None
        if progress is not None and executor is None:  # a remote tile reports when done
            def sub(f, m, i=i):
                progress((i + min(max(f, 0.0), 1.0)) / n, f"tile {i + 1}/{n}: {m}")
        yield (_solve_read_tile, (method_id, Y, v, E, params, ctx.at(t.row0, t.col0), sub,
                                  cancel if executor is None else None))
        del Y, v


class _SceneMaps:
    """The whole scene's maps, filled row block by row block (a :data:`RowSink`): ``A``
    (P, H, W) float32 NaN where not valid, ``std`` (k, H, W) or None, ``valid`` (H, W)."""

    def __init__(self, P: int, H: int, W: int):
        self.A = np.full((P, H, W), np.nan, np.float32)
        self.std: Optional[np.ndarray] = None
        self.valid = np.zeros((H, W), bool)

    def take(self, r0: int, A: np.ndarray, std: Optional[np.ndarray], v: np.ndarray) -> None:
        rows = slice(r0, r0 + A.shape[1])
        self.A[:, rows] = A
        self.valid[rows] = v
        if std is not None:
            if self.std is None:
                self.std = np.zeros((std.shape[0], *self.valid.shape), np.float32)
            self.std[:, rows] = std


class _RowAssembler:
    """Blends tiles as they come and hands each finished band of rows to a :data:`RowSink`.

    The abundances carry the tiles' valid masks as a last layer (blended > 0 = valid in a
    tile covering the pixel: the blend weights are positive everywhere on a tile). A method's
    extra maps (std, scaling: ``aux_layers``) get their own blender from the first tile that
    has them; tiles of the held rows before it count as zeros there."""

    def __init__(self, P: int, H: int, W: int, sink: RowSink):
        self.P, self.H, self.W, self.sink = P, H, W, sink
        self.blend = TileBlender(P + 1, H, W)
        self.aux: Optional[TileBlender] = None
        self.held: list = []  # tiles reaching the rows held

    def add(self, t: Tile, A, std, v) -> None:
        """One tile's result: ``A`` (P, h, w), ``std`` (k, h, w) or None, ``v`` (h, w) bool."""
        self.blend.add(t, np.concatenate([np.nan_to_num(np.asarray(A, np.float32)),
                                          np.asarray(v, np.float32)[None]]))
        if std is not None and self.aux is None:
            self.aux = TileBlender(std.shape[0], self.H, self.W)
            self.aux.row0 = self.blend.row0
            for t0 in self.held:
                self.aux.add(t0, np.zeros((std.shape[0], t0.height, t0.width), np.float32))
        self.held.append(t)
        if self.aux is not None:
            self.aux.add(t, np.nan_to_num(np.asarray(std, np.float32)) if std is not None
                         else np.zeros((self.aux.P, t.height, t.width), np.float32))

    def flush(self, upto: int) -> None:
        """Hand the rows before ``upto`` (no later tile reaches them) to the sink."""
        r0, out = self.blend.flush(upto)
        A, v = out[:self.P], out[self.P] > 0
        S = None if self.aux is None else self.aux.flush(upto)[1]
        A[:, ~v] = np.nan
        if S is not None:
            S[:, ~v] = np.nan
        self.sink(r0, A, S, v)
        self.held = [t for t in self.held if t.row1 > self.blend.row0]


class _TileFacts:
    """The run's ``info`` from the tiles' own: per-tile lists of plain values
    (``<key>_per_tile``), λ as the median over tiles, and with a single tile its weight
    choice and band weights as they are."""

    def __init__(self, info: dict, n_tiles: int):
        self.info, self.n, self.lams = info, n_tiles, []

    def add(self, tinfo: dict) -> None:
        lam = tinfo.get("lam")
        if isinstance(lam, (int, float)):
            self.lams.append(float(lam))
        for k, val in tinfo.items():
            if self.n == 1 and k in ("lambda_selection", "band_weights"):
                self.info[k] = val
            elif k != "lam" and (val is None or isinstance(val, (int, float, str, bool))):
                self.info.setdefault(f"{k}_per_tile", []).append(val)

    def finish(self) -> dict:
        if self.lams:
            self.info["lam"] = float(np.median(self.lams))
            self.info["lam_per_tile"] = self.lams
        return self.info


# ----------------------------------------------------------------------------- executors
#: Tiles (or row blocks) submitted to an executor and not yet blended, at most: bounds the
#: memory of the tile data in flight.
MAX_IN_FLIGHT = 8


def _empty_tile(shape: tuple) -> tuple:
    return np.zeros(shape, np.float32), None, {}


def _solve_read_tile(method_id: str, Y, valid, E, params: dict, ctx, progress=None, cancel=None) -> tuple:
    """A tile whose data was read: (A, std, info, valid); no valid pixel gives zeros."""
    v = np.asarray(valid, bool)
    if not v.any():
        return (*_empty_tile((E.shape[1], *v.shape)), v)
    Y = np.asarray(Y)
    # invalid pixels zeroed in the data's own dtype (the method makes its float64 copy once)
    Yz = Y if v.all() else np.where(v[None], Y, np.zeros((), Y.dtype))
    del Y
    return (*solve_one_tile(method_id, Yz, E, v, params, ctx, progress, cancel), v)


def read_and_solve_tile(method_id: str, reader, height: int, width: int, E, params: dict, ctx) -> tuple:
    """Read a tile through ``reader`` where this runs (an executor's worker: the pixels never
    travel) and solve it: (A, std, info, valid)."""
    Y, v = reader(Window.whole(height, width))
    return _solve_read_tile(method_id, Y, v, E, params, ctx)


def solve_one_tile(method_id: str, Y, E, valid, params: dict, ctx, progress=None, cancel=None) -> tuple:
    """One tile of a spatial method, by registry id (importable and picklable, so an
    executor's worker process can run it)."""
    from ..methods.registry import get_method

    A, std, info = get_method(method_id).load()(Y, E, valid, params, ctx, progress, cancel)
    return A, std, dict(info or {})


def run_in_order(jobs, executor=None, cancel=None):
    """Results of ``jobs`` (an iterator of ``(fn, args)``) in order: run here one by one,
    or submitted to ``executor`` with at most :data:`MAX_IN_FLIGHT` outstanding. On
    cancel (or any error) the outstanding futures are cancelled."""
    if executor is None:
        for fn, args in jobs:
            result = fn(*args)
            del args  # a job's inputs (a block of pixels) go before the next job is made
            yield result
        return

    pending: deque = deque()
    try:
        for fn, args in jobs:
            if cancel is not None and cancel():
                raise Cancelled()
            pending.append(executor.submit(fn, *args))
            if len(pending) >= MAX_IN_FLIGHT:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
    finally:
        for f in pending:
            f.cancel()


#: Exceptions by which executors report a dead worker (by name: neither is imported here).
_WORKER_LOST = {"BrokenProcessPool": "a worker process of the local pool ended abruptly",
                "KilledWorker": "Dask workers died each time they ran the same part (Dask retried it)"}


def _result(future):
    """``future.result()``; a lost worker becomes one clear :class:`WorkerLostError`."""
    try:
        return future.result()
    except Exception as exc:
        why = _WORKER_LOST.get(type(exc).__name__)
        if why is None:
            raise
        from ..errors import WorkerLostError

        raise WorkerLostError(f"The run stopped: {why}; nothing was written",
                              "Check the workers' memory (a killed process is often out of memory) and "
                              "logs, then run again, with fewer workers or a smaller tile size") from None
