"""Synthetic abundance maps and hyperspectral scenes with known truth.

One generator serves three users, each with its own seed range so they never overlap:

* prior training (``core.diffusion.train``): seeds ``TRAIN_SEED_BASE + k``;
* the benchmark and tests: seeds ``>= BENCHMARK_SEED_BASE``;
* the built-in demo: ``DEMO_SEED``.

Abundance maps are (P, H, W) float32 arrays on the simplex (every pixel non-negative and
summing to one). They mix the structures real scenes have: smooth multi-scale fields,
piecewise regions with soft boundaries, pure patches, thin linear features (roads,
rivers, 1–3 px wide) and pixel-scale texture. Only numpy is used so the module runs in any
QGIS Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRAIN_SEED_BASE = 0
BENCHMARK_SEED_BASE = 1_000_000
DEMO_SEED = 2_000_000

MAP_KINDS = ("fields", "regions", "patches", "mixed")


# ---------------------------------------------------------------------------- fields
def _radial_frequency(h: int, w: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fy * fy + fx * fx)


def gaussian_field(n: int, h: int, w: int, length_px: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` stationary Gaussian random fields of shape (n, h, w), unit variance.

    ``length_px`` is the correlation length in pixels (Gaussian spectral filter).
    """
    white = rng.standard_normal((n, h, w))
    f = _radial_frequency(h, w)
    filt = np.exp(-2.0 * (np.pi * f * length_px) ** 2)
    out = np.fft.irfft2(np.fft.rfft2(white) * filt, s=(h, w))
    out -= out.mean(axis=(1, 2), keepdims=True)
    std = out.std(axis=(1, 2), keepdims=True)
    return out / np.maximum(std, 1e-12)


def multiscale_field(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of Gaussian fields at random length scales (2 px to ~the map size), (n, h, w)."""
    size = max(h, w)
    scales = np.exp(rng.uniform(np.log(1.5), np.log(max(2.0, size / 2.0)), size=3))
    weights = rng.dirichlet(np.ones(3)) ** 0.7
    total = sum(wt * gaussian_field(n, h, w, s, rng) for wt, s in zip(weights, scales))
    return total / np.maximum(total.std(axis=(1, 2), keepdims=True), 1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=0, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the last two axes via FFT (periodic), sigma in pixels."""
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    f = _radial_frequency(h, w)
    filt = np.exp(-2.0 * (np.pi * f * sigma) ** 2)
    return np.fft.irfft2(np.fft.rfft2(x) * filt, s=(h, w))


# ---------------------------------------------------------------------------- map kinds
def _fields_logits(p: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    sharp = np.exp(rng.uniform(np.log(0.7), np.log(8.0)))  # low: mixed pixels; high: near pure
    return sharp * multiscale_field(p, h, w, rng)


def _region_labels(p: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Voronoi-like regions with wobbly boundaries, (h, w) labels in [0, p)."""
    n_seeds = int(rng.integers(p, 4 * p + 3))
    sy = rng.uniform(0, h, n_seeds)
    sx = rng.uniform(0, w, n_seeds)
    lab = rng.integers(0, p, n_seeds)
    lab[: min(p, n_seeds)] = rng.permutation(p)[: min(p, n_seeds)]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    warp = max(h, w) * rng.uniform(0.0, 0.12)
    lw = rng.uniform(2.0, max(3.0, max(h, w) / 4))
    wy, wx = warp * gaussian_field(2, h, w, lw, rng)
    d = (yy[None] + wy - sy[:, None, None]) ** 2 + (xx[None] + wx - sx[:, None, None]) ** 2
    return lab[np.argmin(d, axis=0)]


def _regions_abundances(p: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    labels = _region_labels(p, h, w, rng)
    # Each region holds either a pure material or a Dirichlet mixture dominated by one.
    n_lab = p
    comp = np.empty((n_lab, p))
    for k in range(n_lab):
        if rng.random() < 0.6:
            comp[k] = np.eye(p)[k]
        else:
            alpha = np.full(p, rng.uniform(0.1, 0.6))
            alpha[k] += rng.uniform(1.0, 5.0)
            comp[k] = rng.dirichlet(alpha)
    a = comp[labels].transpose(2, 0, 1)  # (p, h, w)
    return _blur(a, rng.uniform(0.0, 1.8))


def _add_patches(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p, h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(p))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1.5, max(2.0, h / 5)), rng.uniform(1.5, max(2.0, w / 5))
        if rng.random() < 0.5:  # ellipse
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        else:  # rectangle (fields, buildings)
            m = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        soft = _blur(m[None].astype(np.float64), rng.uniform(0.0, 1.0))[0].clip(0, 1)
        a = a * (1 - soft) + np.eye(p)[k][:, None, None] * soft
    return a


def _add_lines(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thin linear features (roads: straight; rivers: meandering), 0.6–3 px wide."""
    p, h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(p))
        width = rng.uniform(0.6, 3.0)
        theta = rng.uniform(0, np.pi)
        c = rng.uniform(-0.3, 0.3) * max(h, w)
        # signed distance to a line through the centre, optionally bent by a smooth field
        d = (xx - w / 2) * np.sin(theta) - (yy - h / 2) * np.cos(theta) - c
        if rng.random() < 0.5:
            d = d + rng.uniform(0, 0.15) * max(h, w) * gaussian_field(1, h, w, max(h, w) / 3, rng)[0]
        cover = np.clip(width / 2 + 0.5 - np.abs(d), 0.0, 1.0)  # anti-aliased stripe
        purity = rng.uniform(0.7, 1.0)
        target = purity * np.eye(p)[k][:, None, None] + (1 - purity) * a
        a = a * (1 - cover) + target * cover
    return a


def abundance_maps(
    n_endmembers: int, height: int, width: int, rng: np.random.Generator, kind: str = "mixed"
) -> np.ndarray:
    """Random abundance maps, (P, H, W) float32, each pixel on the probability simplex.

    ``kind``: ``fields`` (multi-scale random fields through a softmax), ``regions``
    (piecewise regions with soft edges), ``patches`` (fields plus pure patches), or
    ``mixed`` (a random combination with linear features and pixel-scale texture).
    """
    p, h, w = int(n_endmembers), int(height), int(width)
    if p < 1 or h < 1 or w < 1:
        raise ValueError("need at least one endmember and one pixel")
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown map kind {kind!r}; use one of {MAP_KINDS}")
    if p == 1:
        return np.ones((1, h, w), np.float32)
    if kind == "mixed":
        kind = rng.choice(["fields", "regions", "patches"], p=[0.35, 0.4, 0.25])
        lines = rng.random() < 0.5
        texture = rng.random() < 0.6
    else:
        lines = texture = False
    if kind == "regions":
        a = _regions_abundances(p, h, w, rng)
    else:
        a = _softmax(_fields_logits(p, h, w, rng))
        if kind == "patches":
            a = _add_patches(a, rng)
    if lines:
        a = _add_lines(a, rng)
    if texture:  # pixel-scale texture: small multiplicative log-normal jitter
        a = a * np.exp(rng.uniform(0.02, 0.25) * rng.standard_normal(a.shape))
    a = np.clip(a, 0.0, None)
    a /= np.maximum(a.sum(axis=0, keepdims=True), 1e-12)
    return a.astype(np.float32)


# ---------------------------------------------------------------------------- spectra and scenes
def synthetic_spectra(
    n_spectra: int, wavelengths_nm: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Smooth, reflectance-like spectra (B, M) in [0.01, 0.95].

    A sloping continuum (sigmoid edges like vegetation's red edge) minus a few Gaussian
    absorption features: enough to make endmembers distinct but realistically correlated.
    """
    wl = np.asarray(wavelengths_nm, np.float64)
    lo, hi = wl.min(), wl.max()
    x = (wl - lo) / max(hi - lo, 1e-9)
    out = np.empty((wl.size, n_spectra))
    for m in range(n_spectra):
        base = rng.uniform(0.05, 0.5) + rng.uniform(-0.2, 0.3) * x
        for _ in range(int(rng.integers(0, 3))):  # edges
            c, s, hgt = rng.uniform(0.05, 0.9), rng.uniform(0.005, 0.05), rng.uniform(-0.3, 0.4)
            base = base + hgt / (1 + np.exp(-(x - c) / s))
        for _ in range(int(rng.integers(1, 6))):  # absorptions
            c, s, d = rng.uniform(0, 1), rng.uniform(0.01, 0.1), rng.uniform(0.02, 0.3)
            base = base * (1 - d * np.exp(-0.5 * ((x - c) / s) ** 2))
        out[:, m] = base
    return np.clip(out, 0.01, 0.95)


@dataclass
class Scene:
    """A synthetic hyperspectral scene with known truth.

    ``Y`` (B, H, W) observed reflectance, ``E`` (B, P) endmembers, ``A`` (P, H, W) true
    abundances, ``wavelengths_nm`` (B,), ``noise_sigma`` the per-entry noise standard
    deviation actually used (reflectance units), ``clean`` (B, H, W) the noise-free image.
    """

    Y: np.ndarray
    E: np.ndarray
    A: np.ndarray
    wavelengths_nm: np.ndarray
    names: list = field(default_factory=list)
    noise_sigma: float = 0.0
    snr_db: float = float("inf")
    clean: np.ndarray | None = None


def add_noise(Y: np.ndarray, snr_db: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """White Gaussian noise at ``snr_db`` = 10·log10(mean(Y²)/σ²). Returns (noisy, σ)."""
    if not np.isfinite(snr_db):
        return Y.copy(), 0.0
    sigma = float(np.sqrt(np.mean(np.square(Y, dtype=np.float64)) / 10 ** (snr_db / 10)))
    return Y + sigma * rng.standard_normal(Y.shape), sigma


def make_scene(
    height: int = 64,
    width: int = 64,
    n_endmembers: int = 4,
    snr_db: float = 30.0,
    seed: int = BENCHMARK_SEED_BASE,
    kind: str = "mixed",
    n_bands: int = 200,
    endmembers: np.ndarray | None = None,
    wavelengths_nm: np.ndarray | None = None,
) -> Scene:
    """A scene ``Y = E A + N`` with known truth (see :class:`Scene`).

    Pass ``endmembers`` (B, P) and ``wavelengths_nm`` to mix given spectra; otherwise smooth
    synthetic spectra on ``n_bands`` bands from 400 to 2500 nm are drawn.
    """
    rng = np.random.default_rng(seed)
    if endmembers is None:
        wl = np.linspace(400.0, 2500.0, n_bands) if wavelengths_nm is None else np.asarray(wavelengths_nm, float)
        E = synthetic_spectra(n_endmembers, wl, rng)
    else:
        E = np.asarray(endmembers, np.float64)
        n_endmembers = E.shape[1]
        wl = np.linspace(400.0, 2500.0, E.shape[0]) if wavelengths_nm is None else np.asarray(wavelengths_nm, float)
    A = abundance_maps(n_endmembers, height, width, rng, kind).astype(np.float64)
    clean = np.tensordot(E, A, axes=(1, 0))
    Y, sigma = add_noise(clean, snr_db, rng)
    names = [f"material_{i + 1}" for i in range(n_endmembers)]
    return Scene(Y=Y, E=E, A=A, wavelengths_nm=wl, names=names, noise_sigma=sigma,
                 snr_db=float(snr_db), clean=clean)


def training_batch(batch: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Single-channel abundance maps for prior training, (batch, size, size) float32 in [0, 1].

    Each call draws map sets with P ∈ [2, 10] and keeps every channel of each set, so the
    prior sees the full range from dominant to minor materials.
    """
    out = []
    while len(out) < batch:
        p = int(rng.integers(2, 11))
        a = abundance_maps(p, size, size, rng, "mixed")
        out.extend(a[rng.permutation(p)])
    return np.stack(out[:batch]).astype(np.float32)
