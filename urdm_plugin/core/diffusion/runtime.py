"""Torch plumbing of the diffusion prior: lazy import, threads, device, the loaded model.

torch is imported here on first use only, so importing the plugin stays fast and works in
a QGIS Python without torch (the method then reports what to install).
"""

from __future__ import annotations

import threading

from ..errors import MethodUnavailableError, OptionError

_model_lock = threading.Lock()
_models: dict = {}
_threads_configured = False


def torch_module():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised via the GUI's torch-absent test
        raise MethodUnavailableError(
            "The URDM method needs PyTorch, which this Python does not have",
            "Install it (see the README: 'pip install torch'), or choose FCLS or TV.",
        ) from exc
    return torch


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
            _models[key] = load_prior(weights_dir or WEIGHTS_DIR, device=device)[0]
        return _models[key]


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


