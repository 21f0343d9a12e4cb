"""Stable array-level entry point: unmix a numpy cube with any registered method.

This is the function scripts and notebooks call; the raster pipeline, the GUI and the
Processing algorithms all end up in the same solvers.

Example::

    import numpy as np
    from urdm_plugin.core.engine.arrays import unmix_array

    Y = np.random.rand(50, 32, 32)          # (bands, H, W) reflectance
    E = np.random.rand(50, 3)               # (bands, P) endmember spectra, same bands
    A = unmix_array(Y, E, method="fcls")    # (3, 32, 32) float32, sums to one per pixel
    A_tv = unmix_array(Y, E, method="tv", lam="auto")

Nothing here imports torch; the ``urdm`` method imports it when it runs.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from ..errors import Cancelled, OptionError
from ..limits import MAX_MAGNITUDE

ProgressFn = Optional[Callable[[float, str], None]]
CancelFn = Optional[Callable[[], bool]]

#: Pixels solved per batch by the per-pixel methods; progress and cancel run between batches.
PIXEL_BATCH = 65536


def _check_cancel(cancel: CancelFn) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def resolve_method(method: str):
    """The registry entry for ``method``, raising if unknown or unavailable here.

    Raises:
        OptionError: unknown method id (the message lists the known ids).
        MethodUnavailableError: known but not runnable in this Python (e.g. no torch).
    """
    from ..methods.registry import get_method

    return get_method(method).require_available()


def _check_arrays(Y, E) -> tuple[np.ndarray, np.ndarray]:
    """Y as given (integers as float32), E as float64; OptionError for bad shapes or values."""
    Y = np.asarray(Y)
    E = np.asarray(E)
    if not (np.issubdtype(Y.dtype, np.number) and np.issubdtype(E.dtype, np.number)):
        raise OptionError("Y and E must be numeric arrays", "Pass float arrays of reflectance")
    if Y.ndim not in (2, 3):
        raise OptionError(
            f"Y has shape {Y.shape}; expected (bands, H, W) or (bands, pixels)",
            "Put the band axis first (e.g. np.moveaxis(cube, -1, 0))",
        )
    if E.ndim != 2:
        raise OptionError(
            f"E has shape {E.shape}; expected (bands, endmembers)",
            "Pass one endmember spectrum per column",
        )
    if E.shape[0] != Y.shape[0]:
        raise OptionError(
            f"Y has {Y.shape[0]} bands but E has {E.shape[0]}",
            "Resample the endmembers to the image bands first (core.bands.match_library)",
        )
    B, P = E.shape
    if P < 1:
        raise OptionError("E has no endmembers", "Pass at least one endmember spectrum")
    if B < P + 1:
        raise OptionError(
            f"{P} endmembers need at least {P + 1} bands; the data has {B}",
            "Use fewer endmembers or more bands",
        )
    if not np.all(np.isfinite(E)):
        raise OptionError("E contains NaN or infinite values", "Remove or fix those spectra")
    if not np.issubdtype(Y.dtype, np.floating):
        Y = Y.astype(np.float32)
    # Y keeps its float type: the solvers convert float32 in cache-sized blocks (no copy)
    return Y, E.astype(np.float64, copy=False)


def unmix_array(Y, E, method: str = "fcls", **options: Any) -> np.ndarray:
    """Estimate abundances of the endmembers ``E`` in the data ``Y``.

    Args:
        Y: reflectance, float, shape (bands, H, W) or (bands, pixels). Non-finite pixels
            (any NaN/inf band) are treated as invalid and come back as NaN.
        E: endmember spectra on the same bands, shape (bands, P).
        method: a registry id (``fcls``, ``scls``, ``nnls``, ``ucls``, ``tv``, ``urdm``;
            see :mod:`urdm_plugin.core.methods.registry`). Spatial methods (``tv``, ``urdm``)
            need (bands, H, W) input.
        **options: ``progress(fraction, message)``, ``cancel() -> bool``, ``seed`` (int),
            ``executor`` (spatial methods: a ``concurrent.futures`` executor or a
            ``dask.distributed.Client`` that solves the tiles; same result as without),
            ``device`` (``auto``/``cpu``/``cuda``, urdm only), ``valid`` (bool mask (H, W)
            or (pixels,), False = skip) and the method's own parameters as listed in the
            registry (e.g. ``lam`` for tv and urdm, ``quality``/``samples`` for urdm).
            Unknown options raise :class:`OptionError`.

    Returns:
        float32 abundances, shape (P, H, W) or (P, pixels) following ``Y``; invalid
        pixels are NaN. Units: fractions (FCLS/TV/URDM rows sum to one per pixel).

    Raises:
        OptionError: bad shapes, unknown options, spatial method on (bands, pixels).
        MethodUnavailableError: the method cannot run here (e.g. urdm without torch).
        Cancelled: ``cancel()`` returned True.
    """
    A, _std, _info = unmix_array_full(Y, E, method, **options)
    return A


def unmix_array_full(Y, E, method: str = "fcls", **options: Any):
    """Like :func:`unmix_array` but also returns ``(A, std | None, info dict)``.

    ``std`` (same shape as ``A``) is the posterior standard deviation of urdm when
    ``samples > 1``; ``info`` holds solver facts such as the chosen ``lam`` and, for elmm
    and urdm with its variability model, ``info["scaling"]``: the scalings ψ (P, H, W).
    """
    from ..methods.context import SceneContext
    from ..methods.registry import (
        DEVICE,
        SEED,
        TILE_SIZE,
        aux_layers,
        get_method,
        take_engine_options,
    )
    from .tiling import solve_tiled

    spec = get_method(method)
    if spec.spatial and np.ndim(Y) != 3:
        raise OptionError(
            f"Method '{spec.id}' is spatial and needs Y as (bands, H, W); got shape {np.shape(Y)}",
            "Reshape the pixels into their image grid, or use a per-pixel method such as fcls",
        )
    spec.require_available()
    Y, E = _check_arrays(Y, E)
    progress: ProgressFn = options.pop("progress", None)
    cancel: CancelFn = options.pop("cancel", None)
    valid = options.pop("valid", None)
    executor = options.pop("executor", None)
    engine = take_engine_options(options, ("seed", "device", "tile_size", "tile_overlap"))  # the builder's check
    params = spec.validate_params(options)  # unknown names raise, listing the method's options

    spatial_shape = Y.shape[1:]
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != spatial_shape:
            raise OptionError(
                f"valid mask has shape {valid.shape}; the data has {spatial_shape}",
                "Pass a boolean mask with the image's spatial shape",
            )

    if spec.spatial:
        def read(window):
            rows, cols = window.slices()
            Yt = Y[:, rows, cols]
            v = np.all(np.abs(Yt) <= MAX_MAGNITUDE, axis=0)  # also False where not finite
            return Yt, (v if valid is None else v & valid[rows, cols])

        ctx = SceneContext(seed=engine.get("seed", SEED.default), device=engine.get("device", DEVICE.default))
        res = solve_tiled(spec, read, spatial_shape, E, params, ctx, engine.get("tile_size", TILE_SIZE.default),
                          engine.get("tile_overlap"), progress, cancel, executor)
        blocks = {k: None for k in aux_layers(spec.id, params)}
        if res.std is not None:
            P = res.A.shape[0]
            for i, k in enumerate(blocks):
                blocks[k] = res.std[i * P:(i + 1) * P]
                blocks[k][np.isnan(res.A)] = np.nan
        info = dict(res.info)
        if blocks.get("scaling") is not None:
            info["scaling"] = blocks["scaling"]
        return res.A, blocks.get("std"), info

    return _solve_pixels(spec, Y, E, valid, params, progress, cancel), None, {}


def _solve_pixels(spec, Y, E, valid, params: dict, progress: ProgressFn, cancel: CancelFn) -> np.ndarray:
    """A per-pixel method over contiguous batches of pixels. The solvers return NaN for
    non-finite pixels themselves, so the data are neither checked nor gathered beforehand;
    only pixels a ``valid`` mask excludes are left out (and come back NaN)."""
    solver = spec.load()
    B = Y.shape[0]
    Yf = Y.reshape(B, -1)
    N = Yf.shape[1]
    vf = None if valid is None else valid.reshape(-1)
    out = np.full((E.shape[1], N), np.nan, dtype=np.float32)
    _check_cancel(cancel)
    for s in range(0, N, PIXEL_BATCH):
        e = min(s + PIXEL_BATCH, N)
        if vf is None or vf[s:e].all():
            out[:, s:e] = solver(Yf[:, s:e], E, **params)
        elif vf[s:e].any():
            sel = np.flatnonzero(vf[s:e]) + s
            out[:, sel] = solver(Yf[:, sel], E, **params)
        if progress is not None:
            progress(e / N, f"{spec.id}: {e}/{N} pixels")
        _check_cancel(cancel)
    if N == 0 and progress is not None:
        progress(1.0, f"{spec.id}: no pixels")
    return out.reshape((E.shape[1],) + Y.shape[1:])


def unmix_block(method_id: str, Y, E, valid, params: dict):
    """A per-pixel method on one block ``Y`` (B, rows, W) with its valid mask: A (P, rows, W)
    float32, NaN where not valid. Importable and picklable, for an executor's workers."""
    from ..methods.registry import get_method

    return _solve_pixels(get_method(method_id), Y, np.asarray(E, np.float64), valid, params, None, None)
