"""Leftovers of killed runs: marking a run's temporary folders, and removing those whose
process is gone.

The writer (:mod:`core.io.writer`) fills a temporary sibling folder ``.<name>.tmp-*`` and,
when replacing a run, moves the old one aside as ``.<name>.old-*``. Both hold the marker
file :data:`PARTIAL_MARKER` naming the owning process, so a later run in the same folder can
tell a killed run's leftovers from a live one's and remove only the former.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path

#: File inside a temporary run folder (and a replaced run moved aside) naming the process
#: that owns it, so a later run can tell a killed run's leftovers from a live one's.
PARTIAL_MARKER = ".urdm-partial"
_PARTIAL_NAME = re.compile(r"^\..+\.(tmp|old)-[A-Za-z0-9_]+$")


def mark_partial(folder: Path) -> None:
    """Write :data:`PARTIAL_MARKER` into ``folder``: this process's id and host name."""
    (folder / PARTIAL_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}),
                                         encoding="utf-8")


def _owner_gone(marker: Path) -> bool:
    try:
        owner = json.loads(marker.read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not a marker this tool wrote: leave the folder alone
    if host != socket.gethostname() or pid == os.getpid():
        return False  # another machine's run (shared drive) or this very process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def remove_stale_partials(parent: Path) -> list:
    """Remove the leftovers of killed runs in ``parent``: temporary (``.<name>.tmp-*``) and
    moved-aside (``.<name>.old-*``) folders holding this tool's marker whose process, on
    this machine, no longer exists. Nothing else is touched. Returns the removed paths."""
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if _PARTIAL_NAME.match(entry.name) and entry.is_dir() and not entry.is_symlink():
            if _owner_gone(entry / PARTIAL_MARKER):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed
