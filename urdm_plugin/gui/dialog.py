"""The "URDM Unmixing…" dialog (Raster menu and toolbar).

Thin on top of core: it reads the input's metadata (``core.io.image.open_image``), the
library (``core.io.library.read_library``), checks them (``core.bands.match_library`` /
``check_reflectance_scale``) and shows every problem inline before Run is enabled. Run and
Preview start a :class:`gui.task.UnmixTask` in QGIS's task manager; the dialog stays
responsive and shows the progress. Choices are remembered with QgsSettings ("urdm/").
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
    QgsVectorFileWriter,
    QgsWkbTypes,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox, QgsMessageBar
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QStandardItem, QStandardItemModel
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .spectra_plot import SpectraPlot

SETTINGS_PREFIX = "urdm/"
QUALITIES = ("fast", "balanced", "best")
DEVICES = ("auto", "cpu", "cuda")
EXTENT_WHOLE, EXTENT_VIEW, EXTENT_MASK = "whole", "view", "mask"
PREVIEW_MAX_PIXELS = 128  # edge of the preview window (pixels)
AUTO_SELECT_ABOVE = 20


def extent_to_window(rect: QgsRectangle, gt, width: int, height: int) -> Optional[tuple]:
    """Pixel window ``(col0, row0, w, h)`` of a north-up image covering ``rect`` (in the
    image's CRS), clipped to the image; None when they do not overlap."""
    if gt[2] != 0 or gt[4] != 0 or gt[1] == 0 or gt[5] == 0:
        return None
    cols = sorted(((rect.xMinimum() - gt[0]) / gt[1], (rect.xMaximum() - gt[0]) / gt[1]))
    rows = sorted(((rect.yMaximum() - gt[3]) / gt[5], (rect.yMinimum() - gt[3]) / gt[5]))
    import math

    c0, c1 = max(0, math.floor(cols[0])), min(width, math.ceil(cols[1]))
    r0, r1 = max(0, math.floor(rows[0])), min(height, math.ceil(rows[1]))
    if c1 - c0 < 1 or r1 - r0 < 1:
        return None
    return (int(c0), int(r0), int(c1 - c0), int(r1 - r0))


def center_crop(window: tuple, size: int) -> tuple:
    """The central ``size``×``size`` part (at most) of a window."""
    c0, r0, w, h = window
    nw, nh = min(w, size), min(h, size)
    return (c0 + (w - nw) // 2, r0 + (h - nh) // 2, nw, nh)


def _settings() -> QgsSettings:
    return QgsSettings()


class UnmixDialog(QDialog):
    """The unmixing dialog. ``UnmixDialog(iface, parent=iface.mainWindow())``."""

    def __init__(self, iface, parent=None):
        super().__init__(parent)
        self.iface = iface
        self.setWindowTitle("URDM Unmixing")
        self.setObjectName("UrdmUnmixDialog")
        self.task = None
        self.preview_task = None
        self.info = None  # core.io.image.ImageInfo of the chosen layer
        self.library = None  # core.io.library.SpectralLibrary
        self.matched = None
        self.problems: list = []
        self.warnings: list = []
        self._installer = None
        self._loading = True
        self._build()
        self._fill_methods()
        self._restore()
        self._loading = False
        self._layer_changed()
        self.resize(760, 820)

    # ================================================================ layout
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        self.bar = QgsMessageBar(self)
        self.bar.setSizePolicy(QSizePolicy.Minimum, QSizePolicy.Fixed)
        outer.addWidget(self.bar)

        # -- input
        box_in = QGroupBox("Input")
        f = QFormLayout(box_in)
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setObjectName("layer_combo")
        f.addRow("Hyperspectral raster", self.layer_combo)
        self.layer_info = QLabel("")
        self.layer_info.setWordWrap(True)
        f.addRow("", self.layer_info)
        outer.addWidget(box_in)

        # -- library
        box_lib = QGroupBox("Endmember library")
        v = QVBoxLayout(box_lib)
        self.library_widget = QgsFileWidget()
        self.library_widget.setStorageMode(QgsFileWidget.GetFile)
        self.library_widget.setFilter("Spectral libraries (*.csv *.sli *.hdr *.txt);;All files (*)")
        self.library_widget.setDialogTitle("Choose an endmember library (CSV or ENVI .sli)")
        v.addWidget(self.library_widget)
        row = QHBoxLayout()
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Endmember", "Use", "Matched bands"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumWidth(280)
        row.addWidget(self.table, 1)
        self.plot = SpectraPlot()
        row.addWidget(self.plot, 1)
        v.addLayout(row)
        self.selection_hint = QLabel("")
        self.selection_hint.setWordWrap(True)
        v.addWidget(self.selection_hint)
        outer.addWidget(box_lib)

        # -- method
        box_m = QGroupBox("Method")
        g = QGridLayout(box_m)
        self.method_combo = QComboBox()
        self.method_model = QStandardItemModel(self.method_combo)
        self.method_combo.setModel(self.method_model)
        g.addWidget(QLabel("Method"), 0, 0)
        g.addWidget(self.method_combo, 0, 1)
        self.install_torch_button = QPushButton("Install PyTorch…")
        self.install_torch_button.setToolTip("URDM needs PyTorch; install its CPU build for QGIS")
        g.addWidget(self.install_torch_button, 0, 2)
        g.addWidget(QLabel("Quality"), 1, 0)
        self.quality_combo = QComboBox()
        self.quality_combo.addItems(QUALITIES)
        self.quality_combo.setToolTip("URDM: fast (fewest network evaluations), balanced, best (most)")
        g.addWidget(self.quality_combo, 1, 1)
        self.method_help = QLabel("")
        self.method_help.setWordWrap(True)
        g.addWidget(self.method_help, 2, 0, 1, 3)
        outer.addWidget(box_m)

        # -- advanced
        self.advanced = QgsCollapsibleGroupBox("Advanced")
        self.advanced.setCollapsed(True)
        fa = QFormLayout(self.advanced)
        lam_row = QHBoxLayout()
        self.lam_auto = QCheckBox("automatic")
        self.lam_auto.setChecked(True)
        self.lam_spin = QDoubleSpinBox()
        self.lam_spin.setDecimals(4)
        self.lam_spin.setRange(0.0001, 1000.0)
        self.lam_spin.setValue(0.5)
        lam_row.addWidget(self.lam_auto)
        lam_row.addWidget(self.lam_spin, 1)
        w = QWidget()
        w.setLayout(lam_row)
        fa.addRow("Regularisation λ", w)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        fa.addRow("Seed", self.seed_spin)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        fa.addRow("Device", self.device_combo)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(32, 4096)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setValue(256)
        self.tile_spin.setSuffix(" px")
        fa.addRow("Tile size", self.tile_spin)
        self.memory_spin = QSpinBox()
        self.memory_spin.setRange(16, 65536)
        self.memory_spin.setValue(512)
        self.memory_spin.setSuffix(" MiB")
        fa.addRow("Memory budget", self.memory_spin)
        outer.addWidget(self.advanced)

        # -- extent
        box_e = QGroupBox("Processing extent")
        ge = QGridLayout(box_e)
        self.extent_whole = QRadioButton("Whole layer")
        self.extent_view = QRadioButton("Current map view")
        self.extent_mask = QRadioButton("Inside polygons of")
        self.extent_group = QButtonGroup(self)
        for i, b in enumerate((self.extent_whole, self.extent_view, self.extent_mask)):
            self.extent_group.addButton(b, i)
        self.extent_whole.setChecked(True)
        self.mask_combo = QgsMapLayerComboBox()
        self.mask_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.mask_selected = QCheckBox("selected features only")
        ge.addWidget(self.extent_whole, 0, 0)
        ge.addWidget(self.extent_view, 0, 1)
        ge.addWidget(self.extent_mask, 1, 0)
        ge.addWidget(self.mask_combo, 1, 1)
        ge.addWidget(self.mask_selected, 1, 2)
        outer.addWidget(box_e)

        # -- output
        box_o = QGroupBox("Output")
        fo = QFormLayout(box_o)
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_widget.setDialogTitle("Folder for the results (each run gets a new subfolder)")
        fo.addRow("Output folder", self.output_widget)
        self.add_to_map = QCheckBox("Add results to the map")
        self.add_to_map.setChecked(True)
        fo.addRow("", self.add_to_map)
        outer.addWidget(box_o)

        # -- problems, progress, buttons
        self.problem_label = QLabel("")
        self.problem_label.setObjectName("problem_label")
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextFormat(Qt.RichText)
        outer.addWidget(self.problem_label)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        outer.addWidget(self.progress)
        outer.addWidget(self.status)
        buttons = QHBoxLayout()
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip(f"Run on the current map view only (at most {PREVIEW_MAX_PIXELS}×"
                                       f"{PREVIEW_MAX_PIXELS} pixels) and show it as temporary layers")
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel run")
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        buttons.addWidget(self.preview_button)
        buttons.addStretch(1)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        outer.addLayout(buttons)

        # -- signals
        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.library_widget.fileChanged.connect(self._library_changed)
        self.table.itemChanged.connect(self._table_changed)
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.lam_auto.toggled.connect(lambda on: self.lam_spin.setEnabled(not on))
        self.extent_group.buttonToggled.connect(lambda *_: self._validate())
        self.mask_combo.layerChanged.connect(lambda *_: self._validate())
        self.output_widget.fileChanged.connect(lambda *_: self._validate())
        self.install_torch_button.clicked.connect(self._install_torch)
        self.run_button.clicked.connect(self.run)
        self.preview_button.clicked.connect(self.preview)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.close_button.clicked.connect(self.close)
        QgsProject.instance().layersAdded.connect(self._update_excepted_layers)
        self._update_excepted_layers()

    # ================================================================ methods
    def _fill_methods(self) -> None:
        from ..core.engine.arrays import method_ready
        from ..core.methods.registry import METHODS

        self.method_model.clear()
        torch_missing = False
        for spec in METHODS:
            ok, reason = method_ready(spec.id)
            item = QStandardItem(spec.label if ok else f"{spec.label} — unavailable")
            item.setData(spec.id, Qt.UserRole)
            item.setToolTip(spec.description if ok else reason)
            if not ok:
                item.setEnabled(False)
                torch_missing |= spec.needs_torch and "torch" in reason.lower()
            self.method_model.appendRow(item)
        self.install_torch_button.setVisible(torch_missing)

    def method_ids(self) -> list:
        return [self.method_model.item(i).data(Qt.UserRole) for i in range(self.method_model.rowCount())]

    def method_enabled(self, method_id: str) -> bool:
        i = self.method_ids().index(method_id)
        return bool(self.method_model.item(i).flags() & Qt.ItemIsEnabled)

    def default_method(self) -> str:
        from ..core.methods.registry import DEFAULT_METHOD

        if DEFAULT_METHOD in self.method_ids() and self.method_enabled(DEFAULT_METHOD):
            return DEFAULT_METHOD
        return "urdm" if self.method_enabled("urdm") else "fcls"

    def set_method(self, method_id: str) -> bool:
        ids = self.method_ids()
        if method_id in ids and self.method_enabled(method_id):
            self.method_combo.setCurrentIndex(ids.index(method_id))
            return True
        return False

    def current_method(self) -> str:
        return self.method_combo.currentData(Qt.UserRole) or "fcls"

    def _method_changed(self, *_):
        from ..core.methods.registry import get_method

        m = get_method(self.current_method())
        self.quality_combo.setEnabled(m.id == "urdm")
        has_lam = any(p.name in ("lam", "lam_tv") for p in m.params)
        self.lam_auto.setEnabled(has_lam)
        self.lam_spin.setEnabled(has_lam and not self.lam_auto.isChecked())
        self.tile_spin.setEnabled(m.spatial)
        self.device_combo.setEnabled(m.needs_torch)
        self.method_help.setText(m.description)
        self._validate()

    def _install_torch(self):
        from .torch_support import offer_install

        def done(ok, log_text):
            from .task import log

            log("PyTorch install " + ("succeeded" if ok else "failed") + ":\n" + log_text[-4000:],
                Qgis.Info if ok else Qgis.Warning)
            if ok:
                self._fill_methods()
                self.set_method("urdm")
                self.bar.pushMessage("URDM", "PyTorch installed: the URDM method is available.", Qgis.Success, 8)
            else:
                self.bar.pushMessage("URDM", "Installing PyTorch failed; details are in the URDM log. "
                                     "Use the command shown under 'Show Details…' instead.", Qgis.Warning, 0)

        self._installer = offer_install(self, done)

    # ================================================================ input layer
    def _update_excepted_layers(self, *_):
        """Hide raster layers with fewer than two bands (not hyperspectral)."""
        few = [ly for ly in QgsProject.instance().mapLayers().values()
               if isinstance(ly, QgsRasterLayer) and ly.isValid() and ly.bandCount() < 2]
        self.layer_combo.setExceptedLayerList(few)

    def current_layer(self) -> Optional[QgsRasterLayer]:
        ly = self.layer_combo.currentLayer()
        return ly if isinstance(ly, QgsRasterLayer) else None

    def _layer_changed(self, *_):
        from ..core.errors import UrdmError
        from ..core.io.image import open_image

        self.info = None
        layer = self.current_layer()
        if layer is None:
            self.layer_info.setText("")
        elif layer.providerType() != "gdal":
            self.layer_info.setText("")
        else:
            try:
                self.info = open_image(layer.source())
                wl = self.info.wavelengths_nm
                txt = f"{self.info.width}×{self.info.height} pixels, {self.info.band_count} bands"
                if wl is not None:
                    txt += f", {wl.min():.0f}–{wl.max():.0f} nm ({self.info.wavelength_source})"
                else:
                    txt += ", no wavelengths"
                self.layer_info.setText(txt)
            except UrdmError as err:
                self.layer_info.setText("")
                self._layer_error = str(err)
        self._rematch()

    # ================================================================ library
    def _library_changed(self, *_):
        from ..core.errors import UrdmError
        from ..core.io.library import read_library

        self.library = None
        self._library_error = ""
        path = self.library_widget.filePath().strip()
        if path:
            try:
                self.library = read_library(path)
            except UrdmError as err:
                self._library_error = str(err)
        self._fill_table()
        self._rematch()

    def _fill_table(self) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        if self.library is not None:
            names = list(self.library.names)
            saved = set(_settings().value(SETTINGS_PREFIX + "excluded", [], type=list) or [])
            self.table.setRowCount(len(names))
            for i, name in enumerate(names):
                it = QTableWidgetItem(name)
                self.table.setItem(i, 0, it)
                chk = QTableWidgetItem()
                chk.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
                chk.setCheckState(Qt.Unchecked if name in saved else Qt.Checked)
                self.table.setItem(i, 1, chk)
                self.table.setItem(i, 2, QTableWidgetItem("–"))
        self.table.blockSignals(False)

    def checked_names(self) -> list:
        out = []
        for i in range(self.table.rowCount()):
            if self.table.item(i, 1).checkState() == Qt.Checked:
                out.append(self.table.item(i, 0).text())
        return out

    def set_checked(self, names) -> None:
        names = set(names)
        for i in range(self.table.rowCount()):
            self.table.item(i, 1).setCheckState(Qt.Checked if self.table.item(i, 0).text() in names else Qt.Unchecked)

    def _table_changed(self, item):
        if item.column() == 1:
            self._update_plot()
            self._validate()

    def _rematch(self) -> None:
        """Match the library to the layer's bands; fill the band counts and the plot."""
        from ..core.bands import match_library
        from ..core.errors import UrdmError

        self.matched = None
        self._match_error = ""
        if self.info is not None and self.library is not None:
            try:
                self.matched = match_library(self.info, self.library)
            except UrdmError as err:
                self._match_error = str(err)
        n = self.matched.report.n_used if self.matched is not None else None
        self.table.blockSignals(True)
        for i in range(self.table.rowCount()):
            it = self.table.item(i, 2)
            it.setText("–" if n is None else str(n))
            it.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.table.blockSignals(False)
        self._scale_warnings = self._check_scale()
        self._update_plot()
        self._validate()

    def _check_scale(self) -> list:
        """core.bands.check_reflectance_scale on a few rows of the image (metadata already read)."""
        if self.matched is None or self.info is None:
            return []
        import numpy as np

        from ..core.bands import check_reflectance_scale
        from ..core.errors import UrdmError
        from ..core.io.image import read_window

        try:
            cols = []
            bands = list(self.matched.band_indices)
            for r in np.unique(np.linspace(0, self.info.height - 1, 5).round().astype(int)):
                data, valid = read_window(self.info, bands, 0, int(r), self.info.width, 1)
                cols.append(data.reshape(len(bands), -1)[:, valid.reshape(-1)])
            Y = np.concatenate(cols, axis=1)
            return check_reflectance_scale(Y, self.matched.E) if Y.size else []
        except UrdmError as err:
            return [str(err)]

    def _update_plot(self) -> None:
        if self.library is None:
            self.plot.clear(self._library_error or "Choose a library to see its spectra")
            return
        names = self.checked_names()
        idx = [self.library.names.index(n) for n in names]
        bands = self.matched.wavelengths_nm if self.matched is not None else None
        from ..qgis_layers.style import CATEGORICAL

        colors = [CATEGORICAL[i % len(CATEGORICAL)] for i in idx]
        self.plot.set_data(self.library.wavelengths_nm, self.library.spectra[:, idx], names, bands, colors)

    # ================================================================ validation
    def extent_mode(self) -> str:
        if self.extent_view.isChecked():
            return EXTENT_VIEW
        if self.extent_mask.isChecked():
            return EXTENT_MASK
        return EXTENT_WHOLE

    def set_extent_mode(self, mode: str) -> None:
        {EXTENT_VIEW: self.extent_view, EXTENT_MASK: self.extent_mask}.get(mode, self.extent_whole).setChecked(True)

    def _validate(self) -> None:
        """Collect problems (Run disabled) and warnings (shown, Run allowed)."""
        if self._loading:
            return
        from ..core.engine.arrays import method_ready

        problems, warnings = [], []
        layer = self.current_layer()
        if layer is None:
            problems.append("Choose a hyperspectral raster layer (two or more bands).")
        elif layer.providerType() != "gdal":
            problems.append(f"Layer '{layer.name()}' is not a file GDAL reads (provider '{layer.providerType()}'). "
                            "Save it as a GeoTIFF (Export ▸ Save As…) and use that layer.")
        elif layer.bandCount() < 2:
            problems.append(f"Layer '{layer.name()}' has only {layer.bandCount()} band; unmixing needs a "
                            "multi- or hyperspectral raster.")
        elif self.info is None:
            problems.append(getattr(self, "_layer_error", "") or f"Cannot read layer '{layer.name()}'.")
        if not self.library_widget.filePath().strip():
            problems.append("Choose an endmember library (CSV or ENVI .sli).")
        elif self.library is None:
            problems.append(self._library_error)
        names = self.checked_names() if self.library is not None else []
        if self.library is not None and not names:
            problems.append("Tick at least one endmember in the table.")
        if self._match_error:
            problems.append(self._match_error)
        n_used = self.matched.report.n_used if self.matched is not None else None
        auto = self.library is not None and len(names) == len(self.library) and (
            len(names) > AUTO_SELECT_ABOVE or (n_used is not None and len(names) > n_used - 1))
        if n_used is not None and names and not auto and n_used < len(names) + 1:
            problems.append(f"Too few bands: {n_used} usable band(s) for {len(names)} endmembers; unmixing needs "
                            f"at least {len(names) + 1}. Untick some endmembers.")
        if self.info is not None and self.info.wavelengths_nm is None and self.library is not None \
                and self.library.wavelengths_nm is not None and not self._match_error:
            warnings.append("The layer has no wavelengths (unit unknown): library rows are matched to bands in "
                            "order. Add wavelengths to the raster's metadata to match by wavelength.")
        if self.info is not None and "inferred" in (self.info.wavelength_unit or ""):
            warnings.append(f"The layer's wavelength unit is not stated; taken as {self.info.wavelength_unit}.")
        if self.matched is not None:
            warnings.extend(self.matched.report.warnings)
        warnings.extend(getattr(self, "_scale_warnings", []) or [])
        if self.library is not None and names and auto:
            self.selection_hint.setText(
                f"All {len(names)} spectra ticked: the run selects up to "
                f"{min(AUTO_SELECT_ABOVE, max(1, (n_used or 2) - 1))} of them automatically from the image.")
        else:
            self.selection_hint.setText("")
        ok, reason = method_ready(self.current_method())
        if not ok:
            problems.append(reason)
        mode = self.extent_mode()
        if mode == EXTENT_MASK and self.mask_combo.currentLayer() is None:
            problems.append("Choose a polygon layer for the mask, or another processing extent.")
        if mode == EXTENT_MASK and self.mask_selected.isChecked() and self.mask_combo.currentLayer() is not None \
                and self.mask_combo.currentLayer().selectedFeatureCount() == 0:
            problems.append(f"No feature of '{self.mask_combo.currentLayer().name()}' is selected.")
        if mode == EXTENT_VIEW and self.info is not None and self._view_window() is None:
            problems.append("The current map view does not overlap the layer. Zoom to the layer or choose "
                            "'Whole layer'.")
        out = self.output_widget.filePath().strip()
        if not out:
            problems.append("Choose an output folder (each run writes a new subfolder there).")
        elif os.path.exists(out) and not (os.path.isdir(out) and os.access(out, os.W_OK)):
            problems.append(f"Output folder {out} is not a writable folder. Choose another one.")
        self.problems, self.warnings = problems, warnings
        self._show_messages()
        running = self.task is not None
        self.run_button.setEnabled(not problems and not running)
        preview_ok = all("output folder" in p.lower() for p in problems)  # preview writes to a temp folder
        self.preview_button.setEnabled(preview_ok and self.preview_task is None and self.info is not None)

    def _show_messages(self) -> None:
        import html

        parts = [f'<span style="color:#b00020">✖ {html.escape(p)}</span>' for p in self.problems]
        parts += [f'<span style="color:#9a6700">⚠ {html.escape(w)}</span>' for w in self.warnings]
        if not parts and self.matched is not None:
            parts.append(f'<span style="color:#1b7f3b">✔ {html.escape(self.matched.report.summary())}</span>')
        self.problem_label.setText("<br>".join(parts))

    # ================================================================ settings
    def _restore(self) -> None:
        s = _settings()
        p = SETTINGS_PREFIX
        lib = s.value(p + "library", "", type=str)
        if lib:
            self.library_widget.blockSignals(True)
            self.library_widget.setFilePath(lib)
            self.library_widget.blockSignals(False)
        if not self.set_method(s.value(p + "method", "", type=str)):
            self.set_method(self.default_method())
        q = s.value(p + "quality", "balanced", type=str)
        self.quality_combo.setCurrentIndex(QUALITIES.index(q) if q in QUALITIES else 1)
        self.lam_auto.setChecked(s.value(p + "lambda_auto", True, type=bool))
        self.lam_spin.setValue(s.value(p + "lambda", 0.5, type=float))
        self.lam_spin.setEnabled(not self.lam_auto.isChecked())
        self.seed_spin.setValue(s.value(p + "seed", 0, type=int))
        d = s.value(p + "device", "auto", type=str)
        self.device_combo.setCurrentIndex(DEVICES.index(d) if d in DEVICES else 0)
        self.tile_spin.setValue(s.value(p + "tile_size", 256, type=int))
        self.memory_spin.setValue(s.value(p + "memory_mb", 512, type=int))
        self.set_extent_mode(s.value(p + "extent", EXTENT_WHOLE, type=str))
        self.mask_selected.setChecked(s.value(p + "mask_selected", False, type=bool))
        out = s.value(p + "output_dir", "", type=str) or str(Path.home() / "urdm_results")
        self.output_widget.setFilePath(out)
        self.add_to_map.setChecked(s.value(p + "add_to_map", True, type=bool))
        # input: the active layer if it fits, else the last one used
        layer = None
        if self.iface is not None:
            try:
                active = self.iface.activeLayer()
            except Exception:  # noqa: BLE001 - a partial iface
                active = None
            if isinstance(active, QgsRasterLayer) and active.bandCount() >= 2:
                layer = active
        if layer is None:
            last = s.value(p + "layer_source", "", type=str)
            for ly in QgsProject.instance().mapLayers().values():
                if isinstance(ly, QgsRasterLayer) and ly.source() == last and ly.bandCount() >= 2:
                    layer = ly
                    break
        if layer is None:
            for ly in QgsProject.instance().mapLayers().values():
                if isinstance(ly, QgsRasterLayer) and ly.bandCount() >= 2:
                    layer = ly
                    break
        self.layer_combo.setLayer(layer)
        self._library_changed()
        self._method_changed()

    def save_settings(self) -> None:
        s = _settings()
        p = SETTINGS_PREFIX
        s.setValue(p + "library", self.library_widget.filePath())
        s.setValue(p + "method", self.current_method())
        s.setValue(p + "quality", self.quality_combo.currentText())
        s.setValue(p + "lambda_auto", self.lam_auto.isChecked())
        s.setValue(p + "lambda", self.lam_spin.value())
        s.setValue(p + "seed", self.seed_spin.value())
        s.setValue(p + "device", self.device_combo.currentText())
        s.setValue(p + "tile_size", self.tile_spin.value())
        s.setValue(p + "memory_mb", self.memory_spin.value())
        s.setValue(p + "extent", self.extent_mode())
        s.setValue(p + "mask_selected", self.mask_selected.isChecked())
        s.setValue(p + "output_dir", self.output_widget.filePath())
        s.setValue(p + "add_to_map", self.add_to_map.isChecked())
        layer = self.current_layer()
        if layer is not None:
            s.setValue(p + "layer_source", layer.source())
        if self.library is not None:
            checked = set(self.checked_names())
            s.setValue(p + "excluded", [n for n in self.library.names if n not in checked])

    # ================================================================ building a run
    def _view_window(self) -> Optional[tuple]:
        """Pixel window of the current map view over the layer (None: no overlap / no canvas)."""
        layer = self.current_layer()
        if layer is None or self.info is None or self.iface is None:
            return None
        try:
            canvas = self.iface.mapCanvas()
            rect = canvas.extent()
            dest = canvas.mapSettings().destinationCrs()
        except Exception:  # noqa: BLE001 - no canvas
            return None
        if not isinstance(rect, QgsRectangle):
            return None
        if dest.isValid() and layer.crs().isValid() and dest != layer.crs():
            ct = QgsCoordinateTransform(dest, layer.crs(), QgsProject.instance())
            try:
                rect = ct.transformBoundingBox(rect)
            except Exception:  # noqa: BLE001 - QgsCsException
                return None
        return extent_to_window(rect, self.info.geotransform, self.info.width, self.info.height)

    def _export_mask(self, layer: QgsRasterLayer) -> str:
        """The chosen polygons in the raster's CRS as a temporary GeoPackage; returns its path."""
        from ..core.errors import InputImageError

        vl = self.mask_combo.currentLayer()
        if vl is None or QgsWkbTypes.geometryType(vl.wkbType()) != QgsWkbTypes.PolygonGeometry:
            raise InputImageError("The mask layer is not a polygon layer", "Choose a polygon layer")
        folder = tempfile.mkdtemp(prefix="urdm_mask_")
        path = os.path.join(folder, "mask.gpkg")
        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName = "GPKG"
        opts.onlySelectedFeatures = self.mask_selected.isChecked()
        if vl.crs().isValid() and layer.crs().isValid() and vl.crs() != layer.crs():
            opts.ct = QgsCoordinateTransform(vl.crs(), layer.crs(), QgsProject.instance())
        res = QgsVectorFileWriter.writeAsVectorFormatV3(vl, path, QgsProject.instance().transformContext(), opts)
        if res[0] != QgsVectorFileWriter.NoError:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise InputImageError(f"Cannot write the mask polygons of '{vl.name()}' ({res[1]})",
                                  "Check the layer, or choose another processing extent")
        return folder

    def build_options(self, window=None, mask_path=None):
        from ..core.engine.pipeline import UnmixOptions
        from ..core.methods.registry import get_method

        m = get_method(self.current_method())
        params = {}
        names = self.checked_names()
        lam = 0.0 if self.lam_auto.isChecked() else float(self.lam_spin.value())
        if m.id == "urdm":
            params["lam"] = lam
        elif m.id == "tv":
            params["lam_tv"] = lam
        all_ticked = self.library is not None and len(names) == len(self.library)
        return UnmixOptions(
            method=m.id, endmembers=None if all_ticked else names, quality=self.quality_combo.currentText(),
            params=params, seed=int(self.seed_spin.value()), device=self.device_combo.currentText(),
            memory_mb=int(self.memory_spin.value()), tile_size=int(self.tile_spin.value()),
            window=window, mask_path=mask_path)

    def _start(self, preview: bool) -> Optional[object]:
        from ..core.errors import UrdmError
        from .task import UnmixTask, make_run_dir

        self._validate()
        layer = self.current_layer()
        if layer is None or self.info is None:
            return None
        cleanup = []
        window = None
        mask = None
        try:
            mode = self.extent_mode()
            if preview:
                base = self._view_window() or (0, 0, self.info.width, self.info.height)
                window = center_crop(base, PREVIEW_MAX_PIXELS)
            elif mode == EXTENT_VIEW:
                window = self._view_window()
            if mode == EXTENT_MASK:
                folder = self._export_mask(layer)
                cleanup.append(folder)
                mask = os.path.join(folder, "mask.gpkg")
            options = self.build_options(window, mask)
        except UrdmError as err:
            self.bar.pushMessage("URDM", str(err), Qgis.Critical, 0)
            return None
        if preview:
            tmp = tempfile.mkdtemp(prefix="urdm_preview_")
            out_dir = os.path.join(tmp, "preview")
        else:
            base_dir = self.output_widget.filePath().strip()
            try:
                os.makedirs(base_dir, exist_ok=True)
            except OSError as err:
                self.bar.pushMessage("URDM", f"Cannot create the output folder {base_dir} ({err.strerror}). "
                                     "Choose another folder.", Qgis.Critical, 0)
                return None
            out_dir = make_run_dir(base_dir, layer.name(), options.method)
        self.save_settings()
        task = UnmixTask(layer.source(), self.library_widget.filePath(), out_dir, options, layer.name(),
                         add_to_map=self.add_to_map.isChecked() or preview, iface=self.iface,
                         cleanup=cleanup, preview=preview,
                         description=("URDM preview: " if preview else "URDM unmixing: ") + layer.name())
        task.progressChanged.connect(lambda v: self.progress.setValue(int(v)))
        task.message.connect(self.status.setText)
        task.on_finished = self._task_finished
        if preview:
            self.preview_task = task
        else:
            self.task = task
        self.progress.setValue(0)
        self.status.setText("Starting…")
        self.cancel_button.setEnabled(True)
        self._validate()
        QgsApplication.taskManager().addTask(task)
        return task

    def run(self):
        """Start the unmixing run in the background; returns the task (None if not started)."""
        if self.problems or self.task is not None:
            self._validate()
            if self.problems or self.task is not None:
                return None
        return self._start(preview=False)

    def preview(self):
        """Run the chosen method on the current view (a small window) as temporary layers."""
        if self.preview_task is not None:
            return None
        return self._start(preview=True)

    def cancel_run(self) -> None:
        for t in (self.task, self.preview_task):
            if t is not None:
                t.cancel()
        self.status.setText("Cancelling…")

    def _task_finished(self, task) -> None:
        if task is self.task:
            self.task = None
        if task is self.preview_task:
            self.preview_task = None
        if self.task is None and self.preview_task is None:
            self.cancel_button.setEnabled(False)
        if task.result is not None:
            self.progress.setValue(100)
            what = "Preview" if task.preview else "Run"
            self.status.setText(f"{what} finished in {task.result.seconds:.1f} s: {task.result.out_dir}")
        elif task.was_cancelled:
            self.progress.setValue(0)
            self.status.setText("Cancelled; no output was written.")
        else:
            self.progress.setValue(0)
            self.status.setText("")
            self.bar.pushMessage("URDM", task.error, Qgis.Critical, 0)
        self._validate()

    def closeEvent(self, event):  # noqa: N802
        if not self._loading:
            self.save_settings()
        super().closeEvent(event)
