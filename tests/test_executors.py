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


class _Recording:
    """An executor proxy that records what each task was sent, and can run a hook after a
    given number of submissions (to kill a worker mid-run)."""

    def __init__(self, inner, after=None, hook=None):
        self.inner, self.after, self.hook = inner, after, hook
        self.sent = []

    def submit(self, fn, *args):
        self.sent.append(args)
        fut = self.inner.submit(fn, *args)
        if self.hook is not None and len(self.sent) == self.after:
            self.hook()
        return fut


def _pixel_arrays(sent) -> list:
    """Arrays shipped to tasks that hold image pixels (bands × rows × cols)."""
    return [a for args in sent for a in args if isinstance(a, np.ndarray) and a.ndim == 3]


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        yield client


def test_dask_workers_read_their_own_windows_and_equal_the_local_run(tmp_path, dask_cluster):
    """Two worker processes: each task gets a window reader, never the pixels, and the
    outputs equal the local run for a per-pixel method and for URDM."""
    pytest.importorskip("torch", reason="URDM needs torch")
    tif, csv, _ = write_scene(tmp_path, H=90, W=70, seed=1_000_203, snr_db=30.0)
    for method, params in (("fcls", {}), ("urdm", {"lam": 0.3, "quality": "fast"})):
        opts = UnmixOptions(method=method, tile_size=32, memory_mb=1, params=params)
        local = unmix_raster(tif, csv, tmp_path / f"{method}_local", opts)
        rec = _Recording(dask_cluster)
        remote = unmix_raster(tif, csv, tmp_path / f"{method}_dask", opts, executor=rec)
        assert len(rec.sent) > 1 and _pixel_arrays(rec.sent) == []
        np.testing.assert_allclose(_maps(Path(local.out_dir)), _maps(Path(remote.out_dir)), atol=1e-6)


def test_a_worker_killed_mid_run_is_retried_and_the_result_is_unchanged(tmp_path, dask_cluster):
    import os
    import signal

    tif, csv, _ = write_scene(tmp_path, H=40, W=70, seed=1_000_203, snr_db=30.0)
    opts = UnmixOptions(method="tv", tile_size=32, params={"max_iter": 30})
    local = unmix_raster(tif, csv, tmp_path / "local", opts)
    pids = dask_cluster.run(os.getpid)

    def kill_one():
        os.kill(next(iter(pids.values())), signal.SIGKILL)

    rec = _Recording(dask_cluster, after=2, hook=kill_one)
    remote = unmix_raster(tif, csv, tmp_path / "dask", opts, executor=rec)
    np.testing.assert_array_equal(_maps(Path(local.out_dir)), _maps(Path(remote.out_dir)))
    assert set(dask_cluster.run(os.getpid).values()) != set(pids.values())  # the nanny restarted it
    dask_cluster.wait_for_workers(2, timeout=60)


def test_a_dead_pool_worker_fails_in_one_message_and_writes_nothing(tmp_path):
    import os
    import signal

    from urdm_plugin.core.errors import WorkerLostError

    tif, csv, _ = write_scene(tmp_path, H=40, W=70, seed=1_000_203, snr_db=30.0)
    opts = UnmixOptions(method="tv", tile_size=32, params={"max_iter": 30})
    with ProcessPoolExecutor(2) as ex:
        ex.submit(os.getpid).result()  # the pool's processes exist now

        def kill_one():
            os.kill(next(iter(ex._processes)), signal.SIGKILL)

        with pytest.raises(WorkerLostError, match="ended abruptly; nothing was written"):
            unmix_raster(tif, csv, tmp_path / "out", opts, executor=_Recording(ex, after=2, hook=kill_one))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["library.csv", "scene.tif"]


def test_more_workers_than_the_machine_can_use_are_refused_in_one_line():
    from urdm_plugin.core.engine.executors import max_workers, open_executor
    from urdm_plugin.core.errors import OptionError

    with pytest.raises(OptionError, match="at most"):
        with open_executor(max_workers() + 1):
            pass


@pytest.mark.parametrize("address", ["not a url", "http://localhost:8786"])
def test_a_scheduler_address_that_is_not_one_is_refused_in_one_line(address):
    """What the CLI's --scheduler and Processing's SCHEDULER both go through: an OptionError
    (exit 2, one line naming the form of an address), not distributed's ValueError."""
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    from urdm_plugin.core.engine.executors import open_executor
    from urdm_plugin.core.errors import OptionError

    with pytest.raises(OptionError, match="is not a Dask scheduler address") as e:
        with open_executor(None, address):
            pass
    assert "tcp://host:8786" in e.value.fix


def test_a_cluster_that_can_import_the_plugin_passes_the_check(dask_cluster):
    from urdm_plugin.core.engine.executors import check_cluster

    check_cluster(dask_cluster, "the test cluster")  # raises when the scheduler or a worker lacks the plugin
