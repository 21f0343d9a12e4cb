"""Where a run's tiles and row blocks are solved: here, a local process pool, or a Dask cluster.

One function for every front end (the command line's ``--workers`` / ``--scheduler``, the
Processing algorithm's WORKERS / SCHEDULER, the Python API's ``executor=``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from ..errors import OptionError


@contextlib.contextmanager
def open_executor(workers: Optional[int] = None, scheduler: Optional[str] = None) -> Iterator:
    """None (solve here), a pool of ``workers`` local processes, or a client of the Dask
    scheduler at ``scheduler`` (``tcp://host:8786``); closed on leaving the block.

    Raises :class:`OptionError` for both at once, fewer than one worker, a Python without
    dask.distributed, or a scheduler that cannot be reached (within 10 s).
    """
    scheduler = (scheduler or "").strip() or None
    if workers is not None and scheduler:
        raise OptionError("Both a number of local workers and a Dask scheduler were given", "Give one of them")
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise OptionError("A Dask scheduler needs dask.distributed, which this Python does not have",
                              "Install it (pip install 'dask[distributed]') or use local workers") from None
        try:
            client = Client(scheduler, timeout=10)
        except OSError as exc:
            raise OptionError(f"Cannot reach the Dask scheduler at {scheduler} ({exc})",
                              "Check the address and that the scheduler runs") from None
        except (ValueError, TypeError) as exc:  # distributed's parse of the address
            raise OptionError(f"'{scheduler}' is not a Dask scheduler address ({' '.join(str(exc).split())[:120]})",
                              "Give the address the scheduler prints, e.g. tcp://host:8786") from None
        with client:
            check_cluster(client, scheduler)
            yield client
    elif workers is not None:
        if int(workers) < 1:
            raise OptionError(f"The number of workers must be at least 1 (got {workers})", "Give e.g. 2")
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(int(workers)) as pool:
            yield pool
    else:
        yield None


#: Evaluated on the scheduler and each worker: where ``urdm_plugin`` would be imported from
#: (None when it cannot be). A builtin (eval) travels by name, so the probe itself needs
#: nothing the other side may lack.
_PROBE = "getattr(__import__('importlib.util').util.find_spec('urdm_plugin'), 'origin', None)"

FIX_PATH = ("Start the scheduler and workers with `python -m urdm_plugin scheduler` and "
            "`python -m urdm_plugin worker ADDRESS` (they put the plugin on their path), or add the "
            "plugin's parent folder to their PYTHONPATH")


def check_cluster(client, address: str) -> None:
    """Refuse a cluster whose scheduler or workers cannot import this plugin (they
    deserialize its tasks): :class:`OptionError` naming which and the fix, before any task
    leaves (otherwise the run ends in "Error during deserialization of the task graph")."""
    try:
        where = client.run_on_scheduler(eval, _PROBE)
    except Exception as exc:  # noqa: BLE001 - a scheduler refusing to run it: say so in one line
        raise OptionError(f"The Dask scheduler at {address} does not answer a check that it can import "
                          f"this plugin ({type(exc).__name__})", FIX_PATH) from None
    if not where:
        raise OptionError(f"The Dask scheduler at {address} cannot import this plugin (urdm_plugin is "
                          "not on its Python path)", FIX_PATH)
    workers = client.run(eval, _PROBE, on_error="return")
    missing = sorted(w for w, origin in workers.items() if not isinstance(origin, str))
    if missing:
        raise OptionError(f"{len(missing)} of {len(workers)} Dask workers ({', '.join(missing[:3])}"
                          f"{', …' if len(missing) > 3 else ''}) cannot import this plugin", FIX_PATH)
