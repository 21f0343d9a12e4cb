"""Extra plugin GUI: the pixel inspector (toolbar + menu) and "Map sheet from run…" (menu).

``plugin.initGui`` calls :func:`install_extras`, which returns zero-argument callables that
undo each addition; ``plugin.unload`` calls them in reverse order.
"""

from __future__ import annotations

import os

MENU = "URDM Unmixing"


def _icon():
    from qgis.core import QgsApplication

    return QgsApplication.getThemeIcon("/mActionIdentify.svg")


def choose_run_and_open_map_sheet(iface, project=None) -> None:
    """Ask for a run.json (starting at the active result layer's run) and open its sheet."""
    from qgis.core import QgsProject
    from qgis.PyQt.QtWidgets import QFileDialog

    from ..qgis_layers.map_sheet import open_map_sheet
    from ..qgis_layers.tags import current_run_json

    project = project or QgsProject.instance()
    start = current_run_json(iface, project) or ""
    parent = iface.mainWindow() if iface is not None else None
    path, _ = QFileDialog.getOpenFileName(parent, "Map sheet from run: choose the run's run.json",
                                          start if os.path.exists(start) else "",
                                          "URDM run (run.json);;All files (*)")
    if path:
        open_map_sheet(iface, path, project=project)


def install_extras(plugin) -> list:
    """Add the inspector action (the plugin's toolbar + menu) and the map-sheet menu entry.

    Returns the undo callables. Harmless without an ``iface`` (returns []).
    """
    iface = getattr(plugin, "iface", None)
    if iface is None:
        return []
    from qgis.PyQt.QtGui import QIcon
    from qgis.PyQt.QtWidgets import QAction

    from .inspector import InspectorController

    undo = []
    controller = InspectorController(iface, icon=_icon())
    undo.append(controller.unload)
    action = controller.action
    toolbar = getattr(plugin, "toolbar", None)
    if toolbar is not None:  # beside the Unmix button, on the plugin's own toolbar
        toolbar.addAction(action)
        undo.append(lambda: toolbar.removeAction(action))
    else:
        iface.addRasterToolBarIcon(action)
        undo.append(lambda: iface.removeRasterToolBarIcon(action))
    iface.addPluginToRasterMenu(MENU, action)
    undo.append(lambda: iface.removePluginRasterMenu(MENU, action))

    sheet = QAction(QIcon(), "Map sheet from run…", iface.mainWindow())
    sheet.setObjectName("urdmMapSheetAction")
    sheet.setToolTip("Lay out the abundance maps of a finished run on a print layout (PDF/PNG)")
    sheet.triggered.connect(lambda: choose_run_and_open_map_sheet(iface))
    iface.addPluginToRasterMenu(MENU, sheet)
    undo.append(sheet.deleteLater)
    undo.append(lambda: iface.removePluginRasterMenu(MENU, sheet))
    plugin._inspector = controller
    return undo
