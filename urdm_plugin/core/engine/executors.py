"""Where a run's tiles and row blocks are solved: here, a local process pool, or a Dask cluster.

One function for every front end (the command line's ``--workers`` / ``--scheduler``, the
Processing algorithm's WORKERS / SCHEDULER, the Python API's ``executor=``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Iterator, Optional

from ..errors import OptionError

#: Most local workers per CPU core: more only adds memory and start-up time (tiles are CPU-bound).
WORKERS_PER_CPU = 2


def max_workers() -> int:
    """The largest ``workers`` accepted: :data:`WORKERS_PER_CPU` × the CPU cores."""
    return WORKERS_PER_CPU * (os.cpu_count() or 1)


def _worker_start(parent_pid: int) -> None:
    """Each local worker: it dies with the process that started it (Linux: PR_SET_PDEATHSIG,
    so a SIGKILLed run leaves no pool behind) and takes SIGTERM/SIGHUP/SIGINT the default way
    (not the recording handlers a forked worker inherits from the command line)."""
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def check_place(workers=None, scheduler: Optional[str] = None, shown=str) -> tuple:
    """``(workers as int or None, scheduler address or None)``: the one rule of where a run is
    solved (the options builder's and :func:`open_executor`'s). OptionError for both at
    once, fewer than one worker or more than :func:`max_workers`; ``shown(name)`` spells
    the names the front end's way (``--workers``, ``WORKERS``)."""
    from ..methods.registry import WORKERS

    scheduler = (scheduler or "").strip() or None
    if workers is None:
        return None, scheduler
    if scheduler:
        raise OptionError(f"{shown('workers')} and {shown('scheduler')} were both given", "Give one of them")
    if isinstance(workers, (int, float)) and not isinstance(workers, bool) and workers < WORKERS.minimum:
        raise OptionError(f"{shown('workers')} must be at least {WORKERS.minimum} (got {workers})",
                          f"Give e.g. {shown('workers')} 2")
    workers = WORKERS.validate(workers)
    if workers > max_workers():
        raise OptionError(f"{workers} workers are more than this machine can use ({os.cpu_count()} CPU cores; "
                          f"at most {max_workers()})", f"Give at most {max_workers()} workers")
    return workers, None


@contextlib.contextmanager
def open_executor(workers: Optional[int] = None, scheduler: Optional[str] = None) -> Iterator:
    """None (solve here), a pool of ``workers`` local processes, or a client of the Dask
    scheduler at ``scheduler`` (``tcp://host:8786``); closed on leaving the block.

    Raises :class:`OptionError` where :func:`check_place` refuses, for a Python without
    dask.distributed, or a scheduler that cannot be reached (within 10 s).
    """
    workers, scheduler = check_place(workers, scheduler)
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
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, initializer=_worker_start, initargs=(os.getpid(),))
        try:
            yield pool
        except OSError as exc:  # fork refused (EAGAIN under ulimit -u, ENOMEM): no hang, one line
            _abandon(pool)
            raise OptionError(f"Cannot start {workers} worker processes ({exc.strerror or exc})",
                              "Give fewer workers, or raise the process limit (ulimit -u)") from None
        except BaseException:
            _abandon(pool)
            raise
        pool.shutdown(wait=True)
    else:
        yield None


def _abandon(pool) -> None:
    """Stop a pool without waiting for its tasks: cancel what is queued, end the workers."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.kill()
        except (OSError, ValueError, AttributeError):
            pass


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
