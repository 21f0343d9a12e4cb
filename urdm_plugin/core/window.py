"""The one rectangle of pixels every layer speaks: :class:`Window` (row0, col0, height, width).

Extents of a run, reads from an image, tiles, the weight chooser's central window and the
writer's sub-grid are all :class:`Window` objects, always rows first, like numpy's
``array[:, rows, cols]``. GDAL and the user-facing ``window`` option (``--window COL0 ROW0
WIDTH HEIGHT``, Processing's extent, the run file) are column first; :meth:`Window.from_xywh`
and :meth:`Window.xywh` are the only places that order is turned around. A leaf module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Window:
    """Pixels ``row0 : row0 + height`` × ``col0 : col0 + width`` of a grid (counts, not metres)."""

    row0: int
    col0: int
    height: int
    width: int

    def __post_init__(self):
        for name in ("row0", "col0", "height", "width"):  # numpy integers in, plain ints kept
            object.__setattr__(self, name, int(getattr(self, name)))

    @classmethod
    def whole(cls, height: int, width: int) -> Window:
        """Every pixel of a ``height`` × ``width`` grid."""
        return cls(0, 0, height, width)

    @classmethod
    def from_xywh(cls, xywh: Sequence[int]) -> Window:
        """From GDAL's / the user's order ``(col0, row0, width, height)``."""
        col0, row0, width, height = (int(v) for v in xywh)
        return cls(row0, col0, height, width)

    def xywh(self) -> tuple:
        """``(col0, row0, width, height)``: GDAL's ``ReadAsArray`` order and the run file's."""
        return self.col0, self.row0, self.width, self.height

    def astuple(self) -> tuple:
        """``(row0, col0, height, width)``: this order, as plain values (for reports)."""
        return self.row0, self.col0, self.height, self.width

    @property
    def size(self) -> int:
        """Number of pixels."""
        return self.height * self.width

    @property
    def row1(self) -> int:
        """One past the last row."""
        return self.row0 + self.height

    @property
    def col1(self) -> int:
        """One past the last column."""
        return self.col0 + self.width

    def slices(self) -> tuple:
        """``(rows, cols)`` slices for ``array[..., rows, cols]``."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    def offset(self, row0: int, col0: int) -> Window:
        """This window moved by (``row0``, ``col0``): a window given within a sub-grid that
        starts there, in the coordinates of the grid around it."""
        return Window(self.row0 + row0, self.col0 + col0, self.height, self.width)

    def within(self, height: int, width: int) -> bool:
        """Whether the window is non-empty and inside a ``height`` × ``width`` grid."""
        return (self.row0 >= 0 and self.col0 >= 0 and self.height > 0 and self.width > 0
                and self.row1 <= height and self.col1 <= width)
