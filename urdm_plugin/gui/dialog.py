"""The "URDM Unmixing…" dialog (Raster menu and toolbar).

Thin on top of core: it reads the input's metadata (``core.io.image.open_image``) and the
library (``core.io.library.read_library``), asks :func:`core.engine.plan.plan_run` what a
run of the current choices would do, and shows every problem inline before Run is enabled.
Run and Preview start a :class:`gui.task.UnmixTask` in QGIS's task manager; the dialog stays
responsive and shows the progress. The class is assembled from one mixin per job:
layout (``dialog_layout``), checks (``dialog_checks``), settings (``dialog_settings``),
extent and mask (``dialog_extent``), launching runs (``dialog_launch``); this module holds
the choice of input, library and method.
"""

from __future__ import annotations

import shutil
from typing import Optional

from qgis.core import Qgis, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QStandardItem
from qgis.PyQt.QtWidgets import QDialog, QTableWidgetItem

from ..core.engine.sample import SampleCache
from ..core.errors import UrdmError
from .dialog_checks import DialogChecks
from .dialog_extent import (
    EXTENT_MASK,
    EXTENT_VIEW,
    EXTENT_WHOLE,
    DialogExtent,
    center_crop,
    extent_to_window,
)
from .dialog_launch import DialogLaunch
from .dialog_layout import PREVIEW_MAX_PIXELS, DialogLayout
from .dialog_settings import SETTINGS_PREFIX, DialogSettings, settings
from .selection_check import DialogSelectionCheck

__all__ = ["EXTENT_MASK", "EXTENT_VIEW", "EXTENT_WHOLE", "PREVIEW_MAX_PIXELS", "UnmixDialog", "center_crop",
           "extent_to_window"]


def dialog_size(available) -> tuple:
    """(width, height) px of the dialog on a screen whose available area is ``available``
    (QRect or None): two columns need about 1150 px; at 1366 × 768 it fills the screen less
    the window frame and task bar."""
    if available is None:
        return 1280, 760
    return min(1280, available.width() - 40), min(760, available.height() - 40)


class UnmixDialog(DialogLayout, DialogChecks, DialogSelectionCheck, DialogSettings, DialogExtent, DialogLaunch,
                  QDialog):
    """The unmixing dialog. ``UnmixDialog(iface, parent=iface.mainWindow())``."""

    def __init__(self, iface, parent=None):
        super().__init__(parent)
        self.iface = iface
        self.setWindowTitle("URDM Unmixing")
        self.setObjectName("UrdmUnmixDialog")
        self.task = None
        self.preview_task = None
        self._preview_dirs: set = set()  # temporary folders of this dialog's previews
        self.info = None  # core.io.image.ImageInfo of the chosen layer
        self.library = None  # core.io.library.SpectralLibrary
        self.matched = None
        self.problems: list = []
        self.warnings: list = []
        self._installer = None
        # every mixin's state, declared before _build: building the widgets already fires
        # their signals (the layer combo drops single-band layers) into the checks
        self._layer_text = ""  # what the layer is (size, bands, wavelengths)
        self._layer_error = ""  # why the layer cannot be read ("" when it can)
        self._hidden_note = ""  # which single-band layers the combo leaves out
        self._library_error = ""  # why the library cannot be read ("" when it can)
        self._plan_cache = None  # (info, library, options repr, RunPlan)
        self._samples = SampleCache()  # the plans' pixel samples: read once per layer and bands
        self._folder_check = None  # (output folder, its problem or "")
        self._init_selection_check()
        self._loading = True
        self._build()
        self._fill_methods()
        self._restore()
        self._loading = False
        self._layer_changed()
        self.resize(*dialog_size(self.screen().availableGeometry() if self.screen() else None))

    def _fill_methods(self) -> None:
        from ..core.methods.registry import METHODS

        self.method_model.clear()
        torch_missing = False
        for spec in METHODS:
            ok, reason = spec.available()
            item = QStandardItem(spec.label if ok else f"{spec.label} — unavailable")
            item.setData(spec.id, Qt.ItemDataRole.UserRole)
            item.setToolTip(spec.description if ok else reason)
            if not ok:
                item.setEnabled(False)
                torch_missing |= spec.needs_torch and "torch" in reason.lower()
            self.method_model.appendRow(item)
        self.install_torch_button.setVisible(torch_missing)

    def method_ids(self) -> list:
        return [self.method_model.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.method_model.rowCount())]

    def method_enabled(self, method_id: str) -> bool:
        i = self.method_ids().index(method_id)
        return bool(self.method_model.item(i).flags() & Qt.ItemFlag.ItemIsEnabled)

    def default_method(self) -> str:
        from ..core.methods.registry import default_method

        if self.method_enabled(default_method()):
            return default_method()
        return "urdm" if self.method_enabled("urdm") else "fcls"

    def set_method(self, method_id: str) -> bool:
        ids = self.method_ids()
        if method_id in ids and self.method_enabled(method_id):
            self.method_combo.setCurrentIndex(ids.index(method_id))
            return True
        return False

    def current_method(self) -> str:
        return self.method_combo.currentData(Qt.ItemDataRole.UserRole) or "fcls"

    def current_spec(self):
        from ..core.methods.registry import get_method

        return get_method(self.current_method())

    def _method_changed(self, *_):
        m = self.current_spec()
        self.parameters.enable_for(m)
        self.method_help.setText(m.description)
        self._validate()

    def _install_torch(self):
        from .torch_support import offer_install

        def done(ok, log_text):
            from .task import log

            log("PyTorch install " + ("succeeded" if ok else "failed") + ":\n" + log_text[-4000:],
                Qgis.MessageLevel.Info if ok else Qgis.MessageLevel.Warning)
            if ok:
                self._fill_methods()
                self.set_method("urdm")
                self._push("PyTorch installed: the URDM method is available.", Qgis.MessageLevel.Success, 8)
            else:
                self._push("Installing PyTorch failed; details are in the URDM log. "
                           "Use the command shown under 'Show Details…' instead.", Qgis.MessageLevel.Warning, 0)

        self._installer = offer_install(self, done)

    def _update_excepted_layers(self, *_):
        """Hide raster layers with fewer than two bands (not hyperspectral)."""
        few = [ly for ly in QgsProject.instance().mapLayers().values()
               if isinstance(ly, QgsRasterLayer) and ly.isValid() and ly.bandCount() < 2]
        self.layer_combo.setExceptedLayerList(few)
        # say why they are missing from the list, rather than let them vanish (not this
        # plugin's own result maps, which nobody would expect there)
        from ..qgis_layers.tags import run_json_of_layer

        few = [ly for ly in few if not run_json_of_layer(ly)]
        self._hidden_note = (f"{len(few)} single-band layer{'s' if len(few) > 1 else ''} not listed "
                             f"({', '.join(ly.name() for ly in few[:3])}{', …' if len(few) > 3 else ''}): "
                             "unmixing needs a hyperspectral raster" if few else "")
        self._show_layer_info()

    def _show_layer_info(self) -> None:
        self.layer_info.setText("\n".join(t for t in (self._layer_text, self._hidden_note) if t))

    def current_layer(self) -> Optional[QgsRasterLayer]:
        ly = self.layer_combo.currentLayer()
        return ly if isinstance(ly, QgsRasterLayer) else None

    def _layer_changed(self, *_):
        from ..core.io.image import open_image

        self.info = None
        self._layer_text = self._layer_error = ""
        layer = self.current_layer()
        if layer is not None and layer.providerType() == "gdal":
            try:
                self.info = open_image(layer.source())  # a sensor product: the product behind it
                wl = self.info.wavelengths_nm
                txt = f"{self.info.product} product: " if self.info.product else ""
                txt += f"{self.info.width}×{self.info.height} pixels, {self.info.band_count} bands"
                if wl is not None:
                    txt += f", {wl.min():.0f}–{wl.max():.0f} nm ({self.info.wavelength_source})"
                else:
                    txt += ", no wavelengths"
                self._layer_text = txt
            except UrdmError as err:
                self._layer_error = str(err)
        self._show_layer_info()
        self._rematch()

    def _library_changed(self, *_):
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
        self.table.setSortingEnabled(False)  # rows are filled by index
        self.table.setRowCount(0)
        if self.library is not None:
            names = list(self.library.names)
            saved = set(settings().value(SETTINGS_PREFIX + "excluded", [], type=list) or [])
            self.table.setRowCount(len(names))
            for i, name in enumerate(names):
                it = QTableWidgetItem(name)
                it.setToolTip(name)
                it.setData(Qt.ItemDataRole.UserRole, i)  # library order, for sorting back
                self.table.setItem(i, 0, it)
                chk = QTableWidgetItem()
                chk.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
                chk.setCheckState(Qt.CheckState.Unchecked if name in saved else Qt.CheckState.Checked)
                self.table.setItem(i, 1, chk)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # library order until clicked
        self.table.setSortingEnabled(True)
        self.table.blockSignals(False)
        self._filter_rows(self.library_filter.text())
        self._update_count()

    def checked_names(self) -> list:
        """Ticked spectra, in library order (whatever the table's sort order)."""
        out = []
        for i in range(self.table.rowCount()):
            if self.table.item(i, 1).checkState() == Qt.CheckState.Checked:
                out.append((self.table.item(i, 0).data(Qt.ItemDataRole.UserRole), self.table.item(i, 0).text()))
        return [name for _i, name in sorted(out)]

    def set_checked(self, names) -> None:
        names = set(names)
        self.table.blockSignals(True)
        for i in range(self.table.rowCount()):
            self.table.item(i, 1).setCheckState(Qt.CheckState.Checked if self.table.item(i, 0).text() in names else Qt.CheckState.Unchecked)
        self.table.blockSignals(False)
        self._ticks_changed()

    def _filter_rows(self, text: str) -> None:
        """Hide the rows whose name does not contain ``text`` (case-insensitive)."""
        t = (text or "").strip().lower()
        for i in range(self.table.rowCount()):
            self.table.setRowHidden(i, bool(t) and t not in self.table.item(i, 0).text().lower())

    def _tick_shown(self, how: str) -> None:
        """Tick ("all"), untick ("none") or invert ("invert") the rows the filter shows."""
        self.table.blockSignals(True)  # one update at the end, not one per row
        for i in range(self.table.rowCount()):
            if self.table.isRowHidden(i):
                continue
            it = self.table.item(i, 1)
            on = {"all": True, "none": False}.get(how, it.checkState() != Qt.CheckState.Checked)
            it.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.table.blockSignals(False)
        self._ticks_changed()

    def _update_count(self) -> None:
        n = self.table.rowCount()
        self.tick_count.setText(f"{len(self.checked_names())} of {n} ticked" if n else "")

    def _ticks_changed(self) -> None:
        self._update_count()
        self._rematch()  # the ticked spectra are the run's: their match, fit, plot and checks

    def _table_changed(self, item):
        if item.column() == 1:
            self._ticks_changed()

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

    def _push(self, text: str, level, duration: int = 0):
        """A message in the dialog's bar, shown whole (gui.messages: wrapped, never cut)."""
        from .messages import push_message

        return push_message(self.bar, text, level, duration)

    def open_help(self) -> bool:
        """Open the user guide in the system's viewer (a file shipped with the plugin, so it
        works offline); False, with a message, when it cannot be opened."""
        from qgis.PyQt.QtCore import QUrl
        from qgis.PyQt.QtGui import QDesktopServices

        from ..paths import usage_path

        path = usage_path()
        if path.is_file() and QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            return True
        self._push(f"The user guide could not be opened ({path}); it is also on the "
                   "plugin's homepage (Plugins ▸ Manage and Install Plugins).", Qgis.MessageLevel.Warning, 8)
        return False

    def closeEvent(self, event):  # noqa: N802
        self._cancel_selection_check()
        if not self._loading:
            self.save_settings()
        self._drop_previews()
        super().closeEvent(event)

    def _drop_previews(self) -> None:
        """Closing the dialog removes its preview layers and their temporary folders."""
        from qgis.core import QgsProject

        from ..qgis_layers.groups import PREVIEW_PREFIX
        from .task import remove_preview_group

        if self.preview_task is not None:
            return  # still running: its folder goes with the next preview or dialog
        project = QgsProject.instance()
        for g in list(project.layerTreeRoot().findGroups()):
            if g.name().startswith(PREVIEW_PREFIX):
                remove_preview_group(project, g.name())
        for d in list(self._preview_dirs):
            shutil.rmtree(d, ignore_errors=True)
            self._preview_dirs.discard(d)
