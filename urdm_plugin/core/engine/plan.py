"""What a run will do, decided before any output exists: :func:`plan_run` -> :class:`RunPlan`.

The plan holds everything the run's rules decide — the method and its validated
parameters, the processing extent and mask, the image bands used, the endmembers (given,
the whole library, or chosen automatically) resampled onto those bands, the warnings —
and the problems that stop it, each typed (:mod:`core.engine.findings`).
:func:`core.engine.pipeline.unmix_raster` executes a plan; the dialog shows one (its pixel
sample read once, :class:`core.engine.sample.SampleCache`, and the automatic selection left to
a background check) so the UI keeps no copy of these rules. :func:`plan_run` decides in
named steps, each one kind of rule: the first problem stops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import InputImageError, LibraryError, OptionError, UrdmError
from ..methods.selection import MAX_AUTO
from ..window import Window
from .auto_selection import select_automatically
from .findings import Kind, problem, warning
from .sample import SampleCache, read_sample

#: Libraries with more spectra than this are reduced by automatic selection.
AUTO_SELECT_ABOVE = MAX_AUTO
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
        window: the part of the image to run: ``(col0, row0, width, height)`` in pixels (GDAL's
            order, as ``--window`` takes it) or a :class:`core.window.Window`; None: all.
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
    window: Optional[Union[tuple, Window]] = None
    mask_path: Optional[str] = None
    quality_mask: bool = True


@dataclass
class RunPlan:
    """A run, decided. ``problems`` is empty when it can run (:func:`plan_run` with
    ``strict=True`` raises the first problem instead of recording it).

    ``spec``/``params``: the registry method and its validated parameters; ``info``: the
    image (:class:`core.io.image.ImageInfo`); ``extent``: the :class:`core.window.Window` run;
    ``mask``: (height, width) bool or None; ``matched``: :class:`core.bands.MatchedBands`
    of the library (before selection); ``bands``: 0-based image bands used; ``E`` (bands
    used × P) and ``names`` (P) the endmembers run; ``selection``: how they were chosen
    (``mode`` given / all / automatic / automatic-pending); ``sample`` (bands used × N)
    pixels read for the checks, or None; ``fit``: how well ``E`` explains the sample
    (:func:`core.engine.fit_check.assess_fit`), None without a sample; ``warnings`` and
    ``problems``: :class:`core.engine.findings.Finding` (the messages, with their kind).
    """

    options: UnmixOptions
    spec: Any = None
    params: dict = field(default_factory=dict)
    info: Any = None
    library: Any = None
    library_label: str = ""
    extent: Optional[Window] = None
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


def check_extent(options: UnmixOptions, info) -> Window:
    """Check the run options (the registry's one rule each: an ``UnmixOptions`` made by hand
    has not met the builder) and return the extent: the :class:`Window` of the image run."""
    from ..methods.registry import ENGINE_OPTIONS, RUN_OPTIONS, take_engine_options

    take_engine_options({o.name: getattr(options, o.name) for o in ENGINE_OPTIONS + RUN_OPTIONS})
    if options.window is None:
        return Window.whole(info.height, info.width)
    return window_in_image(options.window, info)


def window_in_image(window, info) -> Window:
    """``window`` (a :class:`Window`, or the user's ``(col0, row0, width, height)``) checked
    against the image ``info``."""
    if not isinstance(window, Window):
        try:
            window = Window.from_xywh(window)
        except (TypeError, ValueError):
            raise OptionError(f"window must be (col0, row0, width, height); got {window!r}",
                              "Give four integers in pixels") from None
    if not window.within(info.height, info.width):
        raise OptionError(f"window {window.xywh()} is not inside the {info.width}×{info.height} image",
                          "Give (col0, row0, width, height) within the image's pixel grid")
    return window


def plan_run(image: Any, library: Any, options: Optional[UnmixOptions] = None, *, strict: bool = True,
             read_pixels: bool = True, progress=None, auto_select: bool = True,
             samples: Optional[SampleCache] = None) -> RunPlan:
    """Decide a run of ``options`` on ``image`` with ``library``.

    Args:
        image: an image path (any GDAL raster with wavelengths) or an already opened
            :class:`core.io.image.ImageInfo`.
        library: a library path (CSV or ENVI ``.sli``) or a :class:`core.io.library.SpectralLibrary`.
        strict: raise the first problem (:class:`UrdmError`); False records it in
            ``plan.problems`` and returns what was decided up to there.
        read_pixels: read a sample of pixels for automatic endmember selection and the
            reflectance-scale and fit checks. False decides from metadata alone (the selection
            is then ``automatic-pending`` when it would run).
        progress: ``progress(fraction, message)`` for the stages (optional).
        auto_select: False leaves an automatic selection ``automatic-pending`` even with
            pixels (it takes seconds: the dialog runs it in the background) and checks the
            sample's scale against all the candidate spectra (the fit is the selection's).
        samples: samples read by earlier plans (the dialog's): the sample is taken from
            there, or read and kept there; none of its tiles is held for a run.

    Every problem and warning is a :class:`core.engine.findings.Finding` (its text, with the
    kind of rule that made it).
    """
    plan = RunPlan(options=options or UnmixOptions())
    note = progress or (lambda f, m: None)
    steps = ((Kind.INPUT, lambda: _open_inputs(plan, image, library, note)),
             (Kind.BANDS, lambda: _match_bands(plan, note)),
             (Kind.EXTENT, lambda: _apply_masks(plan, note)),
             (Kind.ENDMEMBERS, lambda: _count_endmembers(plan)),
             (Kind.SAMPLE, lambda: _take_sample(plan, note, samples) if read_pixels else None),
             (Kind.ENDMEMBERS, lambda: _choose_endmembers(plan, note, auto_select)),
             (Kind.FIT, lambda: _judge_sample(plan, note)),
             (Kind.GEOREFERENCING, lambda: _warn_without_georeferencing(plan, note)))  # once the run can go ahead
    for kind, step in steps:
        try:
            step()
        except UrdmError as exc:
            if strict:
                raise
            plan.problems.append(problem(str(exc), kind))
            break
    return plan


def _warn(plan: RunPlan, text: str, kind: Kind, note, fraction: float) -> None:
    """Record a warning of ``kind`` and pass it to the progress callback."""
    plan.warnings.append(warning(text, kind))
    note(fraction, "warning: " + text)


def _warn_without_georeferencing(plan: RunPlan, note) -> None:
    info = plan.info
    if getattr(info, "georeferenced", True) or getattr(info, "gcps", ()) or getattr(info, "rpc", {}):
        return
    _warn(plan, f"'{Path(str(info.source_path or info.path)).name}' has no georeferencing (no geotransform, GCPs "
                "or RPCs): the outputs have none either and will not line up with other layers on a map",
          Kind.GEOREFERENCING, note, 1.0)


def _open_inputs(plan: RunPlan, image, library, note) -> None:
    """The method and its parameters, the image and the extent, the library (or its given subset)."""
    from ..io.image import ImageInfo, open_image
    from ..io.library import SpectralLibrary, read_library
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
    if opts.endmembers:  # a subset (the dialog's ticked rows): used as it is, or selected from when too many
        lib = lib.select(list(opts.endmembers))  # LibraryError names unknown ones
    plan.library = lib


def _match_bands(plan: RunPlan, note) -> None:
    """The library resampled onto the image bands it can be compared on (core.bands)."""
    from .. import bands as band_rules

    plan.matched = matched = band_rules.match_library(plan.info, plan.library,
                                                      mask_water_bands=plan.options.mask_water_bands)
    plan.bands = [int(b) for b in matched.band_indices]
    plan.E = np.asarray(matched.E, dtype=np.float64)
    plan.names = list(matched.names)
    plan.warnings.extend(warning(w, Kind.BANDS) for w in matched.report.warnings or [])
    note(0.5, "Bands: " + matched.report.summary())


def _apply_masks(plan: RunPlan, note) -> None:
    """``plan.mask``: the mask file's pixels and those a sensor product's quality flags leave."""
    from ..io.mask import load_mask

    opts, info = plan.options, plan.info
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


def _count_endmembers(plan: RunPlan) -> None:
    """Spectra within :attr:`RunPlan.auto_select_limit` are run as they are (given or all)."""
    from .. import bands as band_rules

    limit = plan.auto_select_limit
    if limit < 1:  # one band: not even two endmembers can be told apart, selection or not
        band_rules.require_bands(len(plan.bands), plan.E.shape[1])
    if plan.E.shape[1] <= limit:
        plan.selection = {"mode": "given" if plan.options.endmembers else "all", "names": plan.names}


def _take_sample(plan: RunPlan, note, samples: Optional[SampleCache]) -> None:
    """``plan.sample``: pixels of the extent in range, with signal; dead bands left out."""
    from .. import bands as band_rules
    from ..io.parallel_read import DecodedBlocks

    info = plan.info

    def read():
        if samples is not None:
            return samples.get(info, plan.bands, plan.extent)
        # the sample's tiles kept for the row-block pass, for these bands
        plan.held = DecodedBlocks(tuple(plan.bands), int(HELD_SHARE * float(plan.options.memory_mb) * 2 ** 20))
        return read_sample(info, plan.bands, plan.extent, plan.held)

    sample = read()
    if not sample.shape[1] and _drop_dead_bands(plan, note, samples):  # a dead band leaves no pixel valid
        sample = read()  # tiles held were decoded with the dead bands: a new store
    plan.sample = _in_range(sample, plan, note)
    band_rules.require_signal(plan.sample, f"The image '{Path(str(info.source_path or info.path)).name}'")


def _choose_endmembers(plan: RunPlan, note, auto_select: bool) -> None:
    """Select automatically among too many spectra when pixels were read (and asked for),
    else leave the selection ``automatic-pending``; then the bands must support the endmembers."""
    from .. import bands as band_rules

    if plan.selection is None:
        if plan.sample is None or not auto_select:
            plan.selection = {"mode": "automatic-pending", "from": len(plan.names), "max": plan.auto_select_limit,
                              "subset": bool(plan.options.endmembers)}
            return
        select_automatically(plan, plan.auto_select_limit, note, bool(plan.options.endmembers))
    band_rules.require_bands(len(plan.bands), plan.E.shape[1])


def _judge_sample(plan: RunPlan, note) -> None:
    """The reflectance-scale check and, for the endmembers the run will use, how well they fit
    the sample (``plan.fit``; core.engine.fit_check): warnings."""
    from ..bands import check_reflectance_scale
    from .fit_check import assess_fit, loud_band_message, poor_fit_message, stand_in_flags

    if plan.sample is None or not plan.sample.shape[1]:
        return
    for w in check_reflectance_scale(plan.sample, plan.E):  # all the candidates while a selection is pending
        _warn(plan, w, Kind.SCALE, note, 0.9)
    mode = plan.selection.get("mode")
    if mode == "automatic-pending":
        return
    fit = assess_fit(plan.sample, plan.E, seed=plan.options.seed)
    plan.fit = fit if fit["pixels"] else None  # never "residual 0.0" on no pixel (all spectra 0)
    if plan.fit is None:
        return
    automatic = mode == "automatic"
    flags = stand_in_flags(plan.fit, plan.names)
    if automatic and flags:  # beside the selection's own (noise-level, look-alike) flags
        plan.selection["flags"] = list(plan.selection.get("flags") or []) + flags
    loud = loud_band_message(plan.fit, plan.bands, plan.info.wavelengths_nm)
    for msg in ([poor_fit_message(plan.fit, automatic)] if plan.fit["poor"] else []) + flags + ([loud] if loud else []):
        _warn(plan, msg, Kind.FIT, note, 0.9)


def _drop_dead_bands(plan: RunPlan, note, samples: Optional[SampleCache]) -> bool:
    """Leave out the bands that hold no usable value anywhere in the extent (delivered
    products fill their bad bands with the no-data value), naming them in the warnings and
    the match report. True when some were dropped; when every band is dead, none is (the
    run then stops with the all-nodata message)."""
    from ..bands import REASON_DEAD
    from ..io.image import dead_bands

    find = dead_bands if samples is None else samples.dead_bands
    dead = find(plan.info, plan.bands, plan.extent)
    if not dead:
        return False
    plan.matched.drop_bands(dead, REASON_DEAD)
    plan.bands = [int(b) for b in plan.matched.band_indices]
    plan.E = np.asarray(plan.matched.E, dtype=np.float64)
    wl = plan.info.wavelengths_nm
    named = ", ".join(f"band {b + 1}" + (f" ({wl[b]:.1f} nm)" if wl is not None else "") for b in dead)
    msg = (f"Left out {len(dead)} band(s) with no usable value anywhere (all nodata, NaN or ±inf): {named}; "
           f"{len(plan.bands)} bands remain")
    _warn(plan, msg, Kind.BANDS, note, 0.55)
    return True


def _in_range(sample: np.ndarray, plan: RunPlan, note) -> np.ndarray:
    """The sample's pixels within ±MAX_MAGNITUDE; refuses a scene most of whose pixels are
    beyond it (not reflectance: a missing scale factor), warns about a few (corruption)."""
    from ..limits import MAX_MAGNITUDE

    if not sample.shape[1]:
        return sample
    big = (np.abs(sample) > MAX_MAGNITUDE).any(axis=0)
    if big.mean() > 0.5:
        raise InputImageError(
            f"The values of '{Path(str(plan.info.path)).name}' reach {float(np.abs(sample).max()):.3g}; beyond "
            f"{MAX_MAGNITUDE:.0e} they are not reflectance (0–1) nor scaled reflectance",
            "Give the image its scale factor (band scale metadata, or ENVI 'reflectance scale factor') "
            "or convert it to reflectance first")
    if big.any():
        msg = (f"{int(big.sum())} of {big.size} sampled pixels have values beyond {MAX_MAGNITUDE:.0e} "
               "(corrupt data?); such pixels are treated as nodata")
        _warn(plan, msg, Kind.SAMPLE, note, 0.6)
    return sample[:, ~big]
