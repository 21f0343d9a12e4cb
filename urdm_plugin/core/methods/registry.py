"""The one executable registry of unmixing methods, read by the CLI, the dialog and Processing.

Each :class:`MethodSpec` names its implementation lazily (``"module:function"`` under
``urdm_plugin.core``, imported on first use, so torch loads only when ``urdm`` runs), says
whether it is per-pixel or spatial, and declares its parameters (:class:`ParamSpec`: type,
range, choices, help) — the single source the front ends build their argparse options,
Processing parameters and dialog widgets from.

Calling conventions of the implementations:

* per-pixel: ``f(Y (B, N), E (B, P), **params) -> A (P, N)``;
* spatial (one tile): ``f(Y (B, h, w) float64 with invalid pixels zero, E (B, P),
  valid (h, w) bool, params: dict, ctx: SceneContext, progress=None, cancel=None)
  -> (A (P, h, w), std (P, h, w) | None, info dict)``;
* weight chooser of a regularised spatial method (tiled runs choose once per scene):
  ``g(Y, E, valid, params, ctx, progress=None, cancel=None)
  -> (params with the weight filled in, ctx with scene facts added, report dict)``.

Every regularised method calls its weight ``lam``; its value is a number ≥ 0 (0 = no
regularisation) or the string ``"auto"`` (chosen from the scene's own data).

The list :data:`METHODS` is **append-only**: ids and their positions (Processing stores a
method as the index into an enum parameter; saved models and scripts store the id) are a
stable contract. Never reorder, rename or remove an entry; add new methods at the end.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..errors import MethodUnavailableError, OptionError
from .identify import MAX_ANGLE

#: The value of a weight chosen from the data.
AUTO = "auto"


@dataclass(frozen=True)
class ParamSpec:
    """One user-visible option.

    ``kind`` is ``float``, ``int`` or ``choice``. ``minimum``/``maximum`` bound numeric kinds
    (inclusive, None = unbounded); ``choices`` lists the allowed strings of a ``choice``;
    ``auto`` says the string ``"auto"`` is also a value (the method chooses it from the data).
    ``label`` is the short UI label, ``help`` the one-line tooltip / ``--help`` text.
    """

    name: str
    kind: str
    default: Any
    label: str = ""
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: tuple = ()
    auto: bool = False
    help: str = ""

    def validate(self, value: Any) -> Any:
        """``value`` converted to this parameter's kind, or :class:`OptionError`."""
        if self.auto and (value is None or (isinstance(value, str) and value.strip().lower() == AUTO)):
            return AUTO
        if self.kind == "choice":
            v = str(value).strip().lower()
            if v not in self.choices:
                raise OptionError(f"Option '{self.name}' is '{value}', which is not one of {', '.join(self.choices)}",
                                  f"Choose one of: {', '.join(self.choices)}.")
            return v
        example = AUTO if self.auto else self.default
        try:
            v = float(value) if self.kind == "float" else int(value)
        except (TypeError, ValueError, OverflowError):
            raise OptionError(f"Option '{self.name}' must be a number{' or auto' if self.auto else ''}, got '{value}'",
                              f"Give a {self.kind} value, e.g. {example}.") from None
        if self.kind == "int" and isinstance(value, float) and not value.is_integer():
            raise OptionError(f"Option '{self.name}' must be a whole number, got '{value}'",
                              f"Give an integer, e.g. {self.default}.")
        if not math.isfinite(v):
            raise OptionError(f"Option '{self.name}' must be a finite number, got '{value}'",
                              f"Give a {self.kind} value, e.g. {example}.")
        lo = "-inf" if self.minimum is None else self.minimum
        hi = "inf" if self.maximum is None else self.maximum
        if (self.minimum is not None and v < self.minimum) or (self.maximum is not None and v > self.maximum):
            raise OptionError(f"Option '{self.name}' = {value} is outside its range [{lo}, {hi}]",
                              f"Give a value between {lo} and {hi}" + (" or auto." if self.auto else "."))
        return v


def params_for_method(spec, given: dict, shown: Callable[[str], str] = str) -> dict:
    """The parameters of ``given`` (name -> value; None = not given) for method ``spec``: the
    one rule of every front end. A parameter another method takes is refused (OptionError
    naming the methods that take it, each called ``shown(name)``: ``--lam``, ``LAMBDA``); every
    value is checked by :meth:`MethodSpec.validate_params`, so a bad one is refused with the
    same message everywhere. Returns the given values (defaults not filled in)."""
    params = {}
    for name, value in given.items():
        if value is None:
            continue
        methods = all_params().get(name, (None, ()))[1]
        if spec.id not in methods:
            raise OptionError(f"{shown(name)} does not apply to method '{spec.id}'",
                              f"Use {shown(name)} only with {' or '.join(methods)}")
        params[name] = value
    spec.validate_params(params)
    return params


def _load(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(f"urdm_plugin.core.{module}"), name)


_PACKAGE_NAMES = {"torch": "PyTorch"}


def _installed(module: str) -> bool:
    # find_spec only looks the package up; importing torch here would cost seconds.
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class MethodSpec:
    """One unmixing method.

    ``id`` (stable), ``label`` (UI), ``spatial`` (works on image tiles, not pixel by pixel),
    ``implementation`` (``"module:function"`` under ``urdm_plugin.core``), ``params``,
    ``description``, ``requires`` (Python packages it needs), ``weight`` (name of its
    regularisation weight, or None) and ``choose_weight`` (the scene-level weight chooser
    of a regularised spatial method).
    """

    id: str
    label: str
    spatial: bool
    implementation: str
    params: tuple = ()
    description: str = ""
    requires: tuple = ()
    weight: Optional[str] = None
    choose_weight: Optional[str] = None

    @property
    def needs_torch(self) -> bool:
        return "torch" in self.requires

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise OptionError(f"Method '{self.id}' has no option '{name}'",
                          f"Its options are: {', '.join(p.name for p in self.params) or 'none'}.")

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def validate_params(self, params: Optional[dict]) -> dict:
        """Defaults overlaid with ``params`` (validated); unknown names raise OptionError."""
        given = dict(params or {})
        if self.weight and _LEGACY_WEIGHT in given:  # run.json/scripts before the one weight name
            if self.weight in given:
                raise OptionError(f"Both '{self.weight}' and '{_LEGACY_WEIGHT}' given for method '{self.id}'",
                                  f"Give only '{self.weight}'.")
            given[self.weight] = given.pop(_LEGACY_WEIGHT)
        unknown = sorted(set(given) - {p.name for p in self.params})
        if unknown:
            raise OptionError(f"Unknown option(s) for method '{self.id}': {', '.join(unknown)}",
                              "Its options are: " + (", ".join(p.name for p in self.params) or "none") + ".")
        out = self.defaults()
        for k, v in given.items():
            out[k] = self.param(k).validate(v)
        return out

    def weight_is_auto(self, params: dict) -> bool:
        """True when this method has a weight and ``params`` leave it to be chosen."""
        return self.weight is not None and params.get(self.weight, AUTO) == AUTO

    def available(self) -> tuple:
        """``(True, "")`` if the method can run in this Python, else ``(False, reason with fix)``."""
        missing = [m for m in self.requires if not _installed(m)]
        if missing:
            what = ", ".join(f"{_PACKAGE_NAMES.get(m, m)} ({m})" for m in missing)
            return False, (f"Method '{self.id}' needs {what}, which is not installed in this "
                           f"Python. Install it (pip install {' '.join(missing)}) or choose fcls or tv.")
        return True, ""

    def require_available(self) -> MethodSpec:
        """This spec when it can run here, else :class:`MethodUnavailableError` (the reason and fix)."""
        ok, reason = self.available()
        if not ok:
            raise MethodUnavailableError(reason, "Choose another method (see `python -m urdm_plugin methods`) "
                                                 "or install what it needs")
        return self

    def load(self) -> Callable:
        """The implementation (imported now); MethodUnavailableError if it cannot run here."""
        return _load(self.require_available().implementation)

    def load_weight_chooser(self) -> Callable:
        if self.choose_weight is None:
            raise OptionError(f"Method '{self.id}' has no weight to choose", "Give no weight for it.")
        self.load()
        return _load(self.choose_weight)


#: The name regularised methods' weights had before one name served all ("tv": lam_tv).
_LEGACY_WEIGHT = "lam_tv"

# ----------------------------------------------------------------------------- engine options
#: Options of every run (not of a method), with the same ParamSpec contract.
SEED = ParamSpec("seed", "int", 0, "Seed", 0, 2**63 - 1,
                 help="Random seed: automatic selection, weight choice probes and URDM sampling.")
DEVICE = ParamSpec("device", "choice", "auto", "Device", choices=("auto", "cpu", "cuda"),
                   help="Where URDM's network runs: auto (CUDA when available), cpu or cuda.")
TILE_SIZE = ParamSpec("tile_size", "int", 512, "Tile size", 32, 4096,
                      help="Largest side of the square tiles (pixels) a spatial method works on; the run "
                           "uses smaller tiles when the memory budget asks for it, and as few, as short "
                           "tiles as cover the scene.")
MEMORY_MB = ParamSpec("memory_mb", "int", 512, "Memory (MiB)", 1, 1 << 20,
                      help="Budget for one block of image data (MiB).")
ENGINE_OPTIONS: tuple = (SEED, DEVICE, TILE_SIZE, MEMORY_MB)
#: Run options the front ends expose each in their own way (not generated as widgets).
MAX_ENDMEMBERS = ParamSpec("max_endmembers", "int", None, "Most endmembers", 1, None,
                           help="At most this many endmembers when choosing them automatically "
                                "(default: bands − 1, at most 20).")
TILE_OVERLAP = ParamSpec("tile_overlap", "int", None, "Tile overlap", 0, None,
                         help="Overlap of neighbouring tiles (pixels; below tile_size/2); default "
                              "tile_size/8 between 4 and 32.")
RUN_OPTIONS: tuple = (MAX_ENDMEMBERS, TILE_OVERLAP)
#: Local worker processes of a run (the machine's limit: :func:`core.engine.executors.check_place`).
WORKERS = ParamSpec("workers", "int", None, "Local workers", 1, None,
                    help="Solve tiles / row blocks in this many local worker processes (same result).")


def check_tile_overlap(tile_overlap: Optional[int], tile_size: int) -> None:
    """The overlap of neighbouring tiles (pixels) must be below half a tile."""
    if tile_overlap is not None and not 0 <= int(tile_overlap) < int(tile_size) // 2:
        raise OptionError(f"tile_overlap must be in [0, tile_size/2) (got {tile_overlap})",
                          "Use e.g. 16 with tile_size 256")


def take_engine_options(values: dict, names=None) -> dict:
    """The engine options (:data:`ENGINE_OPTIONS`, :data:`RUN_OPTIONS`; only ``names`` when
    given) taken out of ``values`` and validated; those not given (None) are left out. The
    one check of them for the options builder (:mod:`core.engine.options`) and for
    :func:`core.engine.arrays.unmix_array`."""
    out = {o.name: o.validate(v) for o in ENGINE_OPTIONS + RUN_OPTIONS
           if (names is None or o.name in names) and (v := values.pop(o.name, None)) is not None}
    check_tile_overlap(out.get("tile_overlap"), out.get("tile_size", TILE_SIZE.default))
    return out


#: Options of endmember extraction (VCA), one declaration for the CLI's ``vca``, Processing's
#: "Extract endmembers (VCA)" and :func:`core.engine.extraction.extract_endmembers`.
VCA_MAX_PIXELS = ParamSpec("max_pixels", "int", 200_000, "Pixels sampled at most", 1, None,
                           help="Random subset of valid pixels VCA looks at.")
VCA_MAX_ANGLE = ParamSpec("max_angle", "float", MAX_ANGLE, "Largest identification angle (rad)", 0.001, 1.5,
                          help="Largest spectral angle (radians) of an identification.")
VCA_OPTIONS: tuple = (SEED, VCA_MAX_PIXELS, VCA_MAX_ANGLE)

# ----------------------------------------------------------------------------- methods
_SMOOTH = ParamSpec("smooth", "float", 2.0, "Scaling smoothness (px)", 0.5, 100.0,
                    help="Distance (pixels, Gaussian σ) over which a material's brightness scaling ψ "
                         "is assumed smooth (ELMM); larger = smoother scaling maps.")
_VARIABILITY = ParamSpec("variability", "choice", "auto", "Endmember variability",
                         choices=("auto", "scaling", "none"),
                         help="Model brightness variability of the endmembers as smooth per-pixel scalings "
                              "(ELMM): auto = when the data show it, scaling = always, none = never "
                              "(plain linear mixing).")
_LAM_HELP = "{what}; 'auto' = chosen from the scene's own data (SURE), 0 = none (FCLS)."

METHODS: list = [
    MethodSpec("fcls", "FCLS (fully constrained least squares)", False, "methods.active_set:fcls", (),
               "Per-pixel least squares with abundances non-negative and summing to one (exact)."),
    MethodSpec("scls", "SCLS (sum-to-one least squares)", False, "methods.linear:scls", (),
               "Per-pixel least squares with abundances summing to one; may be negative."),
    MethodSpec("nnls", "NNLS (non-negative least squares)", False, "methods.active_set:nnls", (),
               "Per-pixel least squares with non-negative abundances; sums are free."),
    MethodSpec("ucls", "UCLS (unconstrained least squares)", False, "methods.linear:ucls", (),
               "Per-pixel ordinary least squares, no constraints."),
    MethodSpec("tv", "TV-regularised (SUnSAL-TV style ADMM)", True, "methods.tv:solve_tile", (
        ParamSpec("lam", "float", AUTO, "Weight λ", 0.0, 1e3, auto=True,
                  help=_LAM_HELP.format(what="Total-variation weight")),
        ParamSpec("max_iter", "int", 300, "Iterations", 10, 5000, help="Maximum ADMM iterations per tile."),
    ), "Fully constrained unmixing with a total-variation penalty on each abundance map "
       "(smooth maps with sharp edges). Needs only numpy/scipy.",
        weight="lam", choose_weight="methods.tv:choose_scene_weight"),
    MethodSpec("urdm", "URDM (diffusion-prior unmixing)", True, "diffusion.sampler:solve_tile", (
        ParamSpec("lam", "float", AUTO, "Weight λ", 0.0, 1e3, auto=True,
                  help=_LAM_HELP.format(what="Prior weight λ")),
        ParamSpec("quality", "choice", "balanced", "Quality", choices=("fast", "balanced", "best"),
                  help="Number of network evaluations: fast (fewest), balanced, best (most)."),
        ParamSpec("zeta", "float", 0.0, "Sampling noise ζ", 0.0, 1.0,
                  help="Sampling noise in the prior step: 0 = deterministic denoising (most accurate), "
                       "1 = fresh noise each step (posterior samples; used for samples > 1)."),
        ParamSpec("samples", "int", 1, "Samples", 1, 64,
                  help="Posterior samples averaged; more than 1 also gives an uncertainty map."),
        _VARIABILITY,
    ), "Unmixing regularised by a diffusion (DDPM) prior on abundance maps, solved by "
       "splitting inside diffusion sampling (TIP 2025, doi 10.1109/TIP.2025.3638151). Needs torch.",
        requires=("torch",), weight="lam", choose_weight="diffusion.sampler:choose_scene_weight"),
    MethodSpec("elmm", "ELMM (scaled endmembers, smooth scalings)", True, "methods.elmm:solve_tile", (
        _SMOOTH,
    ), "Extended linear mixing: each endmember is scaled per pixel by a spatially smooth factor "
       "(illumination, slope, shade), fractions sum to one; writes the scaling maps. "
       "Needs only numpy/scipy."),
]

METHOD_IDS: tuple = tuple(m.id for m in METHODS)


def aux_layers(method_id: str, params: dict) -> list:
    """Kinds of the extra per-endmember maps a spatial method returns beside the abundances,
    in the order it stacks them (each a P × h × w block of its second output): "std"
    (URDM's posterior standard deviation, with samples > 1) and "scaling" (the ELMM
    scalings ψ: elmm, and urdm unless variability is "none")."""
    mid = get_method(method_id).id
    kinds = []
    if mid == "urdm" and int(params.get("samples", 1)) > 1:
        kinds.append("std")
    if mid == "elmm" or (mid == "urdm" and params.get("variability", "auto") != "none"):
        kinds.append("scaling")
    return kinds


def get_method(method_id: str) -> MethodSpec:
    """The :class:`MethodSpec` for ``method_id`` (case-insensitive); OptionError if unknown."""
    key = str(method_id).strip().lower()
    for m in METHODS:
        if m.id == key:
            return m
    raise OptionError(f"Unknown unmixing method '{method_id}'", f"Use one of: {', '.join(METHOD_IDS)}.")


def method_index(method_id: str) -> int:
    """Position of the method in :data:`METHODS` (the stable enum index Processing uses)."""
    return METHOD_IDS.index(get_method(method_id).id)


def method_available(method_id: str) -> tuple:
    """``(True, "")`` if the method can run in this Python, else ``(False, reason with fix)``."""
    return get_method(method_id).available()


def all_params() -> dict:
    """Every method parameter by name, each with the ids of the methods that take it (the CLI
    and Processing expose a parameter once, e.g. one ``lam`` for tv and urdm)."""
    out: dict = {}
    for m in METHODS:
        for p in m.params:
            spec, ids = out.get(p.name, (p, []))
            out[p.name] = (spec, ids + [m.id])
    return out


def default_method() -> str:
    """``"urdm"`` when torch is installed, else ``"fcls"``."""
    return "urdm" if method_available("urdm")[0] else "fcls"


DEFAULT_METHOD: str = default_method()

__all__ = ["AUTO", "aux_layers", "DEFAULT_METHOD", "ENGINE_OPTIONS", "METHODS", "METHOD_IDS", "MethodSpec", "ParamSpec",
           "RUN_OPTIONS", "VCA_OPTIONS", "all_params", "default_method", "get_method", "method_available",
           "method_index"]
