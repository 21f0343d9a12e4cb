"""DDPM noise schedule (Ho et al. 2020): T = 1000 steps, linear β from 1e-4 to 0.02.

Pure numpy so the arithmetic is testable without torch. Images live in [-1, 1] for the
network; abundances in [0, 1] map through ``s(a) = 2a - 1``.
"""

from __future__ import annotations

import numpy as np

T = 1000
BETA_START = 1e-4
BETA_END = 0.02


def betas(t_total: int = T) -> np.ndarray:
    """β_t for t = 0 … T-1, shape (T,)."""
    return np.linspace(BETA_START, BETA_END, t_total, dtype=np.float64)


def alphas_cumprod(t_total: int = T) -> np.ndarray:
    """ᾱ_t = ∏_{s≤t} (1 − β_s), shape (T,), decreasing from ≈1 to ≈4e-5."""
    return np.cumprod(1.0 - betas(t_total))


def sigma_bar(alpha_bar: np.ndarray | float) -> np.ndarray:
    """Noise-to-signal ratio σ̄_t = √(1−ᾱ_t)/√ᾱ_t of x_t = √ᾱ_t·(x₀ + σ̄_t·ε)."""
    ab = np.asarray(alpha_bar, dtype=np.float64)
    return np.sqrt(1.0 - ab) / np.sqrt(ab)


def sampling_timesteps(t_start: int, n_steps: int, kind: str = "quadratic") -> np.ndarray:
    """Descending timesteps t_K > … > t_1 ≥ 0 from ``t_start``, ``n_steps`` of them, ints.

    ``quadratic`` spacing puts more evaluations at small t, where fine detail is decided.
    Duplicates (possible when n_steps is close to t_start) are removed.
    """
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    t_start = int(min(max(t_start, 1), T - 1))
    u = np.linspace(1.0, 0.0, n_steps, endpoint=False)  # 1 … 1/n
    if kind == "quadratic":
        ts = t_start * u**2
    elif kind == "linear":
        ts = t_start * u
    else:
        raise ValueError(f"unknown spacing {kind!r}")
    ts = np.unique(np.round(ts).astype(np.int64))[::-1]
    return ts[ts >= 0]
