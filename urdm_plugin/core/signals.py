"""Termination signals (SIGINT, SIGTERM, SIGHUP) around the few places a signal must wait or
a library takes one over. A leaf module (``signal`` and ``threading`` only).

The front ends install the Python handlers (``urdm_plugin.cli``, ``urdm_plugin.startup``);
here a block of code can hold those signals until it ends (:func:`held`), and the handlers
can be put back where a library loaded in the process replaced them at the C level
(:func:`reclaim_handlers`).
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: The signals that end a run.
TERMINATION = ("SIGINT", "SIGTERM", "SIGHUP")


def _present(names) -> list:
    return [getattr(signal, n) for n in names if hasattr(signal, n)]


@contextlib.contextmanager
def held(names=TERMINATION):
    """Hold ``names`` in this thread for the block (POSIX; elsewhere a no-op): their Python
    handlers run when it ends, never halfway through it. Threads started inside the block
    keep them held (the process's other threads then never take them)."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    old = mask(signal.SIG_BLOCK, set(_present(names)))
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


def reclaim_handlers(names=TERMINATION) -> list:
    """Install again the Python handler of each signal in ``names`` that has one (main thread
    only; elsewhere nothing), so that a C library that took the signal over gives it back.
    Returns the names reinstalled."""
    if threading.current_thread() is not threading.main_thread():
        return []
    done = []
    for name in names:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        handler = signal.getsignal(sig)
        if callable(handler):  # Python's own record: setting it again re-points the C handler
            signal.signal(sig, handler)
            done.append(name)
    return done
