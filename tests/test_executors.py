"""Tiles and row blocks solved by an executor (thread or process pool, a Dask cluster) give
exactly the result of solving them here: the scene context is fixed before they leave."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from test_pipeline import NAMES, write_scene

from urdm_plugin.core.engine.arrays import unmix_array_full
from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster
from urdm_plugin.core.errors import Cancelled
from urdm_plugin.core.synthetic import make_scene


@pytest.fixture(scope="module")
def cube():
    sc = make_scene(height=40, width=70, n_endmembers=3, snr_db=30.0, seed=1_000_207, n_bands=40)
    return sc.Y, sc.E


def _maps(folder: Path) -> np.ndarray:
    return np.stack([gdal.Open(str(folder / f"{n}.tif")).ReadAsArray() for n in NAMES + ["residual_rmse"]])


def test_thread_pool_tiles_equal_serial_tiles(cube):
    Y, E = cube
    A0, _, info0 = unmix_array_full(Y, E, "tv", tile_size=32, max_iter=40)
    with ThreadPoolExecutor(2) as ex:
        A1, _, info1 = unmix_array_full(Y, E, "tv", tile_size=32, max_iter=40, executor=ex)
    assert info0["tiles"] > 1 and info1["lam_per_tile"] == info0["lam_per_tile"]
    np.testing.assert_array_equal(A0, A1)


def test_process_pool_runs_equal_serial_runs(tmp_path):
    tif, csv, _ = write_scene(tmp_path, H=40, W=70, seed=1_000_203, snr_db=30.0)
    for method, params in (("fcls", {}), ("tv", {"max_iter": 30})):
        opts = UnmixOptions(method=method, tile_size=32, memory_mb=1, params=params)  # several row blocks
        serial = unmix_raster(tif, csv, tmp_path / f"{method}_serial", opts)
        with ProcessPoolExecutor(2) as ex:
            pooled = unmix_raster(tif, csv, tmp_path / f"{method}_pool", opts, executor=ex)
        np.testing.assert_array_equal(_maps(Path(serial.out_dir)), _maps(Path(pooled.out_dir)))
        a, b = (json.loads((Path(r.out_dir) / "run.json").read_text()) for r in (serial, pooled))
        assert a["parameters"] == b["parameters"] and a["valid_pixels"] == b["valid_pixels"]


def test_dask_cluster_tiles_equal_serial_tiles(cube):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    Y, E = cube
    A0, _, _ = unmix_array_full(Y, E, "tv", tile_size=32, max_iter=40)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        A1, _, _ = unmix_array_full(Y, E, "tv", tile_size=32, max_iter=40, executor=client)
    np.testing.assert_array_equal(A0, A1)


def test_cancel_stops_an_executor_run(cube):
    Y, E = cube
    calls = []
    with ThreadPoolExecutor(1) as ex, pytest.raises(Cancelled):
        unmix_array_full(Y, E, "tv", tile_size=32, max_iter=40, executor=ex,
                         cancel=lambda: calls.append(1) or len(calls) > 3)
