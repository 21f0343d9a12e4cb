"""The one options builder: a front end's values -> validated run options.

Every front end (the CLI's flags, Processing's parameters, the dialog's widgets) collects its
values under the registry's names (``lam``, ``seed``, ``workers``, ``max_pixels`` …; None =
not given) and calls :func:`build_run` or :func:`build_vca`. Each value is checked here
once, by its :class:`core.methods.registry.ParamSpec`; nothing below re-parses it.
``shown(name)`` spells a name the front end's way in messages (``--lam``, ``LAMBDA``), so the
same bad value is refused with the same :class:`core.errors.UrdmError` everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

from ..errors import OptionError
from ..methods.registry import (
    VCA_OPTIONS,
    all_params,
    default_method,
    get_method,
    params_for_method,
    take_engine_options,
)
from .executors import check_place, open_executor
from .plan import UnmixOptions

Shown = Callable[[str], str]

#: Run values the plan checks against the image (names, window, mask) or plain switches.
_PLAIN = ("endmembers", "overwrite", "mask_water_bands", "window", "mask_path", "quality_mask")


@dataclass(frozen=True)
class RunRequest:
    """A validated unmixing run: ``options`` for :func:`core.engine.pipeline.unmix_raster`
    and where it is solved (``workers`` local processes or the Dask ``scheduler``; both None:
    here)."""

    options: UnmixOptions
    workers: Optional[int] = None
    scheduler: Optional[str] = None

    def executor(self):
        """The context manager of :func:`core.engine.executors.open_executor` for this run."""
        return open_executor(self.workers, self.scheduler)


@dataclass(frozen=True)
class VcaOptions:
    """A validated endmember extraction: ``n`` (int ≥ 1 or ``"auto"``), ``seed``,
    ``max_pixels`` (pixels VCA samples at most), ``max_angle`` (rad, identification) and
    ``mask_water_bands``; the keyword arguments of
    :func:`core.engine.extraction.extract_endmembers`."""

    n: Union[int, str]
    seed: int
    max_pixels: int
    max_angle: float
    mask_water_bands: bool = True

    def as_kwargs(self) -> dict:
        return {"seed": self.seed, "max_pixels": self.max_pixels, "max_angle": self.max_angle,
                "mask_water_bands": self.mask_water_bands}


def _refuse_unknown(values: dict) -> None:
    if values:
        raise OptionError(f"Unknown run option(s): {', '.join(sorted(values))}",
                          "Give only the registry's options (see `python -m urdm_plugin unmix --help`).")


def build_run(values: Mapping[str, Any], shown: Shown = str) -> RunRequest:
    """A :class:`RunRequest` from front-end ``values`` (registry name -> value, None = not given).

    ``method`` (default: :func:`registry.default_method`) must be known (whether it can run in
    this Python is the plan's to say: the dialog plans runs it cannot start, to show why); a
    method parameter another method takes is refused (:func:`registry.params_for_method`);
    engine options go through :func:`registry.take_engine_options`, ``workers``/``scheduler``
    through :func:`executors.check_place`. Other names raise OptionError.
    """
    given = dict(values)
    spec = get_method(given.pop("method", None) or default_method())
    params = params_for_method(spec, {n: given.pop(n, None) for n in all_params()}, shown)
    workers, scheduler = check_place(given.pop("workers", None), given.pop("scheduler", None), shown)
    engine = take_engine_options(given)
    plain = {k: v for k in _PLAIN if (v := given.pop(k, None)) is not None}
    _refuse_unknown(given)
    return RunRequest(UnmixOptions(method=spec.id, params=params, **engine, **plain), workers, scheduler)


def build_vca(values: Mapping[str, Any]) -> VcaOptions:
    """:class:`VcaOptions` from front-end ``values``: ``n`` (a positive int or ``"auto"``; 0
    is refused — a front end whose widget spells auto as 0 maps it first), the
    :data:`registry.VCA_OPTIONS` (None = the default) and ``mask_water_bands``."""
    from .extraction import parse_n

    given = dict(values)
    n = given.pop("n", None)
    if str(n).strip() == "0":
        raise OptionError("N must be at least 1 (got 0)", "Give the number of endmembers to extract, or 'auto'")
    opts = {o.name: o.default if (v := given.pop(o.name, None)) is None else o.validate(v) for o in VCA_OPTIONS}
    water = given.pop("mask_water_bands", None)
    _refuse_unknown(given)
    return VcaOptions(n=parse_n(n), mask_water_bands=True if water is None else bool(water), **opts)
