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

λ = "auto": the penalty ρ_t = λ·σ̂²/σ̄_t² is set from the scene through σ̂, its white-noise
level (``core.noise.estimate_noise_sigma``: spatial differences of the FCLS residual, so
smooth model mismatch is not counted as noise), and λ itself follows the scene's estimated
SNR (:func:`auto_lambda`), a rule fitted on synthetic scenes only
(``benchmarks/tune_urdm.py``; never on the benchmark scenes).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from . import solvers
from .errors import Cancelled, MethodUnavailableError, OptionError
from .noise import estimate_noise_sigma
from .prior import schedule


@dataclass(frozen=True)
class QualityPreset:
    nfe: int  # network evaluations per chain
    t_start: int  # first timestep (the FCLS warm start is noised to this level)
    inner: int  # ADMM sweeps (data + projection + duals) per network evaluation


PRESETS = {
    # Measured (benchmarks/bench_urdm.py): beyond ~20 evaluations accuracy no longer improves,
    # and quadratic spacing beats linear at every budget.
    "fast": QualityPreset(nfe=10, t_start=200, inner=2),
    "balanced": QualityPreset(nfe=15, t_start=250, inner=2),
    "best": QualityPreset(nfe=20, t_start=250, inner=3),
}
DEFAULT_QUALITY = "balanced"
LAMBDA_AUTO = 0.3  # λ at 20 dB SNR; chosen on synthetic scenes (benchmarks/tune_urdm.py)
LAMBDA_SNR_SLOPE_DB = 40.0  # λ grows ×10 per 40 dB of SNR (fitted on the same synthetic scenes)
LAMBDA_RANGE = (0.05, 5.0)


def auto_lambda(sigma_n: float, signal_rms: float) -> float:
    """λ from the scene's SNR = 20·log10(signal RMS / σ̂): LAMBDA_AUTO at 20 dB, rising with SNR.

    Measured on synthetic scenes, the best λ grows with SNR (≈0.3 at 20 dB, 0.5 at 30 dB, 1 at
    40 dB): a clean scene can lean harder on the prior, because the prior's own error then
    dominates what the data can still correct.
    """
    snr_db = 20.0 * math.log10(max(signal_rms, 1e-12) / max(sigma_n, 1e-12))
    lam = LAMBDA_AUTO * 10.0 ** ((snr_db - 20.0) / LAMBDA_SNR_SLOPE_DB)
    return float(min(max(lam, LAMBDA_RANGE[0]), LAMBDA_RANGE[1]))

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



# ------------------------------------------------------------------ building blocks
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def coordinate_noise(seed: int, step: int, chains: int, P: int, row0: int, col0: int, h: int, w: int) -> np.ndarray:
    """Standard normal noise (chains, P, h, w) that depends only on the *global* pixel position.

    Overlapping tiles of one image therefore draw identical noise where they overlap, so a
    tiled run blends seamlessly into what the untiled run would give (counter-based
    splitmix64 hashing + Box–Muller; independent of any global random state).
    """
    with np.errstate(over="ignore"):
        k = np.arange(chains, dtype=np.uint64)[:, None, None, None]
        p = np.arange(P, dtype=np.uint64)[None, :, None, None]
        r = (np.arange(h, dtype=np.uint64) + np.uint64(row0))[None, None, :, None]
        c = (np.arange(w, dtype=np.uint64) + np.uint64(col0))[None, None, None, :]
        base = _splitmix(np.uint64(seed) * np.uint64(1_000_003) + np.uint64(step))
        key = _splitmix(base ^ _splitmix(k * np.uint64(1 << 40) + p * np.uint64(1 << 32)))
        x = _splitmix(key ^ (r * np.uint64(1 << 21) + c))
        y = _splitmix(x)
    u1 = ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    u2 = ((y >> np.uint64(11)).astype(np.float64)) / float(1 << 53)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)


def data_step(G, EtY, Z, U, V, W, rho: float, mu: float, valid=None):
    """A = (G + (ρ+μ)I)⁻¹ (EᵀY + ρ(Z − U) + μ(V − W)); one P × P inverse for all pixels.

    G (P, P) = EᵀE; EtY, Z, U, V, W (..., P, N) torch tensors. Pixels with ``valid`` False
    have no data term: A = (ρ(Z − U) + μ(V − W)) / (ρ + μ).
    """
    torch = _torch()
    P = G.shape[0]
    rhs = EtY + rho * (Z - U) + mu * (V - W)
    A = torch.linalg.inv(G + (rho + mu) * torch.eye(P, dtype=G.dtype, device=G.device)) @ rhs
    if valid is not None and not bool(valid.all()):
        A[..., ~valid] = rhs[..., ~valid] / (rho + mu)
    return A


def tv_denoise(X, weight: float, iters: int = 30):
    """Anisotropic-TV (ROF) denoising of maps X (n, h, w): argmin ½‖z − x‖² + weight·TV(z).

    Chambolle–Pock on the dual; used only by the ablation that puts a TV term where the
    diffusion prior stood.
    """
    torch = _torch()
    if weight <= 0:
        return X
    px = torch.zeros_like(X)
    py = torch.zeros_like(X)
    tau = 0.125  # ≤ 1/‖∇‖² = 1/8 in 2-D
    for _ in range(iters):
        z = X - weight * _grad_adjoint(px, py)
        gx = torch.zeros_like(z)
        gy = torch.zeros_like(z)
        gx[..., :, :-1] = z[..., :, 1:] - z[..., :, :-1]
        gy[..., :-1, :] = z[..., 1:, :] - z[..., :-1, :]
        px = torch.clamp(px + tau / weight * gx, -1.0, 1.0)
        py = torch.clamp(py + tau / weight * gy, -1.0, 1.0)
    return X - weight * _grad_adjoint(px, py)


def _grad_adjoint(px, py):
    torch = _torch()
    d = torch.zeros_like(px)
    d[..., :, 0] = px[..., :, 0]
    d[..., :, 1:-1] = px[..., :, 1:-1] - px[..., :, :-2]
    d[..., :, -1] = -px[..., :, -2]
    d[..., 0, :] += py[..., 0, :]
    d[..., 1:-1, :] += py[..., 1:-1, :] - py[..., :-2, :]
    d[..., -1, :] += -py[..., -2, :]
    return -d  # ∇ᵀp: the adjoint of the forward difference (minus the divergence)


# ------------------------------------------------------------------ the sampler
def _sweep(Yf, E, A0, valid, h, w, *, lam, sigma_n, preset: QualityPreset, zeta, samples, seed,
           device, model, origin=(0, 0), prior="ddpm", tv_weight=0.0, prior_dual=True,
           progress=None, cancel=None, progress_span=(0.0, 1.0)):
    """Run ``samples`` chains of the splitting; returns (V mean (P,N), V std (P,N) | None, info).

    ``prior``: "ddpm" (the diffusion prior step), "none" (ablation: Z is the current
    estimate, i.e. plain constrained least squares by ADMM) or "tv" (ablation: Z is a TV
    denoising of the current estimate with ``tv_weight``).
    """
    torch = _torch()
    P, N = A0.shape
    dt = torch.float32
    abar_all = schedule.alphas_cumprod()
    ts = schedule.sampling_timesteps(preset.t_start, preset.nfe)
    K = int(samples)

    Et = torch.as_tensor(E, dtype=dt, device=device)
    G = Et.T @ Et
    valid_t = torch.as_tensor(valid, device=device)
    EtY = torch.zeros((P, N), dtype=dt, device=device)
    EtY[:, valid_t] = Et.T @ torch.as_tensor(Yf[:, valid], dtype=dt, device=device)

    A = torch.as_tensor(A0, dtype=dt, device=device).repeat(K, 1, 1)  # (K, P, N): chains × maps
    V = A.clone()
    U = torch.zeros_like(A)
    W = torch.zeros_like(A)
    Z = A.clone()
    eps_hat = None
    rho_prev = mu_prev = None
    rho = 0.0
    lo, hi = progress_span

    with torch.inference_mode():
        for i, t in enumerate(ts):
            if cancel is not None and cancel():
                raise Cancelled()
            ab = float(abar_all[t])
            sab, s1ab = math.sqrt(ab), math.sqrt(1.0 - ab)
            sbar = 0.5 * s1ab / sab  # σ̄_t on the [0, 1] abundance scale
            rho = lam * sigma_n**2 / sbar**2
            mu = rho + 1e-2 * float(torch.trace(G)) / P
            if rho_prev is not None:  # scaled duals follow their penalties
                U *= rho_prev / rho
                W *= mu_prev / mu
            rho_prev, mu_prev = rho, mu

            # 1. prior step
            xt = None
            if prior == "ddpm":
                x0 = 2.0 * V - 1.0
                noise = torch.from_numpy(coordinate_noise(seed, i, K, P, origin[0], origin[1], h, w))
                noise = noise.reshape(K, P, N).to(device)
                if eps_hat is not None and zeta < 1.0:
                    noise = math.sqrt(zeta) * noise + math.sqrt(1.0 - zeta) * eps_hat
                xt = sab * x0 + s1ab * noise
                img = _pad_to_multiple(xt.reshape(K * P, 1, h, w))
                eps = model(img, torch.full((K * P,), int(t), device=device, dtype=torch.long))
                eps = eps[..., :h, :w].reshape(K, P, N)
                Z = 0.5 * (((xt - s1ab * eps) / sab).clamp(-1.0, 1.0) + 1.0)
                if cancel is not None and cancel():  # the network call is the slow part
                    raise Cancelled()
            elif prior == "tv":
                Z = tv_denoise(V.reshape(K * P, h, w), tv_weight / max(rho, 1e-12)).reshape(K, P, N)
            else:
                Z = V.clone()

            # 2.–4. data step, simplex projection, dual updates
            for _ in range(preset.inner):
                A = data_step(G, EtY, Z, U, V, W, rho, mu, valid_t)
                V = project_simplex_torch((A + W).permute(1, 0, 2).reshape(P, K * N)).reshape(P, K, N).permute(1, 0, 2)
                W += A - V
            if prior_dual:
                U += A - Z
            if xt is not None and zeta < 1.0:
                eps_hat = (xt - sab * (2.0 * V - 1.0)) / s1ab
            if progress is not None:
                progress(lo + (hi - lo) * (i + 1) / len(ts), f"URDM step {i + 1}/{len(ts)} (t={int(t)})")

    # Polish: the exact minimiser of ½‖y − Ea‖² + ρ/2‖a − z‖² on the simplex, per pixel
    # (FCLS on the ρ-augmented system), so the returned maps are feasible and data-consistent.
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


def urdm_unmix(Y, E, valid=None, lam="auto", quality: str = DEFAULT_QUALITY, seed: int = 0,
               device: str = "auto", samples: int = 1, nfe: int | None = None,
               t_start: int | None = None, zeta: float = 1.0, sigma_n: float | None = None,
               signal_rms: float | None = None, origin=(0, 0), prior: str = "ddpm",
               tv_weight: float = 0.0, weights_dir=None,
               progress=None, cancel=None, **_ignored):
    """Unmix one image tile with URDM.

    Y: (B, h, w) reflectance; E: (B, P) endmembers on the same bands; valid: (h, w) bool or
    None (all valid). Returns (A (P, h, w) float32 on the simplex, std (P, h, w) float32 or
    None when one chain ran, info dict with λ, σ̂, timesteps).
    ``sigma_n`` / ``signal_rms`` (reflectance): the scene's noise level and signal RMS, estimated
    from this tile when not given (the pipeline passes scene-wide values so tiles agree).
    ``origin`` (row, col) is the tile's position in the whole image: the sampling noise is keyed
    to global pixel coordinates, so overlapping tiles agree. Deterministic for a given seed
    (counter-based noise; no global random state is read or changed).
    """
    if quality not in PRESETS:
        raise OptionError(f"Unknown quality '{quality}'", f"Use one of: {', '.join(PRESETS)}.")
    base = PRESETS[quality]
    preset = QualityPreset(nfe=int(nfe or base.nfe), t_start=int(t_start or base.t_start), inner=base.inner)
    samples = 1 if samples is None else int(samples)
    if preset.nfe < 1 or not (1 <= preset.t_start < schedule.T):
        raise OptionError("URDM needs at least one network evaluation and 1 ≤ t_start < 1000",
                          "Use the quality presets or valid nfe/t_start values.")
    if samples < 1:
        raise OptionError(f"samples must be at least 1, not {samples}", "Use 1, or e.g. 8 for an uncertainty map.")
    if prior not in ("ddpm", "none", "tv"):
        raise OptionError(f"Unknown prior '{prior}'", "Use ddpm (URDM), or none/tv for ablations.")
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
    model = get_model(dev, weights_dir) if prior == "ddpm" else None

    A0 = np.empty((P, h * w))
    A0[:, v] = solvers.fcls(Yf[:, v], E)
    A0[:, ~v] = A0[:, v].mean(axis=1, keepdims=True)  # neutral fill so the prior sees no holes
    if P == 1:
        return np.ones((1, h, w), np.float32), None, {"lam": None, "sigma_n": None}
    if sigma_n is None:
        sigma_n = estimate_noise_sigma(Y, E, valid=v.reshape(h, w))
    sigma_n = max(float(sigma_n), 1e-6)

    info = {"sigma_n": sigma_n, "quality": quality, "nfe": preset.nfe, "t_start": preset.t_start,
            "samples": samples, "zeta": zeta, "device": str(dev), "prior": prior}
    if lam == "auto" or lam is None or (isinstance(lam, (int, float)) and lam <= 0):
        if signal_rms is None:
            signal_rms = float(np.sqrt(np.mean(np.square(Yf[:, v]))))
        lam_val = auto_lambda(sigma_n, signal_rms)
        info["lambda_rule"] = "auto: from the scene's SNR (white-noise sigma_hat vs signal RMS)"
        info["snr_db_estimated"] = 20.0 * math.log10(max(signal_rms, 1e-12) / sigma_n)
    else:
        lam_val = float(lam)
        info["lambda_rule"] = "given"
    span = (0.0, 1.0)
    info["lam"] = lam_val
    mean, std, extra = _sweep(Yf, E, A0, v, h, w, lam=lam_val, sigma_n=sigma_n, preset=preset, zeta=zeta,
                              samples=samples, seed=seed, device=dev, model=model, origin=origin,
                              prior=prior, tv_weight=tv_weight, progress=progress, cancel=cancel,
                              progress_span=span)
    info.update(extra)
    mean[:, ~v] = np.nan
    A = mean.reshape(P, h, w).astype(np.float32)
    if std is not None:
        std[:, ~v] = np.nan
        std = std.reshape(P, h, w).astype(np.float32)
    return A, std, info
