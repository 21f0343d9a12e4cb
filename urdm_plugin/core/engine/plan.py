"""What a run will do, decided before any output exists: :func:`plan_run` -> :class:`RunPlan`.

The plan holds everything the run's rules decide — the method and its validated
parameters, the processing extent and mask, the image bands used, the endmembers (given,
the whole library, or chosen automatically) resampled onto those bands, the warnings —
and the problems that stop it. :func:`core.engine.pipeline.unmix_raster` executes a plan;
the dialog shows one (``read_pixels=False``: metadata only, instantly) so the UI keeps no
copy of these rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputImageError, LibraryError, OptionError, UrdmError
from ..methods.selection import MAX_AUTO

#: Libraries with more spectra than this are reduced by automatic selection.
AUTO_SELECT_ABOVE = MAX_AUTO
#: Rows sampled across the extent for the scale check and automatic selection.
SAMPLE_ROWS = 32
#: Storage blocks (tiles, tile rows, strips) the sample is read from at most.
SAMPLE_BLOCKS = 4
#: Share of the memory budget the sample's decoded tiles may stay held for the row-block
#: pass (which pastes them instead of decoding them a second time).
HELD_SHARE = 0.25


@dataclass
class UnmixOptions:
    """What to run and how.

    Attributes:
        method: registry id (``fcls``, ``scls``, ``nnls``, ``ucls``, ``tv``, ``urdm``).
        endmembers: library spectrum names to use, or None (the whole library). When the
            spectra (all, or these) are more than the bands support or more than
            :data:`AUTO_SELECT_ABOVE`, automatic selection picks among them.
        max_endmembers: upper bound for automatic selection (None: bands − 1, at most 20).
        params: the method's parameters from the registry, e.g. ``{"lam": "auto",
            "quality": "fast", "samples": 8}`` (urdm with ``samples`` > 1 also writes
            posterior std maps).
        seed: random seed (urdm sampling, automatic selection, weight choice).
        device: ``auto``, ``cpu`` or ``cuda`` (urdm only).
        memory_mb: budget for one block of image data (MiB).
        tile_size: largest tile edge in pixels for spatial methods (smaller when
            ``memory_mb`` asks for it; see core.engine.tiling.tile_edge_for_memory).
        tile_overlap: overlap between neighbouring tiles in pixels (None: tile_size/8,
            between 4 and 32).
        overwrite: replace an existing output folder.
        mask_water_bands: drop the atmospheric water-absorption bands.
        window: ``(col0, row0, width, height)`` pixel window of the image, or None (all).
        mask_path: optional mask: a GDAL raster on the image grid (non-zero = process) or
            an OGR vector file whose polygons are rasterised onto the image grid.
        quality_mask: leave the pixels a sensor product's quality layers flag (EnMAP's cloud,
            cloud shadow, haze, snow, cirrus; EMIT's cloud, cirrus, spacecraft, dilated cloud;
            :mod:`core.io.sensors`) as nodata, combined with ``mask_path``; no effect on
            ordinary rasters.
    """

    method: str = "fcls"
    endmembers: Optional[list] = None
    max_endmembers: Optional[int] = None
    params: dict = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    memory_mb: int = 512
    tile_size: int = 512
    tile_overlap: Optional[int] = None
    overwrite: bool = False
    mask_water_bands: bool = True
    window: Optional[tuple] = None
    mask_path: Optional[str] = None
    quality_mask: bool = True


@dataclass
class RunPlan:
    """A run, decided. ``problems`` is empty when it can run (:func:`plan_run` with
    ``strict=True`` raises the first problem instead of recording it).

    ``spec``/``params``: the registry method and its validated parameters; ``info``: the
    image (:class:`core.io.image.ImageInfo`); ``extent``: (col0, row0, width, height);
    ``mask``: (height, width) bool or None; ``matched``: :class:`core.bands.MatchedBands`
    of the library (before selection); ``bands``: 0-based image bands used; ``E`` (bands
    used × P) and ``names`` (P) the endmembers run; ``selection``: how they were chosen
    (``mode`` given / all / automatic / automatic-pending); ``sample`` (bands used × N)
    pixels read for the checks, or None; ``fit``: how well ``E`` explains the sample
    (:func:`core.engine.fit_check.assess_fit`), None without a sample.
    """

    options: UnmixOptions
    spec: Any = None
    params: dict = field(default_factory=dict)
    info: Any = None
    library: Any = None
    library_label: str = ""
    extent: Optional[tuple] = None
    mask: Optional[np.ndarray] = None
    matched: Any = None
    bands: list = field(default_factory=list)
    E: Optional[np.ndarray] = None
    names: list = field(default_factory=list)
    selection: Optional[dict] = None
    sample: Optional[np.ndarray] = None
    fit: Optional[dict] = None
    warnings: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    #: the sample's decoded tiles kept for the row-block pass (core.io.parallel_read.DecodedBlocks)
    held: Any = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def auto_select_limit(self) -> Optional[int]:
        """How many endmembers automatic selection may keep (None before bands are known)."""
        if not self.bands:
            return None
        limit = min(AUTO_SELECT_ABOVE, len(self.bands) - 1)
        if self.options.max_endmembers is not None:
            limit = min(limit, int(self.options.max_endmembers))
        return limit


def check_extent(options: UnmixOptions, info) -> tuple:
    """Validate the engine options against the image; return the extent (col0, row0, w, h)."""
    from ..methods.registry import DEVICE, MEMORY_MB, SEED, TILE_SIZE

    for spec, value in ((MEMORY_MB, options.memory_mb), (TILE_SIZE, options.tile_size),
                        (SEED, options.seed), (DEVICE, options.device)):
        spec.validate(value)
    if options.tile_overlap is not None and not 0 <= int(options.tile_overlap) < int(options.tile_size) // 2:
        raise OptionError(f"tile_overlap must be in [0, tile_size/2) (got {options.tile_overlap})",
                          "Use e.g. 16 with tile_size 256")
    if options.max_endmembers is not None and int(options.max_endmembers) < 1:
        raise OptionError(f"max_endmembers must be at least 1 (got {options.max_endmembers})",
                          "Give a positive number of endmembers")
    if options.window is None:
        return 0, 0, info.width, info.height
    try:
        c0, r0, w, h = (int(v) for v in options.window)
    except (TypeError, ValueError):
        raise OptionError(f"window must be (col0, row0, width, height); got {options.window!r}",
                          "Give four integers in pixels") from None
    if w < 1 or h < 1 or c0 < 0 or r0 < 0 or c0 + w > info.width or r0 + h > info.height:
        raise OptionError(f"window {(c0, r0, w, h)} is not inside the {info.width}×{info.height} image",
                          "Give (col0, row0, width, height) within the image's pixel grid")
    return c0, r0, w, h


def read_sample(info, bands, extent, held=None) -> np.ndarray:
    """About :data:`SAMPLE_ROWS` × width valid pixels spread over the extent as (nb, N).

    Every pixel read costs decoding its whole storage block, so the sample is read where
    the file stores it cheaply. A tiled file (blocks narrower than the extent): at most
    :data:`SAMPLE_BLOCKS` whole tiles on a diagonal (top left to bottom right), decoded side
    by side on every core, their pixels thinned evenly to the sample's size; with ``held``
    (a :class:`core.io.parallel_read.DecodedBlocks`) the tiles it has room for are read whole
    and kept, and the row-block pass pastes them instead of decoding them again (of the
    others only the sample's rows are kept in memory). Other files: rows in
    runs inside at most :data:`SAMPLE_BLOCKS` blocks (strips) spread over the extent.
    Values are not limited in magnitude (the plan judges them, ``_in_range``)."""
    from ..io.image import file_layout, window_reader

    c0, r0, w, h = extent
    layout = file_layout(info)
    bw, bh = layout.block_w, layout.block_h
    if bw < w and bh < h:
        tiles = _sample_tiles(extent, bw, bh)
        quota = int(np.ceil(SAMPLE_ROWS * w / len(tiles)))
        room = 0 if held is None else held.capacity - held.nbytes
        kept, runs = [], []  # tiles read whole (held), and a run of rows of each other tile
        for c, r, tw, th in tiles:
            size = len(bands) * tw * th * 4 + tw * th
            if size <= room:
                kept.append((c, r, tw, th))
                room -= size
            else:  # the same decoding, a fraction of the memory: the quota's rows at the centre
                n = min(th, int(np.ceil(quota / tw)))
                runs.append((c, r + (th - n) // 2, tw, n))
        cols = []
        with window_reader(info) as reader:
            for win, (data, valid) in zip(kept + runs, reader.read_each(bands, kept + runs, max_magnitude=None)):
                n = win[2] * win[3]
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
        read = reader.read_each(bands, [(c0, r0 + r, w, n) for r, n in runs], max_magnitude=None)
    cols = [data.reshape(data.shape[0], -1)[:, valid.reshape(-1)] for data, valid in read]
    return np.concatenate(cols, axis=1) if cols else np.zeros((len(bands), 0), np.float32)


def _sample_tiles(extent, bw: int, bh: int) -> list:
    """At most :data:`SAMPLE_BLOCKS` tiles of a (bw × bh)-tiled file on the extent's diagonal,
    clipped to the extent: [(col0, row0, w, h)] in image pixels, top to bottom."""
    c0, r0, w, h = extent
    k = min(SAMPLE_BLOCKS, (r0 + h - 1) // bh - r0 // bh + 1)
    by = np.linspace(r0 // bh, (r0 + h - 1) // bh, k).round().astype(int)
    bx = np.linspace(c0 // bw, (c0 + w - 1) // bw, k).round().astype(int)
    out = []
    for x, y in dict.fromkeys(zip(bx.tolist(), by.tolist())):
        left, top = max(x * bw, c0), max(y * bh, r0)
        out.append((left, top, min((x + 1) * bw, c0 + w) - left, min((y + 1) * bh, r0 + h) - top))
    return out


def plan_run(image: Any, library: Any, options: Optional[UnmixOptions] = None, *, strict: bool = True,
             read_pixels: bool = True, progress=None) -> RunPlan:
    """Decide a run of ``options`` on ``image`` with ``library``.

    Args:
        image: an image path (any GDAL raster with wavelengths) or an already opened
            :class:`core.io.image.ImageInfo`.
        library: a library path (CSV or ENVI ``.sli``) or a :class:`core.io.library.SpectralLibrary`.
        strict: raise the first problem (:class:`UrdmError`); False records it in
            ``plan.problems`` and returns what was decided up to there.
        read_pixels: read a sample of pixels for automatic endmember selection and the
            reflectance-scale check. False decides from metadata alone (the selection is
            then ``automatic-pending`` when it would run).
        progress: ``progress(fraction, message)`` for the stages (optional).
    """
    plan = RunPlan(options=options or UnmixOptions())
    try:
        _decide(plan, image, library, read_pixels, progress or (lambda f, m: None))
        _warn_without_georeferencing(plan, progress or (lambda f, m: None))  # once the run can go ahead
    except UrdmError as exc:
        if strict:
            raise
        plan.problems.append(str(exc))
    return plan


def _warn_without_georeferencing(plan: RunPlan, note) -> None:
    info = plan.info
    if getattr(info, "georeferenced", True) or getattr(info, "gcps", ()) or getattr(info, "rpc", {}):
        return
    msg = (f"'{Path(str(info.source_path or info.path)).name}' has no georeferencing (no geotransform, GCPs or "
           "RPCs): the outputs have none either and will not line up with other layers on a map")
    plan.warnings.append(msg)
    note(1.0, "warning: " + msg)


def _decide(plan: RunPlan, image, library, read_pixels: bool, note) -> None:
    from .. import bands as band_rules
    from ..io.image import ImageInfo, open_image
    from ..io.library import SpectralLibrary, read_library
    from ..io.mask import load_mask
    from .arrays import resolve_method

    opts = plan.options
    plan.spec = resolve_method(opts.method)
    plan.params = plan.spec.validate_params(opts.params)
    info = image if isinstance(image, ImageInfo) else open_image(str(image))
    plan.info = info
    plan.extent = check_extent(opts, info)
    note(0.0, f"Opened {Path(str(info.path)).name}: {info.width}×{info.height} pixels, {info.band_count} bands")

    if isinstance(library, SpectralLibrary):
        lib, plan.library_label = library, library.path or "<in-memory library>"
    else:
        lib, plan.library_label = read_library(str(library)), str(library)
    if len(lib) < 1:
        raise LibraryError(f"The library {plan.library_label} holds no spectra",
                           "Give a library with at least one spectrum")
    given = bool(opts.endmembers)
    if given:  # a subset (the dialog's ticked rows): used as it is, or selected from when too many
        lib = lib.select(list(opts.endmembers))  # LibraryError names unknown ones
    plan.library = lib
    plan.matched = matched = band_rules.match_library(info, lib, mask_water_bands=opts.mask_water_bands)
    plan.bands = [int(b) for b in matched.band_indices]
    plan.E = np.asarray(matched.E, dtype=np.float64)
    plan.names = list(matched.names)
    plan.warnings.extend(list(matched.report.warnings or []))
    note(0.5, "Bands: " + matched.report.summary())

    if opts.mask_path:
        plan.mask = load_mask(opts.mask_path, info, plan.extent)
        if not plan.mask.any():
            raise InputImageError(f"The mask {opts.mask_path} covers no pixel of the image"
                                  + (" window" if opts.window else ""), "Check that the mask overlaps the image")
    quality = getattr(info, "quality_mask_path", "")
    if quality and opts.quality_mask:  # a sensor product's cloud (and similar) flags
        flags_ok = load_mask(quality, info, plan.extent)
        plan.mask = flags_ok if plan.mask is None else plan.mask & flags_ok
        note(0.5, f"Quality flags of the {info.product} product: {int((~flags_ok).sum())} flagged pixels "
                  "left as nodata")
        if not plan.mask.any():
            raise InputImageError(f"Every pixel of {Path(str(info.source_path or info.path)).name} "
                                  + ("inside the mask " if opts.mask_path else "")
                                  + "is flagged by the product's quality layers (clouds, haze, …)",
                                  "Choose a clearer scene, or turn the quality mask off (quality_mask=False)")

    limit = plan.auto_select_limit
    if limit < 1:  # one band: not even two endmembers can be told apart, selection or not
        band_rules.require_bands(len(plan.bands), plan.E.shape[1])
    if plan.E.shape[1] <= limit:
        plan.selection = {"mode": "given" if given else "all", "names": plan.names}
    if read_pixels:
        from ..io.parallel_read import DecodedBlocks

        def held_store():  # the sample's tiles kept for the row-block pass, for these bands
            return DecodedBlocks(tuple(plan.bands), int(HELD_SHARE * float(opts.memory_mb) * 2 ** 20))

        plan.held = held_store()
        sample = read_sample(info, plan.bands, plan.extent, plan.held)
        if not sample.shape[1] and _drop_dead_bands(plan, note):  # a dead band leaves no pixel valid
            plan.held = held_store()  # its tiles were decoded with the dead bands
            sample = read_sample(info, plan.bands, plan.extent, plan.held)
        plan.sample = _in_range(sample, info, plan.warnings, note)
        band_rules.require_signal(plan.sample, f"The image '{Path(str(info.source_path or info.path)).name}'")
    if plan.selection is None:
        if plan.sample is None:
            plan.selection = {"mode": "automatic-pending", "from": len(plan.names), "max": limit,
                              "subset": given}
            return
        _select_automatically(plan, limit, note, given)
    band_rules.require_bands(len(plan.bands), plan.E.shape[1])
    if plan.sample is not None and plan.sample.shape[1]:
        for w in band_rules.check_reflectance_scale(plan.sample, plan.E):
            plan.warnings.append(w)
            note(0.9, "warning: " + w)
        from .fit_check import assess_fit, loud_band_message, poor_fit_message, stand_in_flags

        fit = assess_fit(plan.sample, plan.E, seed=opts.seed)
        plan.fit = fit if fit["pixels"] else None  # never "residual 0.0" on no pixel (all spectra 0)
        if plan.fit is None:
            return
        automatic = plan.selection.get("mode") == "automatic"
        flags = stand_in_flags(plan.fit, plan.names)
        if automatic and flags:  # beside the selection's own (noise-level, look-alike) flags
            plan.selection["flags"] = list(plan.selection.get("flags") or []) + flags
        loud = loud_band_message(plan.fit, plan.bands, info.wavelengths_nm)
        for msg in ([poor_fit_message(plan.fit, automatic)] if plan.fit["poor"] else []) + flags + ([loud] if loud else []):
            plan.warnings.append(msg)
            note(0.9, "warning: " + msg)


def _drop_dead_bands(plan: RunPlan, note) -> bool:
    """Leave out the bands that hold no usable value anywhere in the extent (delivered
    products fill their bad bands with the no-data value), naming them in the warnings and
    the match report. True when some were dropped; when every band is dead, none is (the
    run then stops with the all-nodata message)."""
    from ..bands import REASON_DEAD
    from ..io.image import dead_bands

    dead = dead_bands(plan.info, plan.bands, plan.extent)
    if not dead:
        return False
    plan.matched.drop_bands(dead, REASON_DEAD)
    plan.bands = [int(b) for b in plan.matched.band_indices]
    plan.E = np.asarray(plan.matched.E, dtype=np.float64)
    wl = plan.info.wavelengths_nm
    named = ", ".join(f"band {b + 1}" + (f" ({wl[b]:.1f} nm)" if wl is not None else "") for b in dead)
    msg = (f"Left out {len(dead)} band(s) with no usable value anywhere (all nodata, NaN or ±inf): {named}; "
           f"{len(plan.bands)} bands remain")
    plan.warnings.append(msg)
    note(0.55, "warning: " + msg)
    return True


def _in_range(sample: np.ndarray, info, warnings: list, note) -> np.ndarray:
    """The sample's pixels within ±MAX_MAGNITUDE; refuses a scene most of whose pixels are
    beyond it (not reflectance: a missing scale factor), warns about a few (corruption)."""
    from ..limits import MAX_MAGNITUDE

    if not sample.shape[1]:
        return sample
    big = (np.abs(sample) > MAX_MAGNITUDE).any(axis=0)
    if big.mean() > 0.5:
        raise InputImageError(
            f"The values of '{Path(str(info.path)).name}' reach {float(np.abs(sample).max()):.3g}; beyond "
            f"{MAX_MAGNITUDE:.0e} they are not reflectance (0–1) nor scaled reflectance",
            "Give the image its scale factor (band scale metadata, or ENVI 'reflectance scale factor') "
            "or convert it to reflectance first")
    if big.any():
        msg = (f"{int(big.sum())} of {big.size} sampled pixels have values beyond {MAX_MAGNITUDE:.0e} "
               "(corrupt data?); such pixels are treated as nodata")
        warnings.append(msg)
        note(0.6, "warning: " + msg)
    return sample[:, ~big]


#: Extra random pixel subsets the stability check selects from (when the sample holds more
#: pixels than one selection regresses, core.methods.selection.N_SAMPLE).
STABILITY_REPEATS = 2


def _unstable(Y, plan: RunPlan, limit: int, idx: list, noise_variance, note) -> list:
    """Flags for selected spectra that other random pixel subsets of the sample do not keep:
    a spectrum the scene really holds is chosen whichever pixels are looked at. The sample's
    noise level is the first selection's (the same pixels: not estimated again)."""
    from ..methods.selection import select_endmembers

    kept = {i: 1 for i in idx}
    for k in range(1, STABILITY_REPEATS + 1):
        other = select_endmembers(Y, plan.E, names=plan.names, max_endmembers=limit, seed=plan.options.seed + k,
                                  noise_variance=noise_variance,
                                  progress=lambda f, m, k=k: note(0.65 + 0.05 * (k - 1 + f) / STABILITY_REPEATS,
                                                                  f"checking the selection on another pixel sample "
                                                                  f"({k} of {STABILITY_REPEATS})"))
        for i in set(int(j) for j in np.asarray(other).ravel()) & set(kept):
            kept[i] += 1
    n = STABILITY_REPEATS + 1
    return [f"{plan.names[i]}: kept in {kept[i]} of {n} random pixel samples (unstable)"
            for i in idx if kept[i] < n]


def _select_automatically(plan: RunPlan, limit: int, note, subset: bool = False) -> None:
    from ..io.manifest import jsonable
    from ..methods.selection import N_SAMPLE, select_endmembers

    if plan.sample.shape[1] < max(limit, 2):
        raise InputImageError("Too few valid pixels to select endmembers automatically",
                              "Name the endmembers to use, or check the image's nodata")
    # the stage's progress also polls the run's cancel (the pipeline's _Progress does)
    Y = plan.sample.astype(np.float64)
    res = select_endmembers(Y, plan.E, names=plan.names, max_endmembers=limit, seed=plan.options.seed,
                            progress=lambda f, m: note(0.6 + 0.05 * f, m))
    idx = [int(i) for i in np.asarray(res).ravel()]
    report = {k: jsonable(v) for k, v in res.as_dict().items()}
    sigma2 = None if res.noise_sigma is None else res.noise_sigma ** 2
    unstable = _unstable(Y, plan, limit, idx, sigma2, note) if Y.shape[1] > N_SAMPLE else []
    if unstable:
        report["flags"] = list(report.get("flags") or []) + unstable
    plan.E = plan.E[:, idx]
    plan.names = [plan.names[i] for i in idx]
    plan.selection = {**report, "mode": "automatic", "from": len(plan.matched.names), "max": limit,
                      "names": plan.names, "subset": subset}
    held = f"{len(plan.matched.names)} spectra were given" if subset else \
        f"Library holds {len(plan.matched.names)} spectra"
    msg = (f"{held}, more than the {limit} the run can use; selected {len(plan.names)} of them "
           f"automatically: {', '.join(plan.names)}")
    plan.warnings.append(msg)
    note(0.7, msg)
