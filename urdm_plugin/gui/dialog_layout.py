"""The dialog's widgets and their signals (layout only; method parameters come from the registry)."""

from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox, QgsMessageBar
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QStandardItemModel
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from .parameter_widgets import ParameterWidgets
from .spectra_plot import SpectraPlot

#: Edge of the preview window (pixels).
PREVIEW_MAX_PIXELS = 128
#: Most of the dialog's height the messages take before they scroll.
MESSAGES_MAX_SHARE = 0.3


class StatusLabel(QLabel):
    """A label that takes no room while it has nothing to say."""

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setVisible(bool(text))


class DialogLayout:
    """Mixed into :class:`gui.dialog.UnmixDialog`; works on its widgets."""

    def _fit_messages(self) -> None:
        """Give the messages the height of their wrapped text (at most MESSAGES_MAX_SHARE of the
        dialog; beyond that they scroll)."""
        width = self.messages.viewport().width() or self.width()
        need = self.problem_label.heightForWidth(max(width, 100)) if self.problem_label.text() else 0
        cap = int(MESSAGES_MAX_SHARE * self.height())
        self.messages.setFixedHeight(max(0, min(need, cap)))

    def resizeEvent(self, event):  # noqa: N802 - Qt's name: the wrapping changes with the width
        super().resizeEvent(event)
        self._fit_messages()

    def _build(self) -> None:
        # at 1366 × 768: two columns side by side — the library (its table as tall as the dialog
        # allows) on the left, input, method, extent, output and Advanced on the right (they
        # scroll only when Advanced is open) — and the messages, progress and buttons below both
        main, left, side = self._build_columns()
        side.addWidget(self._build_input_box())
        left.addWidget(self._build_library_box(), 1)
        side.addWidget(self._build_method_box())
        side.addWidget(self._build_extent_box())
        side.addWidget(self._build_output_box())
        side.addWidget(self._build_advanced_box())
        side.addStretch(1)
        self._build_messages(main)
        main.addLayout(self._build_buttons())
        self._connect_signals()

    def _build_columns(self) -> tuple:
        """The message bar and the two columns: (the dialog's layout, the left column's, the
        right column's, which scrolls)."""
        main = QVBoxLayout(self)
        self.bar = QgsMessageBar(self)
        self.bar.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)
        main.addWidget(self.bar)
        self.columns = QSplitter(Qt.Orientation.Horizontal)
        self.columns.setChildrenCollapsible(False)
        main.addWidget(self.columns, 1)
        left = QWidget()
        outer = QVBoxLayout(left)
        outer.setContentsMargins(0, 0, 0, 0)
        self.columns.addWidget(left)
        self.settings_scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # it wraps, never scrolls sideways
        right = QWidget()
        scroll.setWidget(right)
        side = QVBoxLayout(right)
        side.setContentsMargins(0, 0, 0, 0)
        self.columns.addWidget(scroll)
        self.columns.setStretchFactor(0, 3)
        self.columns.setStretchFactor(1, 2)
        self.columns.setSizes([700, 520])  # scaled to the dialog's width; the user may drag it
        return main, outer, side

    def _build_input_box(self) -> QGroupBox:
        """The image to unmix and what it holds."""
        box_in = QGroupBox("Input")
        f = QFormLayout(box_in)
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setObjectName("layer_combo")
        self.layer_combo.setToolTip("The image to unmix: a raster layer with two or more bands and, ideally, "
                                    "wavelengths in its metadata; a sensor product's main file (EnMAP, EMIT, "
                                    "PRISMA) is read as the product")
        f.addRow("Hyperspectral raster", self.layer_combo)
        self.layer_info = QLabel("")
        self.layer_info.setWordWrap(True)
        f.addRow("", self.layer_info)
        return box_in

    def _build_library_box(self) -> QGroupBox:
        """The library file, its band match, the filter and tick buttons, the table of spectra
        beside their plot, and the selection hint."""
        box_lib = QGroupBox("Endmember library")
        v = QVBoxLayout(box_lib)
        self.library_widget = QgsFileWidget()
        self.library_widget.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.library_widget.setFilter("Spectral libraries (*.csv *.sli *.hdr *.txt);;All files (*)")
        self.library_widget.setDialogTitle("Choose an endmember library (CSV or ENVI .sli)")
        self.library_widget.setToolTip("Spectra of the materials to map: a CSV (wavelength_nm, one column per "
                                       "material) or an ENVI spectral library (.sli + .hdr)")
        v.addWidget(self.library_widget)
        self.library_summary = QLabel("")  # band matching, once for the whole library
        self.library_summary.setWordWrap(True)
        v.addWidget(self.library_summary)
        tools = QHBoxLayout()
        self.library_filter = QLineEdit()
        self.library_filter.setPlaceholderText("Filter spectra by name")
        self.library_filter.setClearButtonEnabled(True)
        self.library_filter.setToolTip("Show only spectra whose name contains this text; All / None / Invert "
                                       "act on the spectra shown")
        tools.addWidget(self.library_filter, 1)
        self.tick_all_button = QPushButton("All")
        self.tick_none_button = QPushButton("None")
        self.tick_invert_button = QPushButton("Invert")
        for b, tip in ((self.tick_all_button, "Tick every spectrum shown"),
                       (self.tick_none_button, "Untick every spectrum shown"),
                       (self.tick_invert_button, "Invert the ticks of the spectra shown")):
            b.setToolTip(tip)
            b.setAutoDefault(False)
            tools.addWidget(b)
        self.tick_count = QLabel("")
        tools.addWidget(self.tick_count)
        v.addLayout(tools)
        v.addWidget(self._build_library_table(), 1)
        self.selection_hint = QLabel("")
        self.selection_hint.setWordWrap(True)
        hint_row = QHBoxLayout()
        hint_row.addWidget(self.selection_hint, 1)
        self.stop_check_button = QPushButton("Stop check")
        self.stop_check_button.setAutoDefault(False)
        self.stop_check_button.setToolTip("Stop checking the automatic selection's fit before Run (it runs in "
                                          "the background and never blocks Run)")
        self.stop_check_button.setVisible(False)
        hint_row.addWidget(self.stop_check_button, 0, Qt.AlignmentFlag.AlignTop)
        v.addLayout(hint_row)
        return box_lib

    def _build_library_table(self) -> QSplitter:
        """The table of spectra (name, Use tick) beside their plot."""
        self.library_split = QSplitter(Qt.Orientation.Horizontal)
        self.library_split.setChildrenCollapsible(False)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Endmember", "Use"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)  # more rows
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # "Actinolite … NMNH80714" keeps both ends
        self.table.setMinimumWidth(280)
        self.table.setToolTip("Tick the materials to map; with more ticked than the run can use (over 20, "
                              "or more than the bands allow) the run selects among the ticked ones")
        self.library_split.addWidget(self.table)
        self.plot = SpectraPlot()
        self.library_split.addWidget(self.plot)
        return self.library_split

    def _build_method_box(self) -> QGroupBox:
        """Method, PyTorch install, quality, and the method's help text."""
        box_m = QGroupBox("Method")
        g = QGridLayout(box_m)
        self.method_combo = QComboBox()
        self.method_model = QStandardItemModel(self.method_combo)
        self.method_combo.setModel(self.method_model)
        self.method_combo.setToolTip("How abundances are estimated: FCLS (fast, per pixel) to URDM "
                                     "(diffusion prior, spatially coherent maps); see the text below")
        g.addWidget(QLabel("Method"), 0, 0)
        g.addWidget(self.method_combo, 0, 1)
        self.install_torch_button = QPushButton("Install PyTorch…")
        self.install_torch_button.setToolTip("URDM needs PyTorch; install its CPU build for QGIS")
        g.addWidget(self.install_torch_button, 0, 2)
        self.parameters = ParameterWidgets()
        g.addWidget(QLabel(self.parameters.label("quality")), 1, 0)
        g.addWidget(self.parameters.widget("quality"), 1, 1)
        self.method_help = QLabel("")
        self.method_help.setWordWrap(True)
        g.addWidget(self.method_help, 2, 0, 1, 3)
        return box_m

    def _build_extent_box(self) -> QGroupBox:
        """Whole layer, current map view, or inside polygons of a layer."""
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
        self.mask_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.mask_selected = QCheckBox("selected features only")
        self.extent_whole.setToolTip("Unmix every pixel of the layer")
        self.extent_view.setToolTip("Unmix only the part of the layer the map shows now")
        self.extent_mask.setToolTip("Unmix only pixels whose centre lies inside the polygons of a layer; "
                                    "the others stay nodata")
        self.mask_combo.setToolTip("The polygon layer that limits the extent")
        self.mask_selected.setToolTip("Use only the polygons selected in that layer")
        ge.addWidget(self.extent_whole, 0, 0)
        ge.addWidget(self.extent_view, 0, 1)
        ge.addWidget(self.extent_mask, 1, 0)
        ge.addWidget(self.mask_combo, 1, 1)
        ge.addWidget(self.mask_selected, 2, 1)  # below its layer: the column stays narrow
        return box_e

    def _build_output_box(self) -> QGroupBox:
        """The output folder and whether results go on the map."""
        box_o = QGroupBox("Output")
        fo = QFormLayout(box_o)
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.output_widget.setDialogTitle("Folder for the results (each run gets a new subfolder)")
        self.output_widget.setToolTip("Each run writes a new subfolder <layer>_<method>_<time> here, never "
                                      "replacing an earlier one")
        fo.addRow("Output folder", self.output_widget)
        self.add_to_map = QCheckBox("Add results to the map")
        self.add_to_map.setChecked(True)
        self.add_to_map.setToolTip("Add the abundance maps, dominant material and residual as a styled group")
        fo.addRow("", self.add_to_map)
        return box_o

    def _build_advanced_box(self) -> QgsCollapsibleGroupBox:
        """The method's other parameters and the engine options, generated from the registry."""
        self.advanced = QgsCollapsibleGroupBox("Advanced")
        self.advanced.setCollapsed(True)
        fa = QFormLayout(self.advanced)
        for name in self.parameters.method_params:  # generated from the registry
            if name != "quality":
                fa.addRow(self.parameters.label(name), self.parameters.widget(name))
        for name in self.parameters.engine_options:
            fa.addRow(self.parameters.label(name), self.parameters.widget(name))
        return self.advanced

    def _build_messages(self, main: QVBoxLayout) -> None:
        """Problems (scrolling past MESSAGES_MAX_SHARE of the dialog) and the status line."""
        self.problem_label = QLabel("")
        self.problem_label.setObjectName("problem_label")
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextFormat(Qt.TextFormat.RichText)
        # the messages get the height their wrapped text needs (the columns above give it up):
        # squeezed by the layout, a label showed one line and hid the poor-fit warning below it;
        # past MESSAGES_MAX_SHARE of the dialog they scroll
        self.messages = QScrollArea()
        self.messages.setWidgetResizable(True)
        self.messages.setFrameShape(QScrollArea.Shape.NoFrame)
        self.messages.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.messages.setWidget(self.problem_label)
        main.addWidget(self.messages)
        self.status = StatusLabel("")
        self.status.setWordWrap(True)
        self.status.setVisible(False)
        main.addWidget(self.status)  # under the messages; hidden while empty

    def _build_buttons(self) -> QHBoxLayout:
        """Help, Preview, the progress bar, Run, Cancel run and Close in one row."""
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        buttons = QHBoxLayout()
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip(f"Run on the current map view only (at most {PREVIEW_MAX_PIXELS}×"
                                       f"{PREVIEW_MAX_PIXELS} pixels) and show it as temporary layers")
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.setToolTip("Unmix in the background (the task manager shows progress); disabled "
                                   "while a problem is listed above")
        self.cancel_button = QPushButton("Cancel run")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop the run at the next block; nothing is written")
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Close the dialog (a run keeps going in the background)")
        self.help_button = QPushButton("Help")
        self.help_button.setAutoDefault(False)
        self.help_button.setToolTip("Open the user guide (USAGE.md, section 'The dialog')")
        buttons.addWidget(self.help_button)
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.progress, 1)  # in the buttons' row: one row less, more for the table
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        return buttons

    def _connect_signals(self) -> None:
        """Every widget to what it changes or starts."""
        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.library_widget.fileChanged.connect(self._library_changed)
        self.table.itemChanged.connect(self._table_changed)
        self.library_filter.textChanged.connect(self._filter_rows)
        self.tick_all_button.clicked.connect(lambda: self._tick_shown("all"))
        self.tick_none_button.clicked.connect(lambda: self._tick_shown("none"))
        self.tick_invert_button.clicked.connect(lambda: self._tick_shown("invert"))
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.extent_group.buttonToggled.connect(lambda *_: self._validate())
        self.mask_combo.layerChanged.connect(lambda *_: self._validate())
        self.output_widget.fileChanged.connect(lambda *_: self._validate())
        self.install_torch_button.clicked.connect(self._install_torch)
        self.run_button.clicked.connect(self.run)
        self.preview_button.clicked.connect(self.preview)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.close_button.clicked.connect(self.close)
        self.help_button.clicked.connect(self.open_help)
        self.stop_check_button.clicked.connect(self._stop_selection_check)
        QgsProject.instance().layersAdded.connect(self._update_excepted_layers)
        self._update_excepted_layers()
