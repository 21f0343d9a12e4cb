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
        with client:
            yield client
    elif workers is not None:
        if int(workers) < 1:
            raise OptionError(f"The number of workers must be at least 1 (got {workers})", "Give e.g. 2")
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(int(workers)) as pool:
            yield pool
    else:
        yield None
