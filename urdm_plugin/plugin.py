"""The QGIS plugin object: menu entry, toolbar button and the Processing provider.

Kept thin: everything it shows or runs lives in ``gui/`` and ``processing/``; the engine in
``core/``. Nothing heavy (torch, GDAL reads) happens at load time.
"""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .paths import icon_path
from .translation import install_translator, remove_translator, tr

MENU = "URDM Unmixing"


class UrdmPlugin:
    """Created by :func:`urdm_plugin.classFactory`; ``iface`` is None under qgis_process."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions: list[QAction] = []
        self.toolbar = None
        self.dialog = None
        self.translator = None

    # -- Processing (qgis_process calls only this) ---------------------------------
    def initProcessing(self):  # noqa: N802 (QGIS's name)
        from .gui.torch_support import add_deps_to_path

        add_deps_to_path()  # torch installed by the plugin into <settings>/python/urdm_deps
        if self.provider is None:
            from .processing.provider import UrdmProvider

            self.provider = UrdmProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    # -- GUI ---------------------------------------------------------------------
    def initGui(self):  # noqa: N802 (QGIS's name)
        if self.translator is None:  # i18n/urdm_plugin_<locale>.qm when one ships
            self.translator = install_translator()
        self.initProcessing()
        if self.iface is None:
            return
        action = QAction(QIcon(str(icon_path())), tr("URDM Unmixing…"), self.iface.mainWindow())
        action.setObjectName("urdmUnmixAction")
        action.setToolTip(tr("Unmix a hyperspectral raster into abundance maps (URDM)"))
        action.triggered.connect(self.show_dialog)
        # Our own toolbar: QGIS hides the Raster toolbar in a fresh profile, so a button
        # there would be invisible to most users.
        self.toolbar = self.iface.addToolBar(MENU)
        self.toolbar.setObjectName("urdmToolBar")
        self.toolbar.addAction(action)
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)
        self._extra_gui = []
        try:  # optional tools (pixel inspector, map sheet) register themselves here
            from .gui.run_menu import install_extras

            self._extra_gui = install_extras(self)
        except ImportError:
            pass

    def unload(self):
        for undo in reversed(getattr(self, "_extra_gui", [])):
            undo()
        self._extra_gui = []
        if self.iface is not None:
            for action in self.actions:
                self.iface.removePluginRasterMenu(MENU, action)
                action.deleteLater()
        if self.toolbar is not None:
            self.iface.mainWindow().removeToolBar(self.toolbar)
            self.toolbar.deleteLater()
            self.toolbar = None
        self.actions = []
        if self.dialog is not None:
            for task in (self.dialog.task, self.dialog.preview_task):
                if task is not None:  # a run keeps going and adds its layers, but reports to
                    task.on_finished = None  # no dialog: this one is deleted now
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        remove_translator(self.translator)
        self.translator = None

    def show_dialog(self):
        from .gui.dialog import UnmixDialog

        if self.dialog is None:
            self.dialog = UnmixDialog(self.iface, parent=self.iface.mainWindow())
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
