"""A light spectra plot (QPainter): the chosen library spectra against wavelength, with the
image's used band centres marked along the bottom. No matplotlib needed."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPainterPath, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

from ..qgis_layers.style import CATEGORICAL


class _Frame(NamedTuple):
    """The plot rectangle (widget pixels) and the data it spans: x0 … x1 nm, y0 … y1 reflectance."""

    plot: QRectF
    x0: float
    x1: float
    y0: float
    y1: float

    def tx(self, x: float) -> float:
        """Widget x (pixels) of wavelength ``x`` (nm)."""
        return self.plot.left() + (x - self.x0) / (self.x1 - self.x0) * self.plot.width()

    def ty(self, y: float) -> float:
        """Widget y (pixels) of value ``y``."""
        return self.plot.bottom() - (y - self.y0) / (self.y1 - self.y0) * self.plot.height()


def _data_range(wl: np.ndarray, spectra: np.ndarray, bands: Optional[np.ndarray]) -> tuple:
    """(x0, x1, y0, y1): wavelengths (nm) of the spectra and image bands, values from min(0, lowest)
    to the highest; never empty."""
    x0, x1 = float(np.min(wl)), float(np.max(wl))
    if bands is not None and bands.size:
        x0, x1 = min(x0, float(bands.min())), max(x1, float(bands.max()))
    y0, y1 = 0.0, float(np.nanmax(spectra)) if np.isfinite(np.nanmax(spectra)) else 1.0
    y0 = min(y0, float(np.nanmin(spectra)))
    if y1 <= y0:
        y1 = y0 + 1.0
    if x1 <= x0:
        x1 = x0 + 1.0
    return x0, x1, y0, y1


def _draw_y_labels(p: QPainter, f: _Frame, fm, left: float) -> None:
    """Values at the bottom, middle and top of the plot, right-aligned in the ``left`` pixel margin."""
    for frac in (0.0, 0.5, 1.0):
        y = f.y0 + frac * (f.y1 - f.y0)
        p.drawText(QRectF(0, f.ty(y) - fm.height() / 2, left - 4, fm.height()), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                   f"{y:.2f}")


def _draw_x_labels(p: QPainter, f: _Frame, fm) -> None:
    """Wavelength labels (nm) under the plot: both ends, and the middle only where it cannot touch them."""
    x0, x1 = f.x0, f.x1
    labels = [(x0, f"{x0:.0f} nm", Qt.AlignmentFlag.AlignLeft), (x1, f"{x1:.0f} nm", Qt.AlignmentFlag.AlignRight)]
    mid = f"{0.5 * (x0 + x1):.0f} nm"
    ends = fm.horizontalAdvance(labels[0][1]) + fm.horizontalAdvance(labels[1][1])
    if f.plot.width() > ends + fm.horizontalAdvance(mid) + 24:
        labels.append((0.5 * (x0 + x1), mid, Qt.AlignmentFlag.AlignHCenter))
    for x, text, align in labels:
        w = fm.horizontalAdvance(text) + 4
        left_edge = f.tx(x) if align == Qt.AlignmentFlag.AlignLeft else (f.tx(x) - w if align == Qt.AlignmentFlag.AlignRight else f.tx(x) - w / 2)
        p.drawText(QRectF(left_edge, f.plot.bottom() + 2, w, fm.height()), align | Qt.AlignmentFlag.AlignTop, text)


def _draw_band_ticks(p: QPainter, f: _Frame, bands: np.ndarray) -> None:
    """The used image bands (nm) as 5-pixel ticks along the bottom edge."""
    p.setPen(QPen(QColor(128, 128, 128, 160), 1))
    for b in bands:
        x = f.tx(b)
        p.drawLine(QPointF(x, f.plot.bottom()), QPointF(x, f.plot.bottom() - 5))


def _spectrum_path(f: _Frame, wl: np.ndarray, values: np.ndarray, order: np.ndarray) -> QPainterPath:
    """The polyline of one spectrum (values (Bl,) at wl (Bl,) nm) in wavelength ``order``, broken at
    non-finite values."""
    path = QPainterPath()
    first = True
    for i in order:
        v = values[i]
        if not np.isfinite(v):
            first = True
            continue
        pt = QPointF(f.tx(wl[i]), f.ty(v))
        if first:
            path.moveTo(pt)
            first = False
        else:
            path.lineTo(pt)
    return path


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
        f = _Frame(plot, *_data_range(self.wl, self.spectra, self.bands))
        axis = QPen(pal.text().color())
        p.setPen(axis)
        p.drawRect(plot)
        _draw_y_labels(p, f, fm, left)
        _draw_x_labels(p, f, fm)
        if self.bands is not None:
            _draw_band_ticks(p, f, self.bands)
        self.legend_shown = self._draw_spectra_and_legend(p, f, axis, top, legend_w)
        p.end()

    def _draw_spectra_and_legend(self, p: QPainter, f: _Frame, axis: QPen, top: float, legend_w: float) -> int:
        """Every spectrum, and as many legend lines (colour, name) as fit right of the plot, the last
        saying "+N more" when not all do; returns the names shown."""
        fm = p.fontMetrics()
        order = np.argsort(self.wl)
        line_h = fm.height() + 2
        fits = max(1, int((self.height() - top) // line_h))  # legend lines that fit
        shown = len(self.names) if len(self.names) <= fits else fits - 1  # the last line says "+N more"
        lx = f.plot.right() + 8
        for k, name in enumerate(self.names):
            p.setPen(QPen(QColor(self.colors[k]), 1.6))
            p.drawPath(_spectrum_path(f, self.wl, self.spectra[:, k], order))  # every ticked spectrum, whatever the legend holds
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
        return shown
