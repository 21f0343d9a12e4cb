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

from ..errors import Cancelled, MethodUnavailableError, OptionError

ProgressFn = Optional[Callable[[float, str], None]]
CancelFn = Optional[Callable[[], bool]]

#: Options every method accepts (besides its own parameters from the registry).
COMMON_OPTIONS = ("device", "seed", "progress", "cancel", "valid")

#: Pixels solved per batch by the per-pixel methods; progress and cancel run between batches.
PIXEL_BATCH = 16384


def _check_cancel(cancel: CancelFn) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def _param_names(spec) -> list[str]:
    return [p.name for p in getattr(spec, "params", [])]


#: Modules that implement methods beyond core.methods.active_set (checked without importing them).
_IMPLEMENTED_BY = {"tv": "urdm_plugin.core.methods.tv", "urdm": "urdm_plugin.core.diffusion.sampler"}


def _module_present(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def method_ready(method_id: str) -> tuple:
    """``(True, "")`` if ``method_id`` can run here, else ``(False, reason)``; never raises
    for a known id (the registry's check plus: is the implementing module present)."""
    try:
        resolve_method(method_id)
    except MethodUnavailableError as exc:
        return False, exc.problem
    return True, ""


def resolve_method(method: str):
    """The registry entry for ``method``, raising if unknown or unavailable here.

    Raises:
        OptionError: unknown method id (the message lists the known ids).
        MethodUnavailableError: known but not runnable in this Python (e.g. no torch).
    """
    from ..methods.registry import get_method, method_available

    spec = get_method(method)
    ok, reason = method_available(spec.id)
    if ok and spec.id in _IMPLEMENTED_BY and not _module_present(_IMPLEMENTED_BY[spec.id]):
        ok, reason = False, f"this build has no {_IMPLEMENTED_BY[spec.id]} module yet"
    if not ok:
        raise MethodUnavailableError(
            reason if reason.startswith("Method") else f"Method '{spec.id}' is not available here: {reason}",
            "Choose another method (see `python -m urdm_plugin methods`) or install what it needs",
        )
    return spec


def _as_float_arrays(Y, E) -> tuple[np.ndarray, np.ndarray]:
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
    return Y.astype(np.float64, copy=False), E.astype(np.float64, copy=False)


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
    ``samples > 1``; ``info`` holds solver facts such as the chosen ``lam``.
    """
    from ..methods.registry import get_method

    spec = get_method(method)
    if spec.spatial and np.ndim(Y) != 3:
        raise OptionError(
            f"Method '{spec.id}' is spatial and needs Y as (bands, H, W); got shape {np.shape(Y)}",
            "Reshape the pixels into their image grid, or use a per-pixel method such as fcls",
        )
    spec = resolve_method(spec.id)
    Y, E = _as_float_arrays(Y, E)
    progress: ProgressFn = options.pop("progress", None)
    cancel: CancelFn = options.pop("cancel", None)
    valid = options.pop("valid", None)
    seed = int(options.pop("seed", 0) or 0)
    device = options.pop("device", "auto")
    # scene-level facts the pipeline passes to every tile (not user parameters)
    internal = {k: options.pop(k) for k in ("origin", "sigma_n", "sigma", "signal_rms", "band_weights")
                if k in options}
    params = validate_params(spec, options)
    tile_size = params.pop("tile_size", None)
    params.update(internal)

    spatial_shape = Y.shape[1:]
    finite = np.all(np.isfinite(Y), axis=0)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != spatial_shape:
            raise OptionError(
                f"valid mask has shape {valid.shape}; the data has {spatial_shape}",
                "Pass a boolean mask with the image's spatial shape",
            )
        finite &= valid
    P = E.shape[1]

    if spec.spatial:
        Yc = np.where(finite[None], Y, 0.0)
        H, W = spatial_shape
        if tile_size and (H > tile_size or W > tile_size):
            A, std, info = _solve_spatial_tiled(spec, Yc, E, finite, params, seed, device,
                                                int(tile_size), progress, cancel)
        else:
            A, std, info = solve_spatial_tile(spec, Yc, E, finite, params, seed, device,
                                              progress, cancel)
        A = np.asarray(A, dtype=np.float32)
        A[:, ~finite] = np.nan
        if std is not None:
            std = np.asarray(std, dtype=np.float32)
            std[:, ~finite] = np.nan
        return A, std, dict(info or {})

    solver = per_pixel_solver(spec.id)
    Yf = Y.reshape(Y.shape[0], -1)
    vf = finite.reshape(-1)
    out = np.full((P, Yf.shape[1]), np.nan, dtype=np.float32)
    idx = np.flatnonzero(vf)
    n = idx.size
    _check_cancel(cancel)
    for start in range(0, max(n, 1), PIXEL_BATCH):
        sel = idx[start:start + PIXEL_BATCH]
        if sel.size:
            out[:, sel] = solver(Yf[:, sel], E, **params)
        done = min(start + PIXEL_BATCH, n)
        if progress is not None:
            progress(done / n if n else 1.0, f"{spec.id}: {done}/{n} pixels")
        _check_cancel(cancel)
    return out.reshape((P,) + spatial_shape), None, {}


def validate_params(spec, options: dict) -> dict:
    """The method's parameters: registry defaults overlaid with ``options`` (validated).

    Unknown names raise :class:`OptionError` listing the allowed ones. ``"auto"`` is accepted
    for automatically chosen weights (stored as the registry's 0).
    """
    allowed = set(_param_names(spec))
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise OptionError(
            f"Unknown option(s) for method '{spec.id}': {', '.join(unknown)}",
            "Allowed: " + ", ".join(sorted(allowed | set(COMMON_OPTIONS))),
        )
    clean = {}
    for k, v in options.items():
        if isinstance(v, str) and v.strip().lower() == "auto" and spec.param(k).kind == "float":
            v = 0.0
        clean[k] = v
    return spec.validate_params(clean)


def solve_spatial_tile(spec, Y, E, valid, params: dict, seed: int, device: str,
                       progress: ProgressFn, cancel: CancelFn):
    """Run a spatial method on one tile: Y (B,h,w) float64 (invalid pixels zero), E (B,P),
    valid (h,w) bool. Returns (A (P,h,w), std (P,h,w) | None, info dict)."""
    from ..methods.registry import resolve_auto

    if spec.id == "tv":
        from ..methods.tv import tv_unmix

        kw = dict(params)
        lam = resolve_auto(kw.pop("lam_tv", 0.0))
        A, info = tv_unmix(Y, E, valid, lam=lam, progress=progress, cancel=cancel, **kw)
        return A, None, dict(info or {})
    if spec.id == "urdm":
        from ..diffusion.sampler import urdm_unmix

        kw = dict(params)
        lam = resolve_auto(kw.pop("lam", 0.0))
        A, std, info = urdm_unmix(Y, E, valid, lam=lam, seed=seed, device=device,
                                  progress=progress, cancel=cancel, **kw)
        return A, std, dict(info or {})
    raise MethodUnavailableError(  # pragma: no cover - a new spatial method must be wired here
        f"Spatial method '{spec.id}' has no array entry point yet",
        "Use fcls, scls, nnls, ucls, tv or urdm",
    )


def _solve_spatial_tiled(spec, Y, E, valid, params, seed, device, tile_size, progress, cancel):
    """A large in-memory array in overlapping tiles blended without seams (core.engine.tiling)."""
    from ..methods import weight_selection
    from .tiling import TileBlender, plan_tiles

    B, H, W = Y.shape
    P = E.shape[1]
    if spec.id in ("urdm", "tv") and not ({"sigma_n", "sigma"} & set(params)):
        from ..methods.noise import (
            estimate_noise_sigma,  # one noise level for all tiles: seamless blend
        )

        sigma = estimate_noise_sigma(Y, E, valid=valid)
        if spec.id == "urdm":
            params = dict(params, sigma_n=sigma, signal_rms=float(np.sqrt(np.mean(np.square(Y[:, valid])))))
        else:
            params = dict(params, sigma=sigma)
    overlap = max(4, tile_size // 8)
    tiles = plan_tiles(H, W, tile_size, overlap)
    report = None
    if len(tiles) > 1 and weight_selection.needs_choice(spec.id, params):
        # one weight for the whole image, chosen on its central window (seamless tiles)
        r0, c0, hh, ww = weight_selection.central_window(H, W)
        sigma = params.get("sigma_n", params.get("sigma"))
        chosen, report = weight_selection.choose_scene_weight(
            spec.id, Y[:, r0:r0 + hh, c0:c0 + ww], E, valid[r0:r0 + hh, c0:c0 + ww],
            {k: v for k, v in params.items() if k not in ("sigma_n", "sigma", "signal_rms")},
            sigma=sigma, seed=seed, device=device, cancel=cancel)
        params = dict(params, **{k: chosen[k] for k in (weight_selection.WEIGHT_PARAM[spec.id], "band_weights",
                                                          "sigma_n") if k in chosen})
    blend = TileBlender(P, H, W, overlap=overlap)
    sblend = None
    infos = []
    n = len(tiles)
    for i, t in enumerate(tiles):
        r0, c0, th, tw = int(t.row0), int(t.col0), int(t.height), int(t.width)
        sub = None
        if progress is not None:
            def sub(f, m, i=i):
                progress((i + min(max(f, 0.0), 1.0)) / n, f"tile {i + 1}/{n}: {m}")
        v = valid[r0:r0 + th, c0:c0 + tw]
        if v.any():
            tile_params = dict(params, origin=(r0, c0)) if spec.id == "urdm" else params
            A, std, info = solve_spatial_tile(spec, Y[:, r0:r0 + th, c0:c0 + tw], E, v, tile_params,
                                              seed, device, sub, cancel)
            infos.append(info)
        else:
            A, std = np.zeros((P, th, tw)), None
        blend.add(t, np.nan_to_num(np.asarray(A, np.float32)))
        if std is not None or sblend is not None:
            if sblend is None:
                sblend = TileBlender(P, H, W, overlap=overlap)
            sblend.add(t, np.nan_to_num(np.asarray(std if std is not None else np.zeros((P, th, tw)), np.float32)))
        _check_cancel(cancel)
    lams = [float(i["lam"]) for i in infos if isinstance(i.get("lam"), (int, float))]
    info = {"tiles": n}
    if report is not None:
        info["lambda_selection"] = report
    if lams:
        info["lam"] = float(np.median(lams))
        info["lam_per_tile"] = lams
    return blend.result(), (sblend.result() if sblend is not None else None), info


def per_pixel_solver(method_id: str) -> Callable[..., np.ndarray]:
    """The numpy solver ``f(Y (B,N), E (B,P)) -> A (P,N)`` of a per-pixel method."""
    from ..methods import active_set, linear

    fn = getattr(active_set, method_id, None) or getattr(linear, method_id, None)
    if fn is None:
        raise MethodUnavailableError(
            f"Per-pixel method '{method_id}' has no solver in core.methods.active_set",
            "Use fcls, scls, nnls or ucls",
        )
    return fn
