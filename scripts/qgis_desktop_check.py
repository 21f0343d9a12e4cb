"""The real QGIS desktop with the plugin, scripted (run inside QGIS via --code): the result
groups in the Layers panel, and what the plugin leaves alive when it is unloaded.

    URDM_CHECK_OUT=build/desktop_check.json \\
        xvfb-run -a -s "-screen 0 1366x768x24" make qgis QGIS_ARGS="--code scripts/qgis_desktop_check.py"

Steps, each recorded in the JSON report (URDM_CHECK_OUT): a demo scene is written and loaded;
the plugin's dialog runs Preview and Run on it (its real background tasks); for each result
group the layer tree's expanded flag and what the Layers panel (the QgsLayerTreeView) shows
are compared; a screenshot of the main window is saved next to the report; the plugin is
unloaded with qgis.utils.unloadPlugin and every Qt object the plugin made (dialog, actions,
toolbar, timers, tasks, map tools, processing provider, connections to the project) is
looked for; then QGIS quits by QApplication.quit() — the teardown the issue saw crash.
"""

import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import qgis.utils
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QCoreApplication, QObject, QTimer
from qgis.PyQt.QtWidgets import QApplication

ROOT = Path(os.environ.get("URDM_ROOT", Path.cwd()))
OUT = Path(os.environ.get("URDM_CHECK_OUT", ROOT / "build" / "desktop_check.json")).absolute()
REPORT: dict = {"steps": []}


def _note(step: str, **facts) -> None:
    REPORT["steps"].append(dict(step=step, **facts))
    OUT.write_text(json.dumps(REPORT, indent=1, default=str))


def _wait(cond, timeout=300.0) -> bool:
    t0 = time.monotonic()
    while not cond():
        QCoreApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - t0 > timeout:
            return False
    for _ in range(20):
        QCoreApplication.processEvents()
        time.sleep(0.01)
    return True


def _groups_shown(iface) -> list:
    """(name, tree says expanded, Layers panel shows expanded) of every top-level group."""
    view = iface.layerTreeView()  # its model is a proxy of the layer tree model: map the node
    out = []
    for g in QgsProject.instance().layerTreeRoot().findGroups():
        out.append((g.name(), g.isExpanded(), bool(view.isExpanded(view.node2index(g)))))
    return out


def _plugin_objects(app) -> list:
    """Widgets and QObjects the plugin's Python code made that are still alive."""
    alive = []
    for w in app.allWidgets():
        name = w.objectName()
        if name.startswith(("Urdm", "urdm")) or type(w).__module__.startswith("urdm_plugin"):
            alive.append(f"{type(w).__name__} {name}")
    for obj in gc.get_objects():
        try:
            mod = type(obj).__module__
        except Exception:  # noqa: BLE001 - some objects have no usable type
            continue
        if isinstance(obj, QObject) and mod.startswith("urdm_plugin"):
            try:
                obj.objectName()
                alive.append(f"{type(obj).__module__}.{type(obj).__name__}")
            except RuntimeError:  # the C++ side is gone: only a Python shell remains
                pass
    return sorted(set(alive))


def _run():
    iface = qgis.utils.iface
    iface.mainWindow().resize(1366, 740)
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_demo_scene import write_scene

    tmp = Path(tempfile.mkdtemp(prefix="urdm_desktop_"))
    scene = write_scene(tmp, height=60, width=80, n_bands=60, n_endmembers=3, seed=4, stem="check")
    layer = QgsRasterLayer(scene["image"], "check scene")
    QgsProject.instance().addMapLayer(layer)
    iface.mapCanvas().setExtent(layer.extent())
    plugin = qgis.utils.plugins["urdm_plugin"]
    plugin.show_dialog()
    dlg = plugin.dialog
    dlg.layer_combo.setLayer(layer)
    dlg.library_widget.setFilePath(scene["library"])
    dlg.output_widget.setFilePath(str(tmp / "results"))
    dlg.set_method("fcls")
    _wait(lambda: True)
    dlg.preview()
    ok = _wait(lambda: dlg.preview_task is None)
    _note("preview", finished=ok, groups=_groups_shown(iface))
    dlg.run()
    ok = _wait(lambda: dlg.task is None)
    _note("run", finished=ok, groups=_groups_shown(iface))
    run_json = os.path.join(dlg.status.text().split(": ", 1)[-1], "run.json")
    # the other tools an analyst uses on a result: the pixel inspector and the map sheet
    plugin._inspector.action.setChecked(True)
    _wait(lambda: True)
    inspector = plugin._inspector
    inspector._use_tool(inspector.point_tool)
    center = layer.extent().center()
    inspector._on_click(center, None)
    _note("inspector", map_tool=type(iface.mapCanvas().mapTool()).__name__,
          dock_visible=inspector.dock is not None and inspector.dock.isVisible())
    from urdm_plugin.qgis_layers.map_sheet import open_map_sheet

    sheet = open_map_sheet(iface, run_json)
    _wait(lambda: True)
    _note("map sheet", opened=sheet is not None, designers=len(iface.openLayoutDesigners()))
    sheet = inspector = None
    iface.mainWindow().activateWindow()
    shot = OUT.with_suffix(".png")
    iface.mainWindow().grab().save(str(shot))
    _note("screenshot", path=str(shot))
    if os.environ.get("URDM_KEEP_DIALOG") == "1":  # quit with the dialog open, a check running
        dlg.table.item(0, 1).setCheckState(0)
    else:
        dlg.close()
    dlg = plugin = None  # the script holds no reference to what unloading must delete
    _wait(lambda: True)
    if os.environ.get("URDM_UNLOAD", "1") == "1":
        qgis.utils.unloadPlugin("urdm_plugin")
        # deleteLater() acts when control is back in the main event loop, not in processEvents()
        QTimer.singleShot(1000, _after_unload)
    else:  # quit with the plugin loaded, as a script that simply ends does
        _note("quit without unloading", plugin_objects=_plugin_objects(QApplication.instance()))
        QApplication.instance().quit()


def _after_unload():
    iface = qgis.utils.iface
    gc.collect()
    tasks = [t.description() for t in QgsApplication.taskManager().tasks()]
    provider = QgsApplication.processingRegistry().providerById("urdm")
    _note("unloaded", plugin_objects=_plugin_objects(QApplication.instance()), tasks=tasks,
          provider_registered=provider is not None, map_tool=type(iface.mapCanvas().mapTool()).__name__)
    _note("quit")
    QApplication.instance().quit()


QTimer.singleShot(3000, _run)
