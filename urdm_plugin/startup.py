"""What ``python -m urdm_plugin`` does before importing anything heavy (numpy, GDAL).

Termination signals: :func:`install` runs before any heavy import (numpy,
GDAL, the registry): a SIGTERM or SIGHUP that arrives while modules load is recorded in
:data:`received` instead of being lost (or, with Python's default, killing the process without
its one-line message). The command line looks at :data:`received` before any work, in every
cancel poll and before it commits outputs (see ``urdm_plugin.cli``), so a recorded signal
always ends the run with 128 + the signal number and nothing written. A :class:`Terminated`
raised where Python cannot pass it on (a ``__del__``, a garbage-collector or weakref callback)
is already in :data:`received`; :func:`install` keeps Python from printing it as
"Exception ignored in ..." with a traceback (seen once in CI: SIGTERM 0.14 s after start).

Address-space limit: under ``ulimit -v 400000`` OpenBLAS cannot give each of its threads its
buffers and the first matrix product spins forever at 100 % CPU, deaf to SIGTERM (measured:
FCLS on a 12 x 10 scene hung > 6 min; with one BLAS thread it ran in about 1 s).
:func:`fit_blas_to_address_limit` sets one BLAS thread when the limit is tight, before numpy
loads. Only ``os``, ``resource``, ``signal`` and the leaf module ``core.limits`` are imported here.
"""

from __future__ import annotations

import os
import signal
import sys

#: Signal numbers received so far (in order).
received: list = []

NAMES = ("SIGTERM", "SIGHUP")


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM / SIGHUP while a command runs (see
    ``urdm_plugin.cli``): unwinds like Ctrl-C, every output writer aborting on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)


def _record(signum, frame) -> None:
    received.append(signum)


def _quiet_unraisable(unraisable, _default=sys.unraisablehook) -> None:
    """Drop a :class:`Terminated` Python could not raise (it is recorded); pass on the rest."""
    if isinstance(unraisable.exc_value, Terminated):
        return
    _default(unraisable)


def install() -> None:
    """Record SIGTERM/SIGHUP from now on (the main thread only; elsewhere a no-op), and keep
    a swallowed :class:`Terminated` off stderr."""
    sys.unraisablehook = _quiet_unraisable
    for name in NAMES:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            signal.signal(sig, _record)
        except ValueError:  # not the main thread
            pass


def fit_blas_to_address_limit() -> bool:
    """One OpenBLAS/OpenMP thread when RLIMIT_AS is below ``core.limits.TIGHT_ADDRESS_SPACE`` and the
    user set no thread count; call before numpy is imported. Returns whether it did."""
    from urdm_plugin.core.limits import address_space_is_tight  # a leaf: no numpy

    if not address_space_is_tight():
        return False
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    return True
