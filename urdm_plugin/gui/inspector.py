"""Pixel inspector: a map tool and a dock showing, for a clicked pixel (or the mean of a
drawn rectangle) of a finished run, the observed spectrum against its reconstruction
E·a, the residual and the abundances; "Add to library…" appends the spectrum to a CSV
endmember library.

The toolbar action is enabled only while the project holds a layer carrying
``urdm/run_json``; everything shown is read from the run's files
(:mod:`urdm_plugin.gui.inspector_data`), so it keeps working in a reopened project.
"""

from __future__ import annotations

import html
import os
from typing import Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsWkbTypes,
)
from qgis.gui import QgsMapToolEmitPoint, QgsMapToolExtent, QgsRubberBand
from qgis.PyQt.QtCore import QObject, Qt, QTimer
from qgis.PyQt.QtGui import QColor, QIcon
from qgis.PyQt.QtWidgets import (
    QAction,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import UrdmError
from ..qgis_layers.tags import current_run_json, project_has_runs
from .inspector_data import (
    PixelInspection,
    add_spectrum_to_library,
    inspect_pixel,
    inspect_rectangle,
)
from .inspector_plots import AbundanceBars, SpectrumPlot


class InspectorDock(QDockWidget):
    def __init__(self, parent=None):
        super().__init__("URDM pixel inspector", parent)
        self.setObjectName("urdmPixelInspectorDock")
        body = QWidget(self)
        lay = QVBoxLayout(body)
        self.info = QLabel("Choose the URDM pixel inspector tool and click a result pixel.", body)
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = SpectrumPlot(body)
        self.bars = AbundanceBars(body)
        buttons = QHBoxLayout()
        self.pixel_button = QPushButton("Pixel", body)
        self.pixel_button.setCheckable(True)
        self.pixel_button.setToolTip("Click a pixel on the map")
        self.rect_button = QPushButton("Rectangle mean", body)
        self.rect_button.setCheckable(True)
        self.rect_button.setToolTip("Drag a rectangle on the map: the mean of its pixels is shown")
        self.add_button = QPushButton("Add to library…", body)
        self.add_button.setToolTip("Append the observed spectrum shown to an endmember library (CSV)")
        self.add_button.setEnabled(False)
        for b in (self.pixel_button, self.rect_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.add_button)
        lay.addWidget(self.info)
        lay.addWidget(self.plot, 1)
        lay.addWidget(QLabel("Abundances", body))
        lay.addWidget(self.bars)
        lay.addLayout(buttons)
        self.setWidget(body)

    def show_result(self, data: Optional[PixelInspection], message: str = "") -> None:
        self.plot.set_data(data)
        self.bars.set_values(data.abundances if data is not None else {})
        self.add_button.setEnabled(data is not None)
        if data is not None:
            run = os.path.basename(os.path.dirname(data.run_json))
            total = sum(data.abundances.values())
            self.info.setText(f"<b>{run}</b>: {data.label} — x {data.x:.2f}, y {data.y:.2f}<br>"
                              f"residual RMSE {data.rmse:.4g}; abundance sum {total:.3f}<br>"
                              f"<small>observed spectrum from {html.escape(data.image)}</small>")
        else:
            self.info.setText(message)


# ---------------------------------------------------------------------------------------
# controller: action, tools, dock, project signals
# ---------------------------------------------------------------------------------------


class PixelMapTool(QgsMapToolEmitPoint):
    """Emits ``canvasClicked(point in canvas CRS, button)``; a cross-hair cursor."""

    def __init__(self, canvas):
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)


INSPECTOR_READY = "URDM pixel inspector: click a pixel of a result layer, or drag a rectangle"
INSPECTOR_DISABLED = ("URDM pixel inspector is off: the project has no URDM result layer. Run an unmixing, "
                      "or open a finished run's map sheet (Raster ▸ URDM Unmixing ▸ Map sheet from run…), "
                      "which adds its layers")


class InspectorController(QObject):
    """Owns the inspector action, map tools and dock; :meth:`unload` undoes everything."""

    def __init__(self, iface, project=None, icon: Optional[QIcon] = None):
        super().__init__()
        self.iface = iface
        self.project = project or QgsProject.instance()
        parent = iface.mainWindow() if iface is not None else None
        self.action = QAction(icon or QIcon(), "URDM pixel inspector", parent)
        self.action.setObjectName("urdmPixelInspectorAction")
        self.action.setCheckable(True)
        # no brackets: QGIS shows a toolbar tooltip without its bracketed part
        self.action.setToolTip("Inspect a pixel of an unmixing result: observed vs reconstructed spectrum, "
                               "residual and abundances. Needs a URDM result layer in the project.")
        self.action.toggled.connect(self._on_toggled)
        self.dock: Optional[InspectorDock] = None
        self.canvas = iface.mapCanvas() if iface is not None else None
        self.point_tool = PixelMapTool(self.canvas) if self.canvas is not None else None
        self.rect_tool = QgsMapToolExtent(self.canvas) if self.canvas is not None else None
        if self.point_tool is not None:
            self.point_tool.canvasClicked.connect(self._on_click)
            self.rect_tool.extentChanged.connect(self._on_rect)
            self.point_tool.deactivated.connect(self._on_tool_deactivated)
            self.rect_tool.deactivated.connect(self._on_tool_deactivated)
        self.band: Optional[QgsRubberBand] = None
        self.current: Optional[PixelInspection] = None
        self.last_library_dir = ""
        self._signals = [
            (self.project.layersAdded, self._refresh_later),
            (self.project.layersRemoved, self._refresh_later),
            (self.project.cleared, self._refresh_later),
            (self.project.readProject, self._refresh_later),
        ]
        for sig, slot in self._signals:
            sig.connect(slot)
        self.refresh_enabled()

    # -- enabling ------------------------------------------------------------------------
    def refresh_enabled(self) -> None:
        has = project_has_runs(self.project)
        self.action.setEnabled(has)
        # the reason, in the status bar while the pointer is on the (disabled) button
        self.action.setStatusTip(INSPECTOR_READY if has else INSPECTOR_DISABLED)
        if not has and self.action.isChecked():
            self.action.setChecked(False)

    def _refresh_later(self, *args) -> None:
        self.refresh_enabled()
        QTimer.singleShot(0, self._safe_refresh)  # properties set right after adding a layer

    def _safe_refresh(self) -> None:
        try:
            self.refresh_enabled()
        except RuntimeError:  # unloaded meanwhile
            pass

    # -- dock and tools ------------------------------------------------------------------
    def ensure_dock(self) -> InspectorDock:
        if self.dock is None:
            self.dock = InspectorDock(self.iface.mainWindow() if self.iface is not None else None)
            self.dock.pixel_button.clicked.connect(lambda on: self._use_tool(self.point_tool if on else None))
            self.dock.rect_button.clicked.connect(lambda on: self._use_tool(self.rect_tool if on else None))
            self.dock.add_button.clicked.connect(self.add_to_library_interactive)
            if self.iface is not None:
                self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.show()
        return self.dock

    def _use_tool(self, tool) -> None:
        if self.canvas is None:
            return
        if tool is None:
            if self.canvas.mapTool() in (self.point_tool, self.rect_tool):
                self.canvas.unsetMapTool(self.canvas.mapTool())
            return
        self.canvas.setMapTool(tool)
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        tool = self.canvas.mapTool() if self.canvas is not None else None
        if self.dock is not None:
            self.dock.pixel_button.setChecked(tool is self.point_tool)
            self.dock.rect_button.setChecked(tool is self.rect_tool)
        ours = tool is not None and tool in (self.point_tool, self.rect_tool)
        if self.action.isChecked() != ours:
            self.action.blockSignals(True)
            self.action.setChecked(ours)
            self.action.blockSignals(False)

    def _on_toggled(self, on: bool) -> None:
        if on:
            self.ensure_dock()
            self._use_tool(self.point_tool)
            self._show_input_images()
        else:
            self._use_tool(None)
            self._clear_band()
        self._sync_buttons()

    def _show_input_images(self) -> None:
        """Name each run's input image in the dock before the first click opens it."""
        from ..qgis_layers.tags import run_jsons_in_project
        from .inspector_data import input_images_text

        text = input_images_text(run_jsons_in_project(self.project))
        if self.dock is not None and text:
            self.dock.info.setText("Click a result pixel. " + text)

    def _on_tool_deactivated(self) -> None:
        QTimer.singleShot(0, self._sync_after_switch)

    def _sync_after_switch(self) -> None:
        try:
            self._sync_buttons()
        except RuntimeError:
            pass

    # -- inspecting ----------------------------------------------------------------------
    def _canvas_crs(self) -> QgsCoordinateReferenceSystem:
        if self.canvas is None:
            return QgsCoordinateReferenceSystem()
        return self.canvas.mapSettings().destinationCrs()

    def _run(self) -> Optional[str]:
        return current_run_json(self.iface, self.project)

    def _show(self, fn, *args) -> Optional[PixelInspection]:
        dock = self.ensure_dock()
        run = self._run()
        if run is None:
            dock.show_result(None, "No URDM result layer in the project.")
            return None
        try:
            data = fn(run, *args, project=self.project)
        except UrdmError as err:
            self.current = None
            dock.show_result(None, str(err))
            return None
        self.current = data
        if data is None:
            dock.show_result(None, "Outside the unmixing result: click inside its extent.")
            self._clear_band()
        else:
            dock.show_result(data)
            self._highlight(data)
        return data

    def inspect_canvas_point(self, point: QgsPointXY) -> Optional[PixelInspection]:
        """Inspect the pixel under ``point`` (canvas CRS) and show it in the dock."""
        return self._show(inspect_pixel, QgsPointXY(point), self._canvas_crs())

    def inspect_canvas_rect(self, rect) -> Optional[PixelInspection]:
        return self._show(inspect_rectangle, rect, self._canvas_crs())

    def _on_click(self, point, button) -> None:
        if button == Qt.MouseButton.LeftButton:
            self.inspect_canvas_point(point)

    def _on_rect(self, rect) -> None:
        if rect is not None and not rect.isEmpty():
            self.inspect_canvas_rect(rect)
        elif rect is not None:
            self.inspect_canvas_point(rect.center())

    def _clear_band(self) -> None:
        if self.band is not None and self.canvas is not None:
            self.canvas.scene().removeItem(self.band)
        self.band = None

    def _highlight(self, data: PixelInspection) -> None:
        if self.canvas is None or not data.footprint:
            return
        self._clear_band()
        geom = QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in data.footprint + data.footprint[:1]]])
        src = QgsCoordinateReferenceSystem.fromWkt(data.crs_wkt) if data.crs_wkt else QgsCoordinateReferenceSystem()
        dst = self._canvas_crs()
        if src.isValid() and dst.isValid() and src != dst:
            geom.transform(QgsCoordinateTransform(src, dst, self.project.transformContext()))
        band = QgsRubberBand(self.canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
        band.setStrokeColor(QColor(255, 0, 0))
        band.setFillColor(QColor(255, 0, 0, 40))
        band.setWidth(2)
        band.setToGeometry(geom, None)
        self.band = band

    # -- library -------------------------------------------------------------------------
    def add_current_to_library(self, csv_path: str, name: str):
        """Append the shown observed spectrum to ``csv_path``; raises UrdmError."""
        if self.current is None:
            raise UrdmError("No pixel is shown", "Click a pixel (or draw a rectangle) first")
        d = self.current
        return add_spectrum_to_library(csv_path, name, d.wavelengths_nm, d.observed)

    def add_to_library_interactive(self) -> None:
        if self.current is None or self.dock is None:
            return
        start = self.last_library_dir or os.path.dirname(self.current.run_json)
        path, _ = QFileDialog.getSaveFileName(
            self.dock, "Add spectrum to an endmember library (CSV)", start, "CSV library (*.csv)",
            options=QFileDialog.Option.DontConfirmOverwrite)
        if not path:
            return
        if not path.lower().endswith((".csv", ".txt")):
            path += ".csv"
        default = f"pixel r{self.current.row + 1} c{self.current.col + 1}" if self.current.n_pixels == 1 \
            else f"mean r{self.current.row + 1} c{self.current.col + 1} ({self.current.n_pixels} px)"
        name, ok = QInputDialog.getText(self.dock, "Spectrum name", "Name of the new spectrum:", text=default)
        if not ok:
            return
        try:
            lib = self.add_current_to_library(path, name)
        except UrdmError as err:
            QMessageBox.warning(self.dock, "URDM pixel inspector", str(err))
            return
        self.last_library_dir = os.path.dirname(path)
        msg = f"Added '{name.strip()}' to {os.path.basename(path)} ({len(lib)} spectra)"
        try:
            self.iface.messageBar().pushSuccess("URDM pixel inspector", msg)
        except (AttributeError, RuntimeError):
            self.dock.info.setText(msg)

    # -- teardown ------------------------------------------------------------------------
    def unload(self) -> None:
        for sig, slot in self._signals:
            try:
                sig.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        self._signals = []
        self._clear_band()
        if self.canvas is not None:
            try:
                if self.canvas.mapTool() in (self.point_tool, self.rect_tool):
                    self.canvas.unsetMapTool(self.canvas.mapTool())
            except RuntimeError:
                pass
        if self.dock is not None:
            if self.iface is not None:
                self.iface.removeDockWidget(self.dock)
            self.dock.close()
            self.dock.deleteLater()
            self.dock = None
        for tool in (self.point_tool, self.rect_tool):
            if tool is not None:
                tool.deleteLater()
        self.point_tool = self.rect_tool = None
        self.action.deleteLater()
