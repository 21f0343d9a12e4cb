"""Photo-derived training maps for the prior (training-time only)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage", reason="scikit-image is a training-time dependency (requirements-train.txt)")

from urdm_plugin.core.diffusion import natural_maps  # noqa: E402


def test_photo_maps_are_abundances_with_edges_and_mixtures():
    rng = np.random.default_rng(0)
    for p in (2, 4, 6):
        a = natural_maps.photo_abundances(p, 32, rng)
        assert a.shape == (p, 32, 32) and a.dtype == np.float32
        assert a.min() >= 0 and np.allclose(a.sum(axis=0), 1.0, atol=1e-5)
    maps = natural_maps.training_batch(64, 32, np.random.default_rng(1))
    assert maps.shape == (64, 32, 32) and 0 <= maps.min() and maps.max() <= 1
    # real-scene statistics: pure pixels, mixed pixels and sharp jumps all occur
    assert (maps > 0.99).mean() > 0.05 and ((maps > 0.1) & (maps < 0.9)).mean() > 0.05
    assert (np.abs(np.diff(maps, axis=2)) > 0.5).mean() > 0.002


def test_batches_follow_the_seed_and_the_mix_share():
    from urdm_plugin.core.diffusion.train import batch_source

    a = natural_maps.training_batch(8, 16, np.random.default_rng(5))
    b = natural_maps.training_batch(8, 16, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    mixed = batch_source("photo-mix", 0.5)(10, 16, np.random.default_rng(0))
    assert mixed.shape == (10, 16, 16)
    with pytest.raises(ValueError):
        batch_source("imagenet", 0.5)
