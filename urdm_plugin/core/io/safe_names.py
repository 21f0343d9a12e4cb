"""File-system-safe file stems for names taken from libraries and users (endmember names)."""

from __future__ import annotations

import re
import unicodedata

_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe_filename(name: str, max_len: int = 100, max_bytes: int = 120) -> str:
    """A file-system-safe stem for ``name``: letters, digits, ``_ - .`` only; never empty,
    never a path, never hidden, never a Windows device name (CON, NUL, ...); at most
    ``max_len`` characters and ``max_bytes`` bytes in UTF-8 (file systems limit a name to
    255 bytes, and a CJK character takes 3: the stem leaves room for suffixes like
    ``_std.tif.aux.xml``)."""
    t = unicodedata.normalize("NFKC", str(name))
    t = re.sub(r"[^\w.-]+", "_", t, flags=re.UNICODE)
    t = re.sub(r"_+", "_", t).strip("._- ")
    t = t[:max_len]
    while len(t.encode("utf-8")) > max_bytes:
        t = t[:-1]
    t = t.rstrip("._- ")
    if not t:
        t = "endmember"
    head, dot, tail = t.partition(".")
    if head.lower() in _WINDOWS_RESERVED:  # Windows reserves "nul" and "nul.txt" alike
        t = head + "_" + dot + tail
    return t
