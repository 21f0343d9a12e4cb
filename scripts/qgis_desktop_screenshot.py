"""Screenshot of the real QGIS desktop with a finished run (run inside QGIS via --code).

    URDM_RUN=demo_output/run_... URDM_SHOT=docs/screenshots/qgis_desktop.png \
        xvfb-run -a -s "-screen 0 1366x768x24" make qgis QGIS_ARGS="--code scripts/qgis_desktop_screenshot.py"

Loads the demo scene and the run's layers through the plugin's own result styling, opens
the plugin's dialog, grabs the main window (filling the 1366 × 768 screen) and the
dialog, then quits QGIS (clearing the project first: QGIS 3.22 can crash in quit() with
several result layers loaded, see USAGE.md "Scripted QGIS sessions").
"""

import os

import qgis.utils
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication


def _shot():
    iface = qgis.utils.iface
    iface.mainWindow().setGeometry(0, 0, 1366, 768)  # the whole screen (Xvfb has no window manager)
    run_dir = os.path.abspath(os.environ["URDM_RUN"])
    scene = QgsRasterLayer(os.path.join(os.path.dirname(run_dir), "demo_scene.tif"), "demo_scene")
    QgsProject.instance().addMapLayer(scene)
    from urdm_plugin.qgis_layers.load import add_run_to_map

    add_run_to_map(os.path.join(run_dir, "run.json"), input_name="demo_scene")
    iface.mapCanvas().setExtent(scene.extent())
    iface.mapCanvas().refreshAllLayers()
    plugin = qgis.utils.plugins["urdm_plugin"]
    plugin.show_dialog()
    QTimer.singleShot(6000, lambda: _save(iface, plugin))


def _save(iface, plugin):
    out = os.path.abspath(os.environ.get("URDM_SHOT", "qgis_desktop.png"))
    iface.mainWindow().grab().save(out)
    plugin.dialog.grab().save(out.replace(".png", "_dialog.png"))
    plugin.dialog.close()
    QgsProject.instance().clear()
    QApplication.instance().quit()


QTimer.singleShot(4000, _shot)
