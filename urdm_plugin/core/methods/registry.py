"""The one registry of unmixing methods, read by the CLI, the dialog and Processing.

The list :data:`METHODS` is **append-only**: ids and their positions (Processing stores a
method as the index into an enum parameter, saved models and scripts store the id) are a
stable contract. Never reorder, rename or remove an entry; add new methods at the end.

Regularisation weights that may be chosen automatically (``urdm``'s ``lam``, ``tv``'s
``lam_tv``) are ``float`` parameters where **0 means "auto"** (the data-driven rule of the
method); any positive value is used as given. ``resolve_auto`` turns 0 into ``"auto"``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import OptionError

PARAM_KINDS = ("float", "int", "choice", "bool")


@dataclass(frozen=True)
class ParamSpec:
    """One user-visible option of a method.

    ``kind`` is one of ``float``, ``int``, ``choice``, ``bool``. ``minimum``/``maximum`` bound
    numeric kinds (inclusive, None = unbounded); ``choices`` lists the allowed strings of a
    ``choice``. ``help`` is the one-line tooltip / ``--help`` text.
    """

    name: str
    kind: str
    default: Any
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: tuple = ()
    help: str = ""

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's kind or raise :class:`OptionError`."""
        if self.kind == "choice":
            v = str(value).strip().lower()
            if v not in self.choices:
                raise OptionError(
                    f"Option '{self.name}' is '{value}', which is not one of {', '.join(self.choices)}",
                    f"Choose one of: {', '.join(self.choices)}.",
                )
            return v
        if self.kind == "bool":
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise OptionError(f"Option '{self.name}' must be true or false, got '{value}'",
                                  "Use true or false.")
            return bool(value)
        try:
            v = float(value) if self.kind == "float" else int(value)
        except (TypeError, ValueError):
            raise OptionError(f"Option '{self.name}' must be a number, got '{value}'",
                              f"Give a {self.kind} value, e.g. {self.default}.") from None
        if self.kind == "int" and float(value) != int(value):
            raise OptionError(f"Option '{self.name}' must be a whole number, got '{value}'",
                              f"Give an integer, e.g. {self.default}.")
        lo = "-inf" if self.minimum is None else self.minimum
        hi = "inf" if self.maximum is None else self.maximum
        if (self.minimum is not None and v < self.minimum) or (self.maximum is not None and v > self.maximum):
            raise OptionError(f"Option '{self.name}' = {value} is outside its range [{lo}, {hi}]",
                              f"Give a value between {lo} and {hi}.")
        return v


@dataclass(frozen=True)
class MethodSpec:
    """One unmixing method: ``id`` (stable), ``label`` (UI), whether it ``needs_torch``,
    whether it is ``spatial`` (works on image tiles, not pixel by pixel), its ``params`` and
    a short ``description``."""

    id: str
    label: str
    needs_torch: bool
    spatial: bool
    params: list = field(default_factory=list)
    description: str = ""

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise OptionError(
            f"Method '{self.id}' has no option '{name}'",
            f"Its options are: {', '.join(p.name for p in self.params) or 'none'}.",
        )

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def validate_params(self, params: Optional[dict]) -> dict:
        """Defaults overlaid with ``params`` (validated); unknown names raise OptionError."""
        out = self.defaults()
        for k, v in (params or {}).items():
            out[k] = self.param(k).validate(v)
        return out


_TILE = ParamSpec("tile_size", "int", 256, 32, 4096,
                  help="Side of the square tiles (pixels) a spatial method works on; larger uses more memory.")

METHODS: list = [
    MethodSpec("fcls", "FCLS (fully constrained least squares)", False, False, [],
               "Per-pixel least squares with abundances non-negative and summing to one (exact)."),
    MethodSpec("scls", "SCLS (sum-to-one least squares)", False, False, [],
               "Per-pixel least squares with abundances summing to one; may be negative."),
    MethodSpec("nnls", "NNLS (non-negative least squares)", False, False, [],
               "Per-pixel least squares with non-negative abundances; sums are free."),
    MethodSpec("ucls", "UCLS (unconstrained least squares)", False, False, [],
               "Per-pixel ordinary least squares, no constraints."),
    MethodSpec("tv", "TV-regularised (SUnSAL-TV style ADMM)", False, True, [
        ParamSpec("lam_tv", "float", 0.0, 0.0, 1e3,
                  help="Total-variation weight; 0 = automatic (chosen from the scene's noise)."),
        ParamSpec("max_iter", "int", 300, 10, 5000, help="Maximum ADMM iterations per tile."),
        _TILE,
    ], "Fully constrained unmixing with a total-variation penalty on each abundance map "
       "(smooth maps with sharp edges). Needs only numpy/scipy."),
    MethodSpec("urdm", "URDM (diffusion-prior unmixing)", True, True, [
        ParamSpec("lam", "float", 0.0, 0.0, 1e3,
                  help="Prior weight λ; 0 = automatic (chosen from the scene's data)."),
        ParamSpec("quality", "choice", "balanced", choices=("fast", "balanced", "best"),
                  help="Number of network evaluations: fast (fewest), balanced, best (most)."),
        ParamSpec("zeta", "float", 0.0, 0.0, 1.0,
                  help="Sampling noise in the prior step: 0 = deterministic denoising (most accurate), "
                       "1 = fresh noise each step (posterior samples; used for samples > 1)."),
        ParamSpec("samples", "int", 1, 1, 64,
                  help="Posterior samples averaged; more than 1 also gives an uncertainty map."),
        _TILE,
    ], "Unmixing regularised by a diffusion (DDPM) prior on abundance maps, solved by "
       "splitting inside diffusion sampling (TIP 2025, doi 10.1109/TIP.2025.3638151). Needs torch."),
]

METHOD_IDS: tuple = tuple(m.id for m in METHODS)


def get_method(method_id: str) -> MethodSpec:
    """The :class:`MethodSpec` for ``method_id`` (case-insensitive); OptionError if unknown."""
    key = str(method_id).strip().lower()
    for m in METHODS:
        if m.id == key:
            return m
    raise OptionError(f"Unknown unmixing method '{method_id}'",
                      f"Use one of: {', '.join(METHOD_IDS)}.")


def method_index(method_id: str) -> int:
    """Position of the method in :data:`METHODS` (the stable enum index Processing uses)."""
    return METHOD_IDS.index(get_method(method_id).id)


def _torch_installed() -> bool:
    # find_spec only looks the package up; importing torch here would cost seconds.
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def method_available(method_id: str) -> tuple:
    """``(True, "")`` if the method can run in this Python, else ``(False, reason with fix)``."""
    m = get_method(method_id)
    if m.needs_torch and not _torch_installed():
        return False, (f"Method '{m.id}' needs PyTorch, which is not installed in this Python. "
                       "Install it (pip install torch) or choose fcls or tv.")
    return True, ""


def default_method() -> str:
    """``"urdm"`` when torch is installed, else ``"fcls"``."""
    return "urdm" if method_available("urdm")[0] else "fcls"


def resolve_auto(value: Any) -> Any:
    """Map the registry's "0 means automatic" convention to ``"auto"``; other values pass."""
    if value is None:
        return "auto"
    if isinstance(value, str):
        return "auto" if value.strip().lower() in ("auto", "", "0", "0.0") else float(value)
    return "auto" if float(value) == 0.0 else float(value)


DEFAULT_METHOD: str = default_method()
