"""Numeric limits shared by the readers and the solvers (a leaf module)."""

from __future__ import annotations

#: Largest magnitude of a data value (after scale and offset) treated as data. Reflectance is
#: O(1), scaled integers and radiance O(10⁴); a value beyond this is corrupt, or in units no
#: spectral library matches, and the solvers lose their accuracy on it (FCLS's sum-to-one
#: drifts from about 1e13). Such pixels are nodata: never solved, never written as data.
MAX_MAGNITUDE = 1e6

#: Below this address-space limit (RLIMIT_AS, bytes) the process runs single-threaded: every
#: thread reserves a 64 MiB malloc arena and an 8 MiB stack, and under ``ulimit -v 400000``
#: reader threads left OpenBLAS no room for its buffer, so the first matrix product spun at
#: 100 % CPU forever, deaf to SIGTERM (measured on FCLS of a 12 x 10 scene).
TIGHT_ADDRESS_SPACE = 8 * 2**30


def address_space_is_tight() -> bool:
    """Whether RLIMIT_AS is set below :data:`TIGHT_ADDRESS_SPACE` (False where unknown)."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):  # Windows has no resource module
        return False
    return soft != resource.RLIM_INFINITY and soft < TIGHT_ADDRESS_SPACE
