"""Can a folder be made here? The pre-run check every front end shares.

``os.access`` alone is not enough: it answers for the permission bits only, and root (or a
process with capabilities) is told "writable" for a folder marked immutable, a read-only
bind mount inside a writable one, or a network share whose server refuses — the run would
fail after all its work with "Operation not permitted". So the nearest existing ancestor is
also probed for real: a temporary file is created and removed there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

from ..errors import OutputError, os_error_cause


def nearest_existing(p: Path) -> Path:
    """``p`` itself when it exists, else its nearest existing ancestor."""
    anc = p
    while not anc.exists() and anc.parent != anc:
        anc = anc.parent
    return anc


def check_folder_creatable(path: Union[str, os.PathLike]) -> None:
    """Raise :class:`OutputError` (problem and fix) unless the folder ``path`` exists and
    takes new files, or can be created: its nearest existing ancestor must be a folder this
    process may write into (``os.access``) and does write into (a probe file, removed)."""
    p = Path(path).absolute()
    anc = nearest_existing(p)
    what = "used" if anc == p else "made"
    if not anc.is_dir():
        raise OutputError(f"The output folder '{p}' cannot be {what}: '{anc}' is a file", "Choose a folder name")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"The output folder '{p}' cannot be {what}: '{anc}' is not writable for you",
                          "Choose a folder you can write to")
    try:
        fd, probe = tempfile.mkstemp(prefix=".urdm-write-test-", dir=anc)
    except OSError as exc:  # EPERM (immutable), EROFS, EACCES on a share, ENOSPC, …
        why, fix = os_error_cause(exc)
        raise OutputError(f"The output folder '{p}' cannot be {what}: nothing can be written in '{anc}' "
                          f"({why})", fix) from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:  # written but not removable (a sticky folder of someone else's): writing works
        pass
