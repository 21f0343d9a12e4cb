"""The pixel inspector's two plots (plain QPainter, no matplotlib): the observed spectrum
against its reconstruction E·a and the residual, and the abundances as bars."""

from __future__ import annotations

from typing import Optional

import numpy as np
from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

from ..qgis_layers.style import CATEGORICAL
from .inspector_data import PixelInspection

OBSERVED_COLOR = QColor("#1f77b4")
RECON_COLOR = QColor("#ff7f0e")
RESIDUAL_COLOR = QColor("#7f7f7f")
BAR_COLORS = CATEGORICAL  # the dominant-material map's colours, so bars and map agree


# ---------------------------------------------------------------------------------------
# plots (plain QPainter: no matplotlib needed)
# ---------------------------------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list:
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=raw)
    start = np.ceil(lo / step) * step
    return [0.0 if abs(v) < step * 1e-9 else float(v) for v in np.arange(start, hi + step * 1e-6, step)]


class SpectrumPlot(QWidget):
    """Observed, reconstructed and residual spectra against wavelength (or band)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.data: Optional[PixelInspection] = None
        self.setMinimumSize(260, 170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self):  # noqa: N802
        return QSize(360, 220)

    def set_data(self, data: Optional[PixelInspection]) -> None:
        self.data = data
        self.update()

    def paintEvent(self, event):  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), Qt.GlobalColor.white)
        d = self.data
        if d is None or d.observed.size == 0:
            p.setPen(Qt.GlobalColor.gray)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Click a pixel of an unmixing result")
            p.end()
            return
        x = d.wavelengths_nm if d.wavelengths_nm is not None else d.band_numbers.astype(float)
        series = [(d.observed, OBSERVED_COLOR, "observed", Qt.PenStyle.SolidLine),
                  (d.reconstructed, RECON_COLOR, "reconstructed", Qt.PenStyle.DashLine),
                  (d.residual, RESIDUAL_COLOR, "residual", Qt.PenStyle.DotLine)]
        ys = np.concatenate([s[0] for s in series])
        y0, y1 = float(min(0.0, ys.min())), float(ys.max())
        if y1 <= y0:
            y1 = y0 + 1.0
        pad = 0.05 * (y1 - y0)
        y0, y1 = y0 - (pad if y0 < 0 else 0), y1 + pad
        x0, x1 = float(x.min()), float(x.max())
        if x1 <= x0:
            x0, x1 = x0 - 1, x1 + 1
        f = QFont(self.font())
        f.setPointSizeF(max(6.5, f.pointSizeF() - 1.5))
        p.setFont(f)
        fm = p.fontMetrics()
        left, right, top, bottom = fm.horizontalAdvance("-0.000") + 10, fm.horizontalAdvance("0000") // 2 + 6, fm.height() + 8, fm.height() * 2 + 6
        plot = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))

        def px(v):
            return plot.left() + (v - x0) / (x1 - x0) * plot.width()

        def py(v):
            return plot.bottom() - (v - y0) / (y1 - y0) * plot.height()

        p.setPen(QPen(QColor("#dddddd"), 1))
        for t in _nice_ticks(y0, y1):
            p.drawLine(QPointF(plot.left(), py(t)), QPointF(plot.right(), py(t)))
            p.setPen(Qt.GlobalColor.black)
            p.drawText(QRectF(0, py(t) - fm.height() / 2, left - 4, fm.height()), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       f"{t:.3g}")
            p.setPen(QPen(QColor("#dddddd"), 1))
        p.setPen(Qt.GlobalColor.black)
        for t in _nice_ticks(x0, x1, 5):
            p.drawLine(QPointF(px(t), plot.bottom()), QPointF(px(t), plot.bottom() + 3))
            p.drawText(QRectF(px(t) - 30, plot.bottom() + 3, 60, fm.height()), Qt.AlignmentFlag.AlignHCenter, f"{t:g}")
        p.drawRect(plot)
        p.drawText(QRectF(plot.left(), plot.bottom() + fm.height() + 3, plot.width(), fm.height()),
                   Qt.AlignmentFlag.AlignHCenter, "wavelength (nm)" if d.wavelengths_nm is not None else "band")
        if y0 < 0 < y1:
            p.setPen(QPen(Qt.GlobalColor.gray, 1, Qt.PenStyle.DashLine))
            p.drawLine(QPointF(plot.left(), py(0)), QPointF(plot.right(), py(0)))
        lx = plot.left()
        for values, color, name, style in series:
            path = QPainterPath()
            for i, (xv, yv) in enumerate(zip(x, values)):
                pt = QPointF(px(float(xv)), py(float(yv)))
                path.moveTo(pt) if i == 0 else path.lineTo(pt)
            p.setPen(QPen(color, 2, style))
            p.drawPath(path)
            # legend along the top
            p.drawLine(QPointF(lx, top / 2), QPointF(lx + 18, top / 2))
            p.setPen(Qt.GlobalColor.black)
            p.drawText(QPointF(lx + 22, top / 2 + fm.ascent() / 2 - 1), name)
            lx += 30 + fm.horizontalAdvance(name)
        p.end()


class AbundanceBars(QWidget):
    """Horizontal bars of the abundances (0–1 scale; values outside are drawn clipped)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.values: dict = {}
        self.setMinimumHeight(40)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_values(self, values: dict) -> None:
        self.values = dict(values or {})
        self.setMinimumHeight(max(40, 8 + 18 * len(self.values)))
        self.updateGeometry()
        self.update()

    def sizeHint(self):  # noqa: N802
        return QSize(360, max(40, 8 + 18 * len(self.values)))

    def paintEvent(self, event):  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), Qt.GlobalColor.white)
        if not self.values:
            p.end()
            return
        fm = p.fontMetrics()
        name_w = min(self.width() // 3, max(fm.horizontalAdvance(n) for n in self.values) + 8)
        val_w = fm.horizontalAdvance("-0.000") + 8
        bar_w = max(10, self.width() - name_w - val_w - 8)
        for i, (name, v) in enumerate(self.values.items()):
            y = 4 + 18 * i
            p.setPen(Qt.GlobalColor.black)
            p.drawText(QRectF(2, y, name_w - 4, 16), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       fm.elidedText(name, Qt.TextElideMode.ElideRight, name_w - 4))
            p.setPen(QPen(QColor("#bbbbbb"), 1))
            p.drawRect(QRectF(name_w, y + 2, bar_w, 12))
            frac = float(np.clip(v, 0.0, 1.0)) if np.isfinite(v) else 0.0
            p.fillRect(QRectF(name_w, y + 2, bar_w * frac, 12), QColor(BAR_COLORS[i % len(BAR_COLORS)]))
            p.setPen(Qt.GlobalColor.black)
            p.drawText(QRectF(name_w + bar_w + 4, y, val_w, 16), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, f"{v:.3f}")
        p.end()


# ---------------------------------------------------------------------------------------
# dock
# ---------------------------------------------------------------------------------------
