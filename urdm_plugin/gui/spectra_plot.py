"""A light spectra plot (QPainter): the chosen library spectra against wavelength, with the
image's used band centres marked along the bottom. No matplotlib needed."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPainterPath, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

from ..qgis_layers.style import CATEGORICAL


class SpectraPlot(QWidget):
    """``set_data(wavelengths_nm, spectra (Bl, M), names, image_bands_nm)``; ``clear()``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.wl: Optional[np.ndarray] = None
        self.spectra: Optional[np.ndarray] = None
        self.names: list = []
        self.colors: list = []
        self.bands: Optional[np.ndarray] = None
        self.legend_shown = 0
        self.message = "Choose a library to see its spectra"

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(420, 170)

    def clear(self, message: str = "") -> None:
        self.wl = self.spectra = self.bands = None
        self.names, self.colors = [], []
        self.message = message
        self.update()

    def set_data(self, wavelengths_nm, spectra, names: Sequence[str], image_bands_nm=None,
                 colors: Optional[Sequence[str]] = None) -> None:
        self.spectra = None if spectra is None else np.asarray(spectra, dtype=float)
        if self.spectra is not None and self.spectra.ndim == 1:
            self.spectra = self.spectra[:, None]
        if wavelengths_nm is None and self.spectra is not None:
            wavelengths_nm = np.arange(1, self.spectra.shape[0] + 1, dtype=float)
        self.wl = None if wavelengths_nm is None else np.asarray(wavelengths_nm, dtype=float)
        self.names = list(names)
        self.colors = list(colors) if colors else [CATEGORICAL[i % len(CATEGORICAL)] for i in range(len(names))]
        self.bands = None if image_bands_nm is None else np.asarray(image_bands_nm, dtype=float)
        self.message = "" if self.names else "No spectrum selected"
        self.legend_shown = 0  # names in the legend at the last paint (the rest: "+N more")
        self.update()

    def paintEvent(self, _event):  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.base())
        if self.spectra is None or self.wl is None or not self.names or self.spectra.size == 0:
            p.setPen(pal.text().color())
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.message)
            p.end()
            return
        fm = p.fontMetrics()
        left, right, top, bottom = fm.horizontalAdvance("0.00") + 10, 10, 8, fm.height() + 14
        legend_w = min(160, max(fm.horizontalAdvance(n) for n in self.names) + 28)
        plot = QRectF(left, top, max(10, self.width() - left - right - legend_w),
                      max(10, self.height() - top - bottom))
        x0, x1 = float(np.min(self.wl)), float(np.max(self.wl))
        if self.bands is not None and self.bands.size:
            x0, x1 = min(x0, float(self.bands.min())), max(x1, float(self.bands.max()))
        y0, y1 = 0.0, float(np.nanmax(self.spectra)) if np.isfinite(np.nanmax(self.spectra)) else 1.0
        y0 = min(y0, float(np.nanmin(self.spectra)))
        if y1 <= y0:
            y1 = y0 + 1.0
        if x1 <= x0:
            x1 = x0 + 1.0

        def tx(x):
            return plot.left() + (x - x0) / (x1 - x0) * plot.width()

        def ty(y):
            return plot.bottom() - (y - y0) / (y1 - y0) * plot.height()

        axis = QPen(pal.text().color())
        p.setPen(axis)
        p.drawRect(plot)
        for frac in (0.0, 0.5, 1.0):
            y = y0 + frac * (y1 - y0)
            p.drawText(QRectF(0, ty(y) - fm.height() / 2, left - 4, fm.height()), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       f"{y:.2f}")
        # x labels: both ends, and the middle only where it cannot touch them
        labels = [(x0, f"{x0:.0f} nm", Qt.AlignmentFlag.AlignLeft), (x1, f"{x1:.0f} nm", Qt.AlignmentFlag.AlignRight)]
        mid = f"{0.5 * (x0 + x1):.0f} nm"
        ends = fm.horizontalAdvance(labels[0][1]) + fm.horizontalAdvance(labels[1][1])
        if plot.width() > ends + fm.horizontalAdvance(mid) + 24:
            labels.append((0.5 * (x0 + x1), mid, Qt.AlignmentFlag.AlignHCenter))
        for x, text, align in labels:
            w = fm.horizontalAdvance(text) + 4
            left_edge = tx(x) if align == Qt.AlignmentFlag.AlignLeft else (tx(x) - w if align == Qt.AlignmentFlag.AlignRight else tx(x) - w / 2)
            p.drawText(QRectF(left_edge, plot.bottom() + 2, w, fm.height()), align | Qt.AlignmentFlag.AlignTop, text)
        # used image bands: ticks along the bottom edge
        if self.bands is not None:
            p.setPen(QPen(QColor(128, 128, 128, 160), 1))
            for b in self.bands:
                x = tx(b)
                p.drawLine(QPointF(x, plot.bottom()), QPointF(x, plot.bottom() - 5))
        order = np.argsort(self.wl)
        line_h = fm.height() + 2
        fits = max(1, int((self.height() - top) // line_h))  # legend lines that fit
        shown = len(self.names) if len(self.names) <= fits else fits - 1  # the last line says "+N more"
        lx = plot.right() + 8
        for k, name in enumerate(self.names):
            path = QPainterPath()
            first = True
            for i in order:
                v = self.spectra[i, k]
                if not np.isfinite(v):
                    first = True
                    continue
                pt = QPointF(tx(self.wl[i]), ty(v))
                if first:
                    path.moveTo(pt)
                    first = False
                else:
                    path.lineTo(pt)
            p.setPen(QPen(QColor(self.colors[k]), 1.6))
            p.drawPath(path)  # every ticked spectrum is drawn, whatever the legend holds
            if k < shown:
                ly = top + k * line_h
                p.drawLine(QPointF(lx, ly + fm.height() / 2), QPointF(lx + 14, ly + fm.height() / 2))
                p.setPen(axis)
                p.drawText(QRectF(lx + 18, ly, legend_w - 20, fm.height()), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                           fm.elidedText(name, Qt.TextElideMode.ElideRight, int(legend_w - 20)))
        if shown < len(self.names):
            p.setPen(axis)
            p.drawText(QRectF(lx, top + shown * line_h, legend_w, fm.height()), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       f"+{len(self.names) - shown} more")
        self.legend_shown = shown
        p.end()
