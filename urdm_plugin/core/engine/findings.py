"""A plan's problems and warnings, typed: each is a :class:`Finding`.

A finding is the message users see (a ``str``: manifests, logs and front ends take it as it
is) that also says which rule made it (:class:`Kind`) and whether it stops the run
(:class:`Severity`), so a front end orders and filters messages without reading their text.
"""

from __future__ import annotations

from enum import IntEnum


class Severity(IntEnum):
    """Whether a finding stops the run; listed in this order."""

    PROBLEM = 0  # the run cannot go ahead
    WARNING = 1  # it can; the user should know


class Kind(IntEnum):
    """The rule a finding comes from, in the order a front end lists them: what to run on
    first, then what the run will do with it, then where it writes."""

    INPUT = 0  # the image, the library, the method and its options
    BANDS = 1  # matching the library to the image's bands, bands left out
    EXTENT = 2  # window, mask, a sensor product's quality flags, the map view
    SAMPLE = 3  # the values of the pixels sampled for the checks
    ENDMEMBERS = 4  # which spectra the run uses: given, all, selected automatically
    SCALE = 5  # image and library on different reflectance scales
    FIT = 6  # how well the endmembers explain the sample
    GEOREFERENCING = 7  # where the outputs will lie on a map
    OUTPUT = 8  # the output folder


class Finding(str):
    """``text`` as users see it, with its ``kind`` (:class:`Kind`) and ``severity``
    (:class:`Severity`). Equal to, and hashed as, its text."""

    kind: Kind
    severity: Severity

    def __new__(cls, text: str, kind: Kind, severity: Severity = Severity.WARNING) -> Finding:
        out = super().__new__(cls, text)
        out.kind, out.severity = Kind(kind), Severity(severity)
        return out

    def __reduce__(self):  # str's own pickling would call __new__ with the text alone
        return Finding, (str(self), self.kind, self.severity)


def problem(text: str, kind: Kind) -> Finding:
    """A finding that stops the run."""
    return Finding(text, kind, Severity.PROBLEM)


def warning(text: str, kind: Kind) -> Finding:
    """A finding shown before (and recorded by) the run, which still goes ahead."""
    return Finding(text, kind, Severity.WARNING)


def in_order(findings) -> list:
    """``findings`` (:class:`Finding`) problems first, each severity by :class:`Kind`
    (stable: the rules' own order within a kind)."""
    return sorted(findings, key=lambda f: (f.severity, f.kind))
