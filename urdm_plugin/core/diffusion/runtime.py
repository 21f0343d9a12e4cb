"""Torch plumbing of the diffusion prior: lazy import, threads, device, the loaded model.

torch is imported here on first use only, so importing the plugin stays fast and works in
a QGIS Python without torch (the method then reports what to install).
"""

from __future__ import annotations

import threading

from ..errors import MethodUnavailableError, OptionError
from ..signals import held as held_signals
from ..signals import reclaim_handlers

_model_lock = threading.Lock()
_models: dict = {}
_threads_configured = False


def torch_module():
    """The ``torch`` module (imported on the first call); MethodUnavailableError without it.

    The first import holds the termination signals and then puts their Python handlers back:
    Debian's torch links UCX, which takes SIGHUP for its debugger (``UCX_DEBUG_SIGNO``) as it
    loads, so a hung-up terminal no longer stopped a URDM run (QGIS 3.40 root: the run went on
    and wrote its outputs); a signal that comes during the import waits for the handlers."""
    global _handlers_reclaimed
    try:
        if _handlers_reclaimed:
            import torch
        else:
            with held_signals():
                import torch

                reclaim_handlers()
                _handlers_reclaimed = True
    except ImportError as exc:
        raise torch_missing(exc) from exc
    return torch


def torch_missing(exc: ImportError) -> MethodUnavailableError:
    """Why ``import torch`` failed, in the user's terms: not installed, or installed but it
    could not load (under ``ulimit -v`` its libraries do not fit: "failed to map segment")."""
    import importlib.util

    from ..limits import address_space_is_tight

    if importlib.util.find_spec("torch") is None:
        return MethodUnavailableError("The URDM method needs PyTorch, which this Python does not have",
                                      "Install it (see the README: 'pip install torch'), or choose FCLS or TV.")
    if address_space_is_tight():
        return MethodUnavailableError(f"PyTorch is installed but could not be loaded ({exc}): this process's "
                                      "address-space limit (ulimit -v) leaves it too little memory",
                                      "Raise the limit (ulimit -v) or run without it, or choose FCLS or TV.")
    return MethodUnavailableError(f"PyTorch is installed but could not be loaded ({exc})",
                                  "Reinstall PyTorch for this Python (see the README), or choose FCLS or TV.")


_handlers_reclaimed = False


def configure_threads(n: int | None = None) -> None:
    """Set torch's intra-op threads once per process (interop threads can be set only once)."""
    global _threads_configured
    torch = torch_module()
    if n:
        torch.set_num_threads(int(n))
    if not _threads_configured:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or parallel work started: keep what is there
            pass
        _threads_configured = True


def resolve_device(device: str = "auto"):
    torch = torch_module()
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"Device '{device}' was asked for but no CUDA GPU is available to PyTorch",
                          "Use --device auto or cpu.")
    if device not in ("cpu",) and not str(device).startswith("cuda"):
        raise OptionError(f"Unknown device '{device}'", "Use auto, cpu or cuda.")
    return torch.device(device)


def get_model(device="cpu", weights_dir=None):
    """The shipped prior on ``device`` (loaded once per process and device)."""
    from .weights import WEIGHTS_DIR, load_prior

    key = (str(device), str(weights_dir or WEIGHTS_DIR))
    with _model_lock:
        if key not in _models:
            model = load_prior(weights_dir or WEIGHTS_DIR, device=device)[0].eval()
            # channels-last: oneDNN's fast convolution layout on CPU (measured 1.3× on the
            # shipped UNet, 2 threads); on CUDA it is the tensor-core layout as well
            _models[key] = model.to(memory_format=torch_module().channels_last)
        return _models[key]


#: Map pixels per network call on a CPU. The UNet's activations (32–128 channels) of a
#: larger batch leave the caches and every element-wise layer (GroupNorm, SiLU, additions)
#: then runs at memory speed: measured on 2 cores, six 256² maps in one call run at
#: 0.13–0.19 Mpixel/s, one at a time at 0.27–0.33 (benchmarks/bench_urdm.py, network row).
#: Small maps too: four 118² maps (a tile at --memory-mb 64) take 83 ms one at a time against
#: 102 ms in one call, and 17 MB of activations against 48 MB (four 128²: 104 vs 150 ms,
#: 17 vs 67 MB); so only maps under 64² share a call.
CPU_PIXELS_PER_CALL = 1 << 12
#: Map pixels per call on CUDA (bounded by memory, not by cache: batch for throughput).
CUDA_PIXELS_PER_CALL = 1 << 24


def predict_noise(model, x, t: int):
    """ε_θ(x, t) for maps x (n, 1, h, w) float32 on the model's device, evaluated in chunks of
    whole maps sized for the device (:data:`CPU_PIXELS_PER_CALL`); returns (n, 1, h, w).

    GroupNorm makes each map's output depend on the whole map, so chunks split the batch,
    never a map: the result is the same as one call (to float32 rounding).
    """
    torch = torch_module()
    n, _, h, w = x.shape
    xp = pad_to_multiple(x)
    per_call = CUDA_PIXELS_PER_CALL if xp.device.type == "cuda" else CPU_PIXELS_PER_CALL
    chunk = max(1, per_call // (xp.shape[-2] * xp.shape[-1]))
    out = []
    for i in range(0, n, chunk):
        xi = xp[i:i + chunk].contiguous(memory_format=torch.channels_last)
        ti = torch.full((xi.shape[0],), int(t), device=xp.device, dtype=torch.long)
        out.append(model(xi, ti)[..., :h, :w].contiguous())
    return out[0] if len(out) == 1 else torch.cat(out)


def pad_to_multiple(x, m: int = 4):
    """Reflect-pad (n, 1, h, w) to multiples of m (at least 8 px per side for the UNet)."""
    torch = torch_module()
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if h + ph < 8:
        ph = 8 - h
    if w + pw < 8:
        pw = 8 - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if (h > ph and w > pw) else "replicate"
    return torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)


