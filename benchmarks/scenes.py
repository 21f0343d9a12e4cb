"""Benchmark scenes: Samson and Jasper Ridge from ../shared/data (as shipped or with noise).

Read directly with GDAL and csv so the benchmark does not depend on the plugin's own I/O
(which it also judges). Returns Y (B, H, W) reflectance, E (B, P), A_ref (P, H, W), names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("URDM_SHARED_DATA", ROOT.parent / "shared" / "data"))


@dataclass
class RealScene:
    name: str
    Y: np.ndarray
    E: np.ndarray
    A: np.ndarray
    names: list
    wavelengths_nm: np.ndarray


def _read_cube(path: Path) -> np.ndarray:
    from urdm_plugin.core.io.image import read_image

    return read_image(path)[0].astype(np.float64)


def _read_csv(path: Path):
    from urdm_plugin.core.io.library import read_library

    lib = read_library(path)
    return lib.wavelengths_nm, lib.spectra, list(lib.names)


def load(name: str) -> RealScene:
    """'samson' or 'jasper_ridge' as shipped."""
    folder = SHARED_DATA / name
    if name == "samson":
        Y = _read_cube(folder / "samson.img")
    else:
        Y = _read_cube(folder / "jasper_ridge.tif")
    wl, E, names = _read_csv(folder / f"{name}_endmembers.csv")
    A = _read_cube(folder / f"{name}_gt_abundances.tif")
    return RealScene(name, Y, E, A, names, wl)


def available() -> bool:
    return (SHARED_DATA / "samson").is_dir() and (SHARED_DATA / "jasper_ridge").is_dir()


def with_noise(Y: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """White Gaussian noise at SNR = 10·log10(mean(Y²)/σ²) (seeded)."""
    from urdm_plugin.core.synthetic import add_noise

    return add_noise(Y, snr_db, np.random.default_rng(seed))[0]


# ------------------------------------------------------------------ semi-synthetic scenes
#: Noise kinds of the semi-synthetic benchmark (see :func:`semisynthetic`).
NOISE_KINDS = ("white", "band", "variability", "shape", "signal")
#: Amplitude of the smooth spectral-shape variability of the "shape" kind (±4 %).
SHAPE_AMPLITUDE = 0.04


def shape_curves(P: int, wavelengths_nm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth random spectral curves (P, B) with max |g| = 1: low-order cosine series."""
    x = (np.asarray(wavelengths_nm, np.float64) - np.min(wavelengths_nm)) / max(np.ptp(wavelengths_nm), 1.0)
    k = np.arange(1, 4)
    c = rng.standard_normal((P, k.size)) / k
    ph = rng.uniform(0, 2 * np.pi, (P, k.size))
    g = np.einsum("pk,pkb->pb", c, np.cos(np.pi * k[None, :, None] * x[None, None, :] + ph[..., None]))
    return g / np.abs(g).max(axis=1, keepdims=True)


def signal_noise_sigma(clean: np.ndarray, wavelengths_nm: np.ndarray, snr_db: float) -> np.ndarray:
    """Per-entry σ (B, H, W) of signal-dependent noise: σ ∝ √signal (shot noise) and ×2 in
    the SWIR (beyond 1000 nm, where detectors are noisier), scaled so that the noise power
    matches ``snr_db`` like the white kinds (10·log10(mean(EA)²/mean σ²))."""
    shape = np.sqrt(np.clip(clean, 1e-6, None))
    shape = shape * np.where(np.asarray(wavelengths_nm) > 1000.0, 2.0, 1.0)[:, None, None]
    target = np.mean(clean * clean) / 10 ** (snr_db / 10)
    return shape * np.sqrt(target / np.mean(shape * shape))


def band_noise_profile(n_bands: int) -> np.ndarray:
    """Relative per-band noise σ (B,), mean square 1, max/min = 5.

    Low at the centre of the range and high at both ends, like a detector's
    signal-to-noise curve (a smooth bump in log σ).
    """
    x = np.linspace(-1.0, 1.0, n_bands)
    prof = 5.0 ** (x * x)  # 1 in the middle, 5 at both ends
    return prof / np.sqrt(np.mean(prof * prof))


def variability_factors(P: int, h: int, w: int, rng: np.random.Generator,
                        low: float = 0.8, high: float = 1.2, length_px: float = 12.0) -> np.ndarray:
    """Smooth random scale factors (P, h, w) in [low, high]: one field per endmember."""
    from urdm_plugin.core.synthetic import gaussian_field

    f = gaussian_field(P, h, w, length_px, rng)  # zero mean, unit variance per map
    f = np.tanh(f / 1.5)  # in (−1, 1), most mass well inside
    return 0.5 * (low + high) + 0.5 * (high - low) * f


def truth_maps(A: np.ndarray) -> np.ndarray:
    """Reference maps made a valid truth: clipped at 0, renormalised to sum to one."""
    A = np.clip(np.asarray(A, np.float64), 0.0, None)
    s = A.sum(axis=0, keepdims=True)
    return np.where(s > 0, A / np.where(s > 0, s, 1.0), 1.0 / A.shape[0])


def semisynthetic(scene: RealScene, snr_db: float, seed: int, kind: str = "white"):
    """Real spatial structure with exact truth: the reference maps re-mixed linearly.

    Returns (Y (B, H, W), A_true (P, H, W)). ``kind``:
    - "white": Y = E·A + white Gaussian noise at ``snr_db`` (10·log10(mean(EA)²/σ²));
    - "band": the same noise power, but σ varies ×5 across bands (:func:`band_noise_profile`);
    - "variability": each pixel's endmembers scaled by smooth random factors in [0.8, 1.2]
      (one field per endmember; the library given to the methods is unchanged), plus white
      noise. The truth is still A;
    - "shape": the same brightness variability and a smooth spectral-shape change of
      ±4 % per endmember and pixel (E_p·(1 + 0.04·c_pn·g_p), c a smooth field in (−1, 1),
      g_p a smooth random curve over wavelength), plus white noise;
    - "signal": no variability; signal-dependent noise, σ ∝ √signal and ×2 beyond 1000 nm
      (:func:`signal_noise_sigma`).
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}")
    rng = np.random.default_rng(seed)
    A = truth_maps(scene.A)
    P, H, W = A.shape
    E = scene.E
    if kind in ("variability", "shape"):
        s = variability_factors(P, H, W, rng)
        clean = np.einsum("bp,phw->bhw", E, A * s)
        if kind == "shape":
            g = shape_curves(P, scene.wavelengths_nm, rng)  # (P, B)
            c = variability_factors(P, H, W, rng, -1.0, 1.0)
            clean += SHAPE_AMPLITUDE * np.einsum("bp,pb,phw->bhw", E, g, c * A * s)
    else:
        clean = np.einsum("bp,phw->bhw", E, A)
    if not np.isfinite(snr_db):
        return clean, A
    if kind == "signal":
        return clean + signal_noise_sigma(clean, scene.wavelengths_nm, snr_db) * rng.standard_normal(clean.shape), A
    sigma = float(np.sqrt(np.mean(clean * clean) / 10 ** (snr_db / 10)))
    prof = band_noise_profile(E.shape[0]) if kind == "band" else np.ones(E.shape[0])
    Y = clean + sigma * prof[:, None, None] * rng.standard_normal(clean.shape)
    return Y, A
