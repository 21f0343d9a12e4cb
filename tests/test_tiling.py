"""Tiles and seamless blending (core.engine.tiling)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from urdm_plugin.core.engine.tiling import TileBlender, plan_tiles
from urdm_plugin.core.errors import OptionError
from urdm_plugin.core.methods.active_set import fcls


@pytest.mark.parametrize("H,W,tile,ov", [(100, 70, 32, 8), (64, 64, 64, 8), (33, 200, 40, 6), (1, 5, 32, 4)])
def test_plan_covers_image_with_overlap_and_cores_partition(H, W, tile, ov):
    tiles = plan_tiles(H, W, tile, ov)
    cover = np.zeros((H, W), int)
    owned = np.zeros((H, W), int)
    for t in tiles:
        assert t.height <= tile and t.width <= tile
        assert 0 <= t.row0 and t.row0 + t.height <= H and t.col0 + t.width <= W
        rs, cs = t.slices()
        cover[rs, cs] += 1
        r, c, h, w = t.core.astuple()
        assert t.row0 <= r and r + h <= t.row0 + t.height
        owned[r:r + h, c:c + w] += 1
    assert cover.min() >= 1
    assert (owned == 1).all()
    rows = sorted({t.row0 for t in tiles})
    for a, b in zip(rows, rows[1:]):
        assert a + min(tile, H) - b >= ov


def test_plan_uses_fewest_and_shortest_tiles():
    """Tile work (pixels solved, overlap included) stays near the image's size: a 1024²
    scene in tiles of at most 512 with 32 px overlap is 3 × 3 tiles of 363², not of 512²."""
    tiles = plan_tiles(1024, 1024, 512, 32)
    assert len(tiles) == 9 and {(t.height, t.width) for t in tiles} == {(363, 363)}
    assert sum(t.height * t.width for t in tiles) < 1.14 * 1024 ** 2
    rows = sorted({t.row0 for t in tiles})
    assert min(a + 363 - b for a, b in zip(rows, rows[1:])) >= 32


def test_tile_edge_follows_the_memory_budget():
    from urdm_plugin.core.engine.tiling import tile_edge_for_memory

    assert tile_edge_for_memory(512, 4096, 200) == 512  # the cap when memory allows
    small = tile_edge_for_memory(512, 64, 200)
    assert 32 <= small < 512 and 3 * small ** 2 * 200 * 8 <= 64 * 2 ** 20
    assert tile_edge_for_memory(512, 1, 10_000) == 32  # never below 32


def test_per_pixel_method_tilewise_equals_untiled_exactly():
    rng = np.random.default_rng(0)
    E = rng.uniform(0.05, 0.9, (20, 3))
    Y = rng.uniform(0, 0.9, (20, 50, 45))
    full = fcls(Y.reshape(20, -1), E).reshape(3, 50, 45)
    blend = TileBlender(3, 50, 45)
    for t in plan_tiles(50, 45, 24, 6):
        rs, cs = t.slices()
        sub = Y[:, rs, cs]
        blend.add(t, fcls(sub.reshape(20, -1), E).reshape(3, t.height, t.width))
    np.testing.assert_allclose(blend.result(), full, atol=1e-6)  # float32 output


def test_smoothing_tilewise_blends_to_untiled():
    rng = np.random.default_rng(1)
    X = gaussian_filter(rng.standard_normal((2, 90, 80)), (0, 4, 4))
    full = gaussian_filter(X, (0, 1.5, 1.5), mode="reflect")
    blend = TileBlender(2, 90, 80)
    for t in plan_tiles(90, 80, 48, 20):
        rs, cs = t.slices()
        blend.add(t, gaussian_filter(X[:, rs, cs], (0, 1.5, 1.5), mode="reflect"))
    out = blend.result()
    assert np.abs(out - full).max() < 1e-3 * np.abs(full).max()
    # a naive paste of the tiles (no blending) shows the seams
    paste = np.zeros_like(full)
    for t in plan_tiles(90, 80, 48, 20):
        rs, cs = t.slices()
        paste[:, rs, cs] = gaussian_filter(X[:, rs, cs], (0, 1.5, 1.5), mode="reflect")
    assert np.abs(out - full).max() < np.abs(paste - full).max()


def test_constant_tiles_stay_constant():
    blend = TileBlender(1, 70, 70)
    for t in plan_tiles(70, 70, 32, 10):
        blend.add(t, np.full((1, t.height, t.width), 0.25))
    np.testing.assert_allclose(blend.result(), 0.25, atol=1e-7)
    with pytest.raises(OptionError):
        plan_tiles(100, 100, 32, 20)


def test_rows_flushed_row_of_tiles_by_row_of_tiles_equal_the_whole_blend():
    """The blender holds only the rows a later tile can still reach: flushing after each row
    of tiles gives exactly the whole-scene blend, and it never holds much more than a tile."""
    rng = np.random.default_rng(3)
    H, W, tile, ov = 90, 61, 32, 8
    tiles = plan_tiles(H, W, tile, ov)
    res = {t: rng.uniform(0, 1, (2, t.height, t.width)) for t in tiles}
    whole = TileBlender(2, H, W)
    for t in tiles:
        whole.add(t, res[t])
    expect = whole.result()
    strip = TileBlender(2, H, W)
    parts, held = [], 0
    for i, t in enumerate(tiles):
        strip.add(t, res[t])
        held = max(held, strip._wsum.shape[0])
        if i + 1 == len(tiles) or tiles[i + 1].row0 != t.row0:
            parts.append(strip.flush(tiles[i + 1].row0 if i + 1 < len(tiles) else H))
    assert [p[0] for p in parts] == sorted(p[0] for p in parts) and parts[0][0] == 0
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts], axis=1), expect)
    assert held <= tiles[0].height
    with pytest.raises(ValueError, match="flushed"):
        strip.add(tiles[0], res[tiles[0]])  # rows already handed out cannot change


def test_solve_tiled_hands_each_row_to_the_sink_once_and_as_without_it():
    """The raster pipeline's path (rows to a sink as soon as they are blended) gives the
    same maps as the array API's (the whole result at once)."""
    from urdm_plugin.core.engine.tiling import solve_tiled
    from urdm_plugin.core.methods.context import SceneContext
    from urdm_plugin.core.methods.registry import get_method
    from urdm_plugin.core.synthetic import make_scene

    sc = make_scene(50, 41, n_endmembers=3, n_bands=24, snr_db=30.0, seed=5)
    Y = sc.Y.copy()
    Y[:, 10:14, 3:30] = np.nan  # a nodata band across tiles

    def read(window):
        Yt = Y[(slice(None), *window.slices())]
        return Yt, np.isfinite(Yt).all(axis=0)

    spec = get_method("tv")
    params = spec.validate_params({"max_iter": 30, "lam": 0.01})
    full = solve_tiled(spec, read, (50, 41), sc.E, params, SceneContext(seed=0), 24)
    got = []
    streamed = solve_tiled(spec, read, (50, 41), sc.E, params, SceneContext(seed=0), 24,
                           sink=lambda r0, A, std, v: got.append((r0, A.copy(), v.copy())))
    assert streamed.A is None and streamed.info["tiles"] == full.info["tiles"] > 2
    rows = np.concatenate([np.arange(r0, r0 + A.shape[1]) for r0, A, _ in got])
    np.testing.assert_array_equal(rows, np.arange(50))  # every row once, in order
    np.testing.assert_array_equal(np.concatenate([A for _, A, _ in got], axis=1), full.A)
    np.testing.assert_array_equal(np.concatenate([v for _, _, v in got]), full.valid)
    assert not full.valid[10:14, 3:30].any() and np.isnan(full.A[:, 10:14, 3:30]).all()


def test_array_api_and_raster_pipeline_tile_alike(tmp_path):
    """One tiler serves both entry points: the same tiles, scene weight and blend."""
    from osgeo import gdal
    from test_pipeline import NAMES, write_scene

    from urdm_plugin.core.engine.arrays import unmix_array_full
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster

    tif, csv, sc = write_scene(tmp_path, H=40, W=70, seed=1_000_203, snr_db=30.0)
    opts = UnmixOptions(method="tv", tile_size=32, params={"max_iter": 40}, mask_water_bands=False)
    res = unmix_raster(tif, csv, tmp_path / "tv", opts)
    ds = gdal.Open(str(tif))
    Y = ds.ReadAsArray().astype(np.float64)
    valid = np.all(Y != -9999.0, axis=0)
    A, _std, info = unmix_array_full(np.where(valid, Y, np.nan), sc.E, "tv", tile_size=32, max_iter=40)
    params = res.manifest["parameters"]
    # the pipeline's E went through the CSV (8 decimals): equal to rounding
    assert info["tiles"] > 1 and info["lam_per_tile"] == pytest.approx(params["lam_chosen_per_tile"], rel=1e-6)
    assert len(set(info["lam_per_tile"])) == 1
    assert info["lambda_selection"]["chosen"] == pytest.approx(params["lambda_selection"]["chosen"], rel=1e-6)
    maps = np.stack([gdal.Open(str(tmp_path / "tv" / f"{n}.tif")).ReadAsArray() for n in NAMES])
    np.testing.assert_allclose(maps[:, valid], A[:, valid], atol=2e-5)
