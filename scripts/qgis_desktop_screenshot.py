"""Screenshot of the real QGIS desktop with a finished run (run inside QGIS via --code).

    URDM_RUN=demo_output/run_... URDM_SHOT=docs/screenshots/qgis_desktop.png \
        xvfb-run -a -s "-screen 0 1600x1000x24" make qgis QGIS_ARGS="--code scripts/qgis_desktop_screenshot.py"

Loads the demo scene and the run's layers through the plugin's own result styling, opens
the plugin's dialog, grabs the main window and the dialog, then quits QGIS.
"""

import os

import qgis.utils
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication


def _shot():
    iface = qgis.utils.iface
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
    iface.mainWindow().grab().scaled(1400, 875, 1, 1).save(out)
    plugin.dialog.grab().save(out.replace(".png", "_dialog.png"))
    QApplication.instance().quit()


QTimer.singleShot(4000, _shot)
