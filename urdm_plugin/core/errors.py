"""The one exception family for user-facing problems.

Every error a user can cause (bad file, bad option, unwritable folder, ...) is raised as a
:class:`UrdmError` whose message names the problem *and* the fix. The GUI, Processing and
the CLI show ``str(err)`` as is and never a traceback.
"""

from __future__ import annotations

import errno


class UrdmError(Exception):
    """A problem the user can fix.

    ``problem`` says what is wrong (naming the file, band, spectrum or option concerned);
    ``fix`` says what to do about it. ``str(err)`` joins both into one message.
    """

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem.strip()
        self.fix = fix.strip()
        super().__init__(self.message)

    @property
    def message(self) -> str:
        p = self.problem.rstrip(".")
        return f"{p}. {self.fix}" if self.fix else f"{p}."


def for_front_end(exc: UrdmError, switches: dict) -> UrdmError:
    """``exc`` (same class) with each option spelling the core uses in its text (the Python
    API's, e.g. ``mask_water_bands=False``) replaced by ``switches[spelling]``: the same
    setting as the front end showing the message names it (``--no-water-mask``)."""
    problem, fix = exc.problem, exc.fix
    for core, here in switches.items():
        problem, fix = problem.replace(core, here), fix.replace(core, here)
    if (problem, fix) == (exc.problem, exc.fix):
        return exc
    out = exc.__class__.__new__(exc.__class__)
    UrdmError.__init__(out, problem, fix)
    return out


class InputImageError(UrdmError):
    """The hyperspectral image cannot be used as given."""


class LibraryError(UrdmError):
    """The endmember library cannot be used as given."""


class WavelengthError(UrdmError):
    """Wavelengths or their units are missing, unknown or do not overlap."""


class OptionError(UrdmError):
    """A method option or parameter is out of range or unknown."""


class OutputError(UrdmError):
    """The output folder cannot be created or written."""


class OutputExistsError(OutputError):
    """The output folder holds a previous run and replacing it was not asked for. Its fix
    names no front end's switch: the command line adds ``--overwrite``, the Python API
    ``overwrite=True``; QGIS front ends offer neither and keep the fix as it is."""


class WorkerLostError(UrdmError):
    """A worker process (local pool or Dask cluster) died while it held part of the run,
    more often than the executor retries; nothing was written."""


class MethodUnavailableError(UrdmError):
    """The method needs something this Python does not have (e.g. torch for URDM)."""


class Cancelled(Exception):
    """Raised inside a run when the user's cancel() returned True.

    Not a UrdmError: it is no problem, and callers report it as "cancelled" without fix.
    """


#: errno → (the likely cause in words, the fix) for the one-line message of a failed write.
_OS_CAUSES = {
    errno.ENOSPC: ("the disk is full", "Free disk space or choose another drive"),
    getattr(errno, "EDQUOT", -1): ("the disk quota is used up", "Free space within the quota or choose another drive"),
    errno.EFBIG: ("a file would exceed the file-size limit (ulimit -f) or what the file system allows "
                  "(FAT32: 4 GiB)", "Raise the limit, or write to a drive without it (NTFS, ext4, APFS)"),
    errno.EACCES: ("permission denied", "Choose a folder you can write to"),
    errno.EPERM: ("the operation is not permitted", "Choose a folder you can write to"),
    getattr(errno, "EROFS", -2): ("the drive is read-only", "Choose a folder on a writable drive"),
    errno.ENAMETOOLONG: ("a name is too long for the file system", "Choose a shorter folder name"),
}


def os_error_cause(exc: OSError, default_fix: str = "Choose a folder you can write to") -> tuple:
    """(``"<strerror>: <likely cause>"``, fix) for an OSError of a write."""
    why = exc.strerror or str(exc)
    cause, fix = _OS_CAUSES.get(getattr(exc, "errno", None), (None, default_fix))
    if cause and cause.lower() in why.lower():  # "Permission denied: permission denied" says it twice
        cause = None
    return (f"{why}: {cause}" if cause else why), fix
