"""Abundance maps with the statistics of real scenes: soft segmentations of natural photos.

Training data for the prior only (``make prior``; never used when unmixing). Real land
cover has what random fields lack: objects with sharp and soft edges side by side, thin
structures, texture that follows the objects. Photographs have the same, so a soft
segmentation of a photograph into P classes is a plausible set of P abundance maps:

1. a crop of a freely licensed photograph shipped with scikit-image (``skimage.data``:
   public-domain or CC0 images) at a random scale (1–4× block-average downsampling) and
   random flips/rotations;
2. P class centres in colour space by a few rounds of k-means (k-means++ start);
3. soft memberships ``softmax(−‖x − c_k‖² / τ)`` per pixel, with τ drawn log-uniformly
   relative to the mean squared distance between centres, so edges range from crisp to
   gradual, and mixed pixels appear where colours are between classes.

scikit-image is a training-time dependency (``requirements-train.txt``), not the plugin's.
"""

from __future__ import annotations

import logging

import numpy as np

#: skimage.data images that ship with the wheel (no download) and are natural scenes
#: or textures; public domain or CC0 (see scikit-image's data/README).
IMAGE_NAMES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon",
               "brick", "grass", "gravel", "hubble_deep_field", "immunohistochemistry",
               "retina", "horse", "page", "text", "clock")

_cache: list = []
_LOG = logging.getLogger(__name__)


def _images() -> list:
    """The photographs as float32 (h, w, c) arrays in [0, 1], loaded once."""
    if _cache:
        return _cache
    try:
        from skimage import data
    except ImportError as exc:  # pragma: no cover - depends on the training environment
        raise ImportError("Natural-image training maps need scikit-image: "
                          "pip install -r requirements-train.txt") from exc
    for name in IMAGE_NAMES:
        try:
            img = np.asarray(getattr(data, name)(), np.float32)
        except Exception as exc:  # an image this scikit-image cannot provide offline: skip it
            _LOG.info("skimage.data.%s not available (%s); training without it", name, exc)
            continue
        if img.ndim == 2:
            img = img[..., None]
        img = img[..., :3]
        img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
        _cache.append(img)
    if not _cache:
        raise RuntimeError("scikit-image provided none of its sample images")
    return _cache


def _crop(rng: np.random.Generator, size: int) -> np.ndarray:
    imgs = _images()
    img = imgs[int(rng.integers(len(imgs)))]
    scale = int(rng.integers(1, 5))
    h, w = img.shape[:2]
    s = min(scale, h // size, w // size) or 1
    ch, cw = size * s, size * s
    r0 = int(rng.integers(0, h - ch + 1))
    c0 = int(rng.integers(0, w - cw + 1))
    x = img[r0:r0 + ch, c0:c0 + cw]
    x = x.reshape(size, s, size, s, -1).mean(axis=(1, 3))
    x = np.rot90(x, int(rng.integers(4)))
    if rng.random() < 0.5:
        x = x[:, ::-1]
    return np.ascontiguousarray(x)


def photo_abundances(p: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """P soft-segmentation maps (p, size, size) float32 of a random photo crop; sum to one."""
    x = _crop(rng, size)
    f = x.reshape(-1, x.shape[-1]).astype(np.float64)
    f = f + 1e-3 * rng.standard_normal(f.shape)  # break ties in flat areas
    # k-means++ start, then a few Lloyd rounds
    c = [f[int(rng.integers(len(f)))]]
    for _ in range(1, p):
        d = np.min([((f - ci) ** 2).sum(axis=1) for ci in c], axis=0)
        prob = d / d.sum() if d.sum() > 0 else None
        c.append(f[int(rng.choice(len(f), p=prob))])
    c = np.array(c)
    for _ in range(6):
        lab = ((f[:, None, :] - c[None]) ** 2).sum(axis=2).argmin(axis=1)
        for k in range(p):
            if np.any(lab == k):
                c[k] = f[lab == k].mean(axis=0)
    d2 = ((f[:, None, :] - c[None]) ** 2).sum(axis=2)  # (n, p)
    spread = np.mean(((c[:, None] - c[None]) ** 2).sum(axis=2)[np.triu_indices(p, 1)]) + 1e-6
    tau = spread * 10 ** rng.uniform(-2.5, -0.5)
    logits = -d2 / tau
    logits -= logits.max(axis=1, keepdims=True)
    a = np.exp(logits)
    a /= a.sum(axis=1, keepdims=True)
    return a.T.reshape(p, size, size).astype(np.float32)


def training_batch(batch: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Single-channel maps (batch, size, size) float32 in [0, 1] from photo segmentations,
    P ∈ [2, 6] per photo crop, every channel kept (dominant and minor classes alike)."""
    out = []
    while len(out) < batch:
        p = int(rng.integers(2, 7))
        a = photo_abundances(p, size, rng)
        out.extend(a[rng.permutation(p)])
    return np.stack(out[:batch])
