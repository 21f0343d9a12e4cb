"""Reading on every core (core.io.parallel_read): the same pixels as one thread, in every file
layout; the plan's sample tiles pasted into the row-block pass instead of decoded again; and
FCLS through the pipeline bit-identical to the single-threaded path without held tiles, and
run.json's split of its seconds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr

from urdm_plugin.core.io.image import (
    _open_dataset,
    _read,
    iter_row_blocks,
    open_image,
    window_reader,
)
from urdm_plugin.core.io.parallel_read import DecodedBlocks, Layout, split_window
from urdm_plugin.core.limits import MAX_MAGNITUDE
from urdm_plugin.core.window import Window


def _tiled(path: Path, Y: np.ndarray, interleave: str, compress: bool, nodata=-9999.0, wl=None) -> Path:
    B, H, W = Y.shape
    opts = ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", f"INTERLEAVE={interleave}"]
    opts += ["COMPRESS=DEFLATE"] if compress else []
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, B, gdal.GDT_Float32, opts)
    ds.SetGeoTransform((500000.0, 30.0, 0.0, 4100000.0, 0.0, -30.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32610)
    ds.SetProjection(srs.ExportToWkt())
    ds.WriteRaster(0, 0, W, H, np.ascontiguousarray(Y, np.float32).tobytes(), buf_type=gdal.GDT_Float32)
    for b in range(B):
        band = ds.GetRasterBand(b + 1)
        band.SetNoDataValue(nodata)
        if wl is not None:
            band.SetMetadataItem("wavelength", f"{wl[b]:.3f}")
            band.SetMetadataItem("wavelength_units", "nm")
    ds = None
    return path


def _cube(B=7, H=70, W=90, seed=0) -> np.ndarray:
    Y = np.random.default_rng(seed).uniform(0.0, 1.0, (B, H, W)).astype(np.float32)
    Y[:, 3, 5] = -9999.0  # nodata
    Y[2, 40, 60] = np.nan
    Y[4, 20, 33] = 3 * MAX_MAGNITUDE  # beyond the magnitude limit
    return Y


def test_split_window_follows_block_boundaries():
    band, pixel = Layout(16, 16, False), Layout(16, 16, True)
    def split(layout, xywh, n):  # in GDAL's (col0, row0, width, height), as the cases were written
        return [w.xywh() for w in split_window(layout, Window.from_xywh(xywh), n)]

    assert split(band, (5, 0, 60, 10), 2) == [(5, 0, 27, 10), (32, 0, 33, 10)]
    assert split(pixel, (5, 0, 60, 10), 2) == [(5, 0, 11, 10), (16, 0, 16, 10), (32, 0, 16, 10),
                                               (48, 0, 16, 10), (64, 0, 1, 10)]
    assert split(band, (20, 3, 10, 40), 2) == [(20, 3, 10, 29), (20, 32, 10, 11)]  # one block column: rows
    assert split(band, (5, 0, 60, 10), 1) == [(5, 0, 60, 10)]


@pytest.mark.parametrize("interleave", ["BAND", "PIXEL"])
@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("limit", [MAX_MAGNITUDE, None])
def test_threads_read_exactly_what_one_thread_reads(tmp_path, interleave, compress, limit):
    info = open_image(_tiled(tmp_path / "a.tif", _cube(), interleave, compress))
    bands = [0, 2, 4, 6]
    window = Window(3, 5, 60, 80)  # not aligned to the 16-pixel tiles
    ds = _open_dataset(info.path)
    want, want_valid = _read(ds, info, bands, window, limit)
    ds = None
    with window_reader(info) as reader:
        reader.threads = 3
        got, valid = reader.read(bands, window, limit)
        each = reader.read_each(bands, [window, Window(0, 0, 16, 16)], limit)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(valid, want_valid)
    np.testing.assert_array_equal(each[0][0], want)
    assert not valid[0, 0] and not valid[37, 55]  # nodata and NaN
    assert valid[17, 28] == (limit is None)  # the huge value: invalid only under the limit


def test_held_windows_are_pasted_instead_of_read_and_then_released(tmp_path):
    """A held tile's pixels come from memory (the file changed since: the row pass still
    shows the held values), with the magnitude limit applied as a read applies it."""
    Y = _cube()
    path = _tiled(tmp_path / "a.tif", Y, "BAND", True)
    info = open_image(path)
    bands = list(range(7))
    tile = Window(16, 32, 16, 16)  # holds the huge value at (row 20, col 33)
    with window_reader(info) as reader:
        (data, valid), = reader.read_each(bands, [tile], max_magnitude=None)
    held = DecodedBlocks(tuple(bands), capacity=10 * 2 ** 20)
    assert held.offer(tile, data, valid)
    ds = gdal.Open(str(path), gdal.GA_Update)  # the tile on disk changes; the held copy does not
    ds.GetRasterBand(1).WriteArray(np.full((16, 16), 0.5, np.float32), 32, 16)
    ds = None
    blocks = list(iter_row_blocks(info, bands, memory_mb=0.05, held=held))
    assert len(blocks) > 1
    rows = np.concatenate([b.data for b in blocks], axis=1)
    ok = np.concatenate([b.valid for b in blocks], axis=0)
    np.testing.assert_array_equal(rows[0, 16:32, 32:48], np.where(ok[16:32, 32:48], Y[0, 16:32, 32:48], 0))
    assert not ok[20, 33] and rows[:, 20, 33].tolist() == [0.0] * 7  # beyond the limit: invalid, zeroed
    assert rows[0, 0, 0] == Y[0, 0, 0] and not held.windows  # the rest read; the tile released


@pytest.mark.parametrize("interleave", ["BAND", "PIXEL"])
def test_fcls_outputs_are_bit_identical_to_the_single_threaded_path(tmp_path, monkeypatch, interleave):
    from urdm_plugin.core.engine import plan as plan_module
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster
    from urdm_plugin.core.io.library import SpectralLibrary, write_library_csv
    from urdm_plugin.core.synthetic import make_scene

    sc = make_scene(height=150, width=170, n_endmembers=3, snr_db=30.0, seed=1_000_311, n_bands=30)
    Y = sc.Y.astype(np.float32)
    Y[:, 10, 10] = -9999.0
    tif = _tiled(tmp_path / f"scene_{interleave}.tif", Y, interleave, True, wl=sc.wavelengths_nm)
    lib = write_library_csv(tmp_path / "lib.csv", SpectralLibrary(["a", "b", "c"], sc.wavelengths_nm, sc.E))

    def run(name, window=None):
        opts = UnmixOptions(method="fcls", memory_mb=16, window=window, mask_water_bands=False)
        res = unmix_raster(tif, lib, tmp_path / name, opts)
        split, out = res.manifest["seconds_by_stage"], res.out_dir  # run.json's split of the time
        assert {"plan", "read", "solve", "write"} <= set(split) and min(split.values()) >= 0
        assert sum(split.values()) <= res.manifest["seconds"] + 0.5
        return np.stack([gdal.Open(str(Path(out) / f)).ReadAsArray() for f in ("a.tif", "b.tif", "c.tif",
                                                                               "residual_rmse.tif")])

    new, new_win = run("new"), run("new_win", (5, 7, 150, 130))
    monkeypatch.setattr(plan_module, "HELD_SHARE", 0.0)  # nothing held: every tile decoded in the row pass
    gdal.SetConfigOption("GDAL_NUM_THREADS", "1")  # one thread, one piece per read: the path before
    try:
        old, old_win = run("old"), run("old_win", (5, 7, 150, 130))
    finally:
        gdal.SetConfigOption("GDAL_NUM_THREADS", None)
    assert np.array_equal(new, old) and np.array_equal(new_win, old_win)
    assert (new[:3, 10, 10] == -9999.0).all() and (new[:3] >= 0).sum() > 0.99 * 3 * 150 * 170


def test_a_tight_address_space_limit_reads_on_one_thread(monkeypatch):
    """Under ``ulimit -v 400000`` each reader thread's malloc arena and stack left OpenBLAS no
    room and FCLS spun forever: a limit below 8 GiB means one thread; no limit means the cores."""
    import resource

    from urdm_plugin.core.io.parallel_read import decode_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY,) * 2)
    assert decode_threads() == 4
    monkeypatch.setattr(resource, "getrlimit", lambda which: (400000 * 1024, 400000 * 1024))
    assert decode_threads() == 1
