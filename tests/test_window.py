"""core.window.Window: rows first everywhere inside, GDAL's column-first order only at its edges."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from urdm_plugin.core.window import Window

sizes = st.integers(1, 40)
starts = st.integers(0, 40)


@given(starts, starts, sizes, sizes)
def test_the_users_column_first_window_comes_back_unchanged(col0, row0, width, height):
    w = Window.from_xywh((col0, row0, width, height))
    assert (w.row0, w.col0, w.height, w.width) == (row0, col0, height, width)
    assert w.xywh() == (col0, row0, width, height) and w.size == width * height


@given(starts, starts, sizes, sizes, st.integers(0, 5), st.integers(0, 5))
def test_slices_and_offset_select_the_pixels_the_window_names(row0, col0, height, width, dr, dc):
    grid = np.arange(100 * 100).reshape(100, 100)
    w = Window(row0, col0, height, width)
    np.testing.assert_array_equal(grid[w.slices()], grid[row0:row0 + height, col0:col0 + width])
    moved = w.offset(dr, dc)  # a window of a sub-grid starting at (dr, dc), in the whole grid's pixels
    np.testing.assert_array_equal(grid[dr:, dc:][w.slices()], grid[moved.slices()])
    assert w.within(row0 + height, col0 + width) and not w.within(row0 + height - 1, col0 + width)


def test_numpy_integers_become_plain_ints_and_windows_are_keys():
    w = Window(np.int64(2), np.int32(3), np.int64(4), 5)
    assert all(type(v) is int for v in w.astuple())
    assert {w: 1}[Window(2, 3, 4, 5)] == 1  # held decoded windows are looked up by value
    assert not Window(0, 0, 0, 3).within(10, 10)  # an empty window is in no grid
