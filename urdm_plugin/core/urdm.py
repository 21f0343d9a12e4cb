"""URDM: unmixing regularised by a diffusion model (after IEEE TIP 2025, doi 10.1109/TIP.2025.3638151).

The paper's abstract fixes the ingredients — a variational unmixing objective, a DDPM prior
brought in during diffusion sampling, a splitting that decouples the objective — but not
its equations; this module implements the scheme specified in the project's design notes:

    min_A ½‖Y − EA‖²_F + λ·R_θ(A) + ι_Δ(A)          Y (B × N), E (B × P), A (P × N)

split with Z = A (prior copy) and V = A (simplex copy), swept along a descending timestep
schedule t_K > … > t_1 started from the FCLS solution at an intermediate timestep:

1. prior step: x_t = √ᾱ_t·s(Â) + √(1−ᾱ_t)·ε, Tweedie x̂₀ = (x_t − √(1−ᾱ_t)·ε_θ(x_t, t))/√ᾱ_t,
   Z = s⁻¹(x̂₀), with s(a) = 2a − 1 mapping abundances to the network's [−1, 1]
   (the denoiser-as-prior step of DiffPIR, Zhu et al. 2023);
2. data step: A = (EᵀE + (ρ_t+μ_t)I)⁻¹ (EᵀY + ρ_t(Z − U) + μ_t(V − W)) — one P × P solve
   shared by all pixels, ρ_t = λ·σ_n²/σ̄_t² with σ̄_t = √(1−ᾱ_t)/√ᾱ_t measured on the
   [0, 1] abundance scale (half the network's) and σ_n the noise level;
3. constraint step: V = Π_Δ(A + W), the exact per-pixel projection on the simplex;
4. scaled dual updates U += A − Z, W += A − V; then re-noise for the next timestep with
   √ζ·fresh + √(1−ζ)·predicted noise (ζ = 1: fresh noise, best in our measurements).

The result is the feasible copy V, polished at the end by an exact constrained solve of
the last data + prior subproblem (FCLS on the ρ-augmented system). With ``samples`` > 1,
several chains run as one batch; their mean is returned (a posterior-mean estimate, still
feasible) and their per-pixel standard deviation is the uncertainty map.

λ = "auto": the penalty ρ_t = λ·σ̂²/σ̄_t² is set from the scene through σ̂, the FCLS
residual level (white noise *and* model mismatch, :func:`residual_sigma`), with
λ = ``LAMBDA_AUTO`` chosen on synthetic scenes only (never on benchmark scenes).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from . import solvers
from .errors import Cancelled, MethodUnavailableError, OptionError
from .prior import schedule


@dataclass(frozen=True)
class QualityPreset:
    nfe: int  # network evaluations per chain
    t_start: int  # first timestep (the FCLS warm start is noised to this level)
    inner: int  # ADMM sweeps (data + projection + duals) per network evaluation
    samples: int  # chains averaged (posterior mean)


PRESETS = {
    "fast": QualityPreset(nfe=10, t_start=200, inner=2, samples=1),
    "balanced": QualityPreset(nfe=20, t_start=250, inner=3, samples=2),
    "best": QualityPreset(nfe=40, t_start=300, inner=3, samples=4),
}
DEFAULT_QUALITY = "balanced"
LAMBDA_AUTO = 0.15  # chosen on synthetic scenes (benchmarks/tune_urdm.py)

_model_lock = threading.Lock()
_models: dict = {}
_threads_configured = False


# ------------------------------------------------------------------ torch plumbing
def _torch():
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
    torch = _torch()
    if n:
        torch.set_num_threads(int(n))
    if not _threads_configured:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or parallel work started: keep what is there
            pass
        _threads_configured = True


def resolve_device(device: str = "auto"):
    torch = _torch()
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
    from .prior.weights import WEIGHTS_DIR, load_prior

    key = (str(device), str(weights_dir or WEIGHTS_DIR))
    with _model_lock:
        if key not in _models:
            _models[key] = load_prior(weights_dir or WEIGHTS_DIR, device=device)[0]
        return _models[key]


def _pad_to_multiple(x, m: int = 4):
    """Reflect-pad (n, 1, h, w) to multiples of m (at least 8 px per side for the UNet)."""
    torch = _torch()
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


def project_simplex_torch(X):
    """Euclidean projection of each column of X (P × N) onto the simplex (torch, sort-based)."""
    torch = _torch()
    P = X.shape[0]
    U, _ = torch.sort(X, dim=0, descending=True)
    css = torch.cumsum(U, dim=0) - 1.0
    k = torch.arange(1, P + 1, device=X.device, dtype=X.dtype)[:, None]
    cond = (U - css / k) > 0
    rho = P - 1 - torch.argmax(cond.flip(0).to(torch.uint8), dim=0)
    theta = css.gather(0, rho[None]) / (rho[None].to(X.dtype) + 1.0)
    return torch.clamp(X - theta, min=0.0)


# ------------------------------------------------------------------ the sampler
def _sweep(Yf, E, A0, valid, h, w, *, lam, sigma_n, preset: QualityPreset, zeta, samples, seed,
           device, model, progress=None, cancel=None, progress_span=(0.0, 1.0), prior_dual=True):
    """Run ``samples`` chains of the splitting; returns (V mean (P,N), V std (P,N) | None, info)."""
    torch = _torch()
    P, N = A0.shape
    dt = torch.float32
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    abar_all = schedule.alphas_cumprod()
    ts = schedule.sampling_timesteps(preset.t_start, preset.nfe)

    Et = torch.as_tensor(E, dtype=dt, device=device)
    G = Et.T @ Et
    valid_t = torch.as_tensor(valid, device=device)
    EtY = torch.zeros((P, N), dtype=dt, device=device)
    EtY[:, valid_t] = Et.T @ torch.as_tensor(Yf[:, valid], dtype=dt, device=device)
    eye = torch.eye(P, dtype=dt, device=device)
    K = int(samples)

    # chains × P maps, all as one batch through the network
    A = torch.as_tensor(A0, dtype=dt, device=device).repeat(K, 1, 1)  # (K, P, N)
    V = A.clone()
    U = torch.zeros_like(A)
    W = torch.zeros_like(A)
    eps_hat = None
    rho_prev = None
    lo, hi = progress_span

    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=dt).to(device)

    with torch.inference_mode():
        for i, t in enumerate(ts):
            if cancel is not None and cancel():
                raise Cancelled()
            ab = float(abar_all[t])
            sab, s1ab = math.sqrt(ab), math.sqrt(1.0 - ab)
            x0 = 2.0 * V - 1.0
            noise = randn(x0.shape)
            if eps_hat is not None and zeta < 1.0:
                noise = math.sqrt(zeta) * noise + math.sqrt(1.0 - zeta) * eps_hat
            xt = sab * x0 + s1ab * noise
            img = _pad_to_multiple(xt.reshape(K * P, 1, h, w))
            eps = model(img, torch.full((K * P,), int(t), device=device, dtype=torch.long))
            eps = eps[..., :h, :w].reshape(K, P, N)
            x0_pred = ((xt - s1ab * eps) / sab).clamp(-1.0, 1.0)
            Z = 0.5 * (x0_pred + 1.0)

            sbar = 0.5 * s1ab / sab  # σ̄_t on the [0, 1] abundance scale
            rho = lam * sigma_n**2 / sbar**2
            mu = rho + 1e-2 * float(torch.trace(G)) / P
            if rho_prev is not None:  # scaled duals follow the penalty
                U *= rho_prev / rho
            rho_prev = rho
            Minv = torch.linalg.inv(G + (rho + mu) * eye)
            for _ in range(preset.inner):
                rhs = EtY + rho * (Z - U) + mu * (V - W)
                A = Minv @ rhs
                if not bool(valid_t.all()):  # nodata pixels: no data term
                    A[:, :, ~valid_t] = (rhs[:, :, ~valid_t]) / (rho + mu)
                V = project_simplex_torch((A + W).permute(1, 0, 2).reshape(P, K * N)).reshape(P, K, N).permute(1, 0, 2)
                W += A - V
            if prior_dual:
                U += A - Z
            if zeta < 1.0:
                eps_hat = (xt - sab * (2.0 * V - 1.0)) / s1ab
            if progress is not None:
                progress(lo + (hi - lo) * (i + 1) / len(ts), f"URDM step {i + 1}/{len(ts)} (t={int(t)})")

    # Polish: the exact minimiser of ½‖y − Ea‖² + ρ/2‖a − z‖² on the simplex, per pixel.
    Zn = Z.cpu().numpy().astype(np.float64)
    Vn = V.cpu().numpy().astype(np.float64)
    root = math.sqrt(max(rho, 1e-12))
    out = np.empty_like(Vn)
    Eaug = np.vstack([E, root * np.eye(P)])
    for k in range(K):
        Yaug = np.vstack([Yf, root * Zn[k]])
        out[k][:, valid] = solvers.fcls(Yaug[:, valid], Eaug)
        out[k][:, ~valid] = Vn[k][:, ~valid]
    mean = out.mean(axis=0)
    std = out.std(axis=0) if K > 1 else None
    return mean, std, {"timesteps": [int(t) for t in ts], "final_rho": float(rho)}


def residual_sigma(Yf, E, A0, valid) -> float:
    """σ̂ (reflectance units) from the FCLS residual, corrected for the P − 1 fitted dimensions.

    It counts model mismatch (endmember variability, nonlinear mixing) as noise on purpose:
    the data step should trust the fit only as far as the linear model explains the scene.
    """
    B, P = E.shape
    R = Yf[:, valid] - E @ A0[:, valid]
    return float(np.sqrt(np.sum(R * R) / max(R.shape[1] * (B - P + 1), 1)))


def urdm_unmix(Y, E, valid=None, lam="auto", quality: str = DEFAULT_QUALITY, seed: int = 0,
               device: str = "auto", samples: int | None = None, nfe: int | None = None,
               t_start: int | None = None, zeta: float = 1.0, sigma_n: float | None = None,
               weights_dir=None, progress=None, cancel=None):
    """Unmix one image tile with URDM.

    Y: (B, h, w) reflectance; E: (B, P) endmembers on the same bands; valid: (h, w) bool or
    None (all valid). Returns (A (P, h, w) float32 on the simplex, std (P, h, w) float32 or
    None when one chain ran, info dict with λ, σ̂, timesteps).
    Deterministic for a given seed on the CPU (a private torch.Generator, never the global seed).
    """
    if quality not in PRESETS:
        raise OptionError(f"Unknown quality '{quality}'", f"Use one of: {', '.join(PRESETS)}.")
    base = PRESETS[quality]
    preset = QualityPreset(nfe=int(nfe or base.nfe), t_start=int(t_start or base.t_start),
                           inner=base.inner, samples=int(samples or base.samples))
    if preset.nfe < 1 or not (1 <= preset.t_start < schedule.T):
        raise OptionError("URDM needs at least one network evaluation and 1 ≤ t_start < 1000",
                          "Use the quality presets or valid nfe/t_start values.")
    if not (0.0 <= zeta <= 1.0):
        raise OptionError(f"zeta must lie in [0, 1], not {zeta}", "Use 1 (fresh noise) unless experimenting.")
    Y = np.asarray(Y, np.float64)
    E = np.asarray(E, np.float64)
    if Y.ndim != 3:
        raise OptionError("URDM needs an image (bands × rows × columns), not a list of pixels",
                          "Pass Y with shape (B, H, W).")
    B, h, w = Y.shape
    P = E.shape[1]
    Yf = Y.reshape(B, h * w)
    v = np.ones(h * w, bool) if valid is None else np.asarray(valid, bool).reshape(-1).copy()
    v &= np.isfinite(Yf).all(axis=0)
    if not v.any():
        A = np.full((P, h, w), np.nan, np.float32)
        return A, None, {"lam": None, "sigma_n": None}
    Yf = np.where(np.isfinite(Yf), Yf, 0.0)

    configure_threads()
    dev = resolve_device(device)
    model = get_model(dev, weights_dir)

    A0 = np.empty((P, h * w))
    A0[:, v] = solvers.fcls(Yf[:, v], E)
    A0[:, ~v] = A0[:, v].mean(axis=1, keepdims=True)  # neutral fill so the prior sees no holes
    if P == 1:
        return np.ones((1, h, w), np.float32), None, {"lam": None, "sigma_n": None}
    if sigma_n is None:
        sigma_n = residual_sigma(Yf, E, A0, v)
    sigma_n = max(float(sigma_n), 1e-6)

    info = {"sigma_n": sigma_n, "quality": quality, "nfe": preset.nfe, "t_start": preset.t_start,
            "samples": preset.samples, "zeta": zeta, "device": str(dev)}
    if lam == "auto" or lam is None or (isinstance(lam, (int, float)) and lam <= 0):
        lam_val = LAMBDA_AUTO
        info["lambda_rule"] = "auto: rho_t = LAMBDA_AUTO * sigma_hat^2 / sigma_bar_t^2, sigma_hat from the FCLS residual"
    else:
        lam_val = float(lam)
        info["lambda_rule"] = "given"
    span = (0.0, 1.0)
    info["lam"] = lam_val
    mean, std, extra = _sweep(Yf, E, A0, v, h, w, lam=lam_val, sigma_n=sigma_n, preset=preset, zeta=zeta,
                              samples=preset.samples, seed=seed, device=dev, model=model,
                              progress=progress, cancel=cancel, progress_span=span)
    info.update(extra)
    mean[:, ~v] = np.nan
    A = mean.reshape(P, h, w).astype(np.float32)
    if std is not None:
        std[:, ~v] = np.nan
        std = std.reshape(P, h, w).astype(np.float32)
    return A, std, info
