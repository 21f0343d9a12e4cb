"""A map extent as a pixel window of a raster (the dialog's map view, Processing's EXTENT)."""

from __future__ import annotations

import math
from typing import Optional

from ..core.window import Window


def extent_to_window(rect, gt, width: int, height: int) -> Optional[Window]:
    """The pixel :class:`~urdm_plugin.core.window.Window` of a north-up image covering ``rect`` (in the
    image's CRS; anything with ``xMinimum()`` … ``yMaximum()``, e.g. a QgsRectangle),
    clipped to the image; None when they do not overlap or the image is rotated."""
    if gt[2] != 0 or gt[4] != 0 or gt[1] == 0 or gt[5] == 0:
        return None
    cols = sorted(((rect.xMinimum() - gt[0]) / gt[1], (rect.xMaximum() - gt[0]) / gt[1]))
    rows = sorted(((rect.yMaximum() - gt[3]) / gt[5], (rect.yMinimum() - gt[3]) / gt[5]))
    c0, c1 = max(0, math.floor(cols[0])), min(width, math.ceil(cols[1]))
    r0, r1 = max(0, math.floor(rows[0])), min(height, math.ceil(rows[1]))
    if c1 - c0 < 1 or r1 - r0 < 1:
        return None
    return Window(r0, c0, r1 - r0, c1 - c0)
