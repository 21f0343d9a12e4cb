"""Termination signals noticed from the command line's first instruction.

``python -m urdm_plugin`` installs :func:`install` before importing anything heavy (numpy,
GDAL, the registry): a SIGTERM or SIGHUP that arrives while modules load is recorded in
:data:`received` instead of being lost (or, with Python's default, killing the process without
its one-line message). The command line looks at :data:`received` before any work, in every
cancel poll and before it commits outputs (see ``urdm_plugin.cli``), so a recorded signal
always ends the run with 128 + the signal number and nothing written. Only ``signal`` is
imported here.
"""

from __future__ import annotations

import signal

#: Signal numbers received so far (in order).
received: list = []

NAMES = ("SIGTERM", "SIGHUP")


def _record(signum, frame) -> None:
    received.append(signum)


def install() -> None:
    """Record SIGTERM/SIGHUP from now on (the main thread only; elsewhere a no-op)."""
    for name in NAMES:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            signal.signal(sig, _record)
        except ValueError:  # not the main thread
            pass
