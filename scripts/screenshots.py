#!/usr/bin/env python3
"""Screenshots for docs/USAGE.md: the real dialog on a real loaded layer, and the results.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshots.py [--method fcls]

Writes docs/screenshots/dialog.png (the dialog filled in on the demo scene, at the size it
opens at on the screen: take it at 1366 × 768, a common laptop screen) and
docs/screenshots/results.png (layer tree with the styled result group beside map canvases
of the abundance maps and the dominant-material map), after a real run through the
dialog's background task.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHOTS = ROOT / "docs" / "screenshots"


def _wait(cond, timeout=600):
    from qgis.PyQt.QtCore import QCoreApplication

    t0 = time.monotonic()
    while not cond():
        QCoreApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - t0 > timeout:
            raise SystemExit("timed out")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="", help="method for the run (default: the dialog's default)")
    a = ap.parse_args(argv)

    from qgis.core import QgsApplication, QgsMultiBandColorRenderer, QgsProject, QgsRasterLayer
    from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsLayerTreeView, QgsMapCanvas
    from qgis.PyQt.QtWidgets import (
        QGridLayout,
        QHBoxLayout,
        QLabel,
        QMainWindow,
        QVBoxLayout,
        QWidget,
    )

    app = QgsApplication([], True)
    app.initQgis()
    from qgis.core import QgsLayerTreeModel

    spec = importlib.util.spec_from_file_location("mds", ROOT / "scripts" / "make_demo_scene.py")
    mds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mds)
    tmp = Path(tempfile.mkdtemp(prefix="urdm_shots_"))
    scene = mds.write_scene(tmp / "data")

    project = QgsProject.instance()
    layer = QgsRasterLayer(scene["image"], "demo_scene", "gdal")
    wl = scene["scene"].wavelengths_nm
    rgb = [int(abs(wl - w).argmin()) + 1 for w in (650, 550, 470)]
    ren = QgsMultiBandColorRenderer(layer.dataProvider(), *rgb)
    layer.setRenderer(ren)
    layer.setContrastEnhancement(1, 1)  # StretchToMinimumMaximum, estimated
    project.addMapLayer(layer)

    main_window = QMainWindow()
    canvas = QgsMapCanvas(main_window)
    canvas.setDestinationCrs(layer.crs())
    canvas.setLayers([layer])
    canvas.setExtent(layer.extent())
    from qgis.gui import QgsMessageBar

    class Iface:  # the parts of QgisInterface the dialog and the task use
        def __init__(self):
            self.bar = QgsMessageBar(main_window)

        def mapCanvas(self):  # noqa: N802
            return canvas

        def activeLayer(self):  # noqa: N802
            return layer

        def messageBar(self):  # noqa: N802
            return self.bar

        def mainWindow(self):  # noqa: N802
            return main_window

    iface = Iface()

    from urdm_plugin.gui.dialog import UnmixDialog

    dlg = UnmixDialog(iface)
    dlg.layer_combo.setLayer(layer)
    dlg.library_widget.setFilePath(scene["library"])
    dlg.output_widget.setFilePath(str(tmp / "results"))
    dlg.set_method(a.method or dlg.default_method())  # not the last choice remembered in QgsSettings
    dlg.show()  # at the size it opens at on this screen
    _wait(lambda: True)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    SHOTS.mkdir(parents=True, exist_ok=True)
    dlg.grab().save(str(SHOTS / "dialog.png"))
    print(f"wrote {SHOTS / 'dialog.png'}")

    task = dlg.run()
    if task is None:
        raise SystemExit("the dialog refused to run: " + "; ".join(dlg.problems))
    _wait(lambda: dlg.task is None)
    if task.result is None:
        raise SystemExit("run failed: " + task.error)
    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    dlg.grab().save(str(tmp / "dialog_done.png"))

    # results window: layer tree + one canvas per abundance map and the dominant map
    win = QWidget()
    win.setWindowTitle("URDM results")
    h = QHBoxLayout(win)
    view = QgsLayerTreeView()
    model = QgsLayerTreeModel(project.layerTreeRoot())
    model.setFlag(QgsLayerTreeModel.AllowNodeChangeVisibility)
    model.setFlag(QgsLayerTreeModel.ShowLegend)
    view.setModel(model)
    view.expandAll()
    view.setMinimumWidth(330)
    h.addWidget(view)
    grid = QGridLayout()
    shown = [ly for ly in task.layers if ly.customProperty("urdm/role") in ("abundance", "dominant")]
    shown = shown[:8]
    canvases = []
    for i, ly in enumerate([layer] + shown):
        box = QVBoxLayout()
        title = QLabel(ly.name() if ly is not layer else "input (RGB)")
        title.setStyleSheet("font-weight: bold")
        c = QgsMapCanvas()
        c.setMinimumSize(200, 200)
        c.setDestinationCrs(layer.crs())
        c.setLayers([ly])
        c.setExtent(layer.extent())
        c.setCanvasColor(win.palette().window().color())
        box.addWidget(title)
        box.addWidget(c)
        grid.addLayout(box, i // 3, i % 3)
        canvases.append(c)
    h.addLayout(grid, 1)
    win.resize(1340, 730)  # 1366 × 768 less the window frame
    win.show()
    bridge = QgsLayerTreeMapCanvasBridge(project.layerTreeRoot(), canvas)  # noqa: F841 - keeps the tree in sync
    for c in canvases:
        c.refresh()
    _wait(lambda: not any(c.isDrawing() for c in canvases), 60)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.03)
    _wait(lambda: not any(c.isDrawing() for c in canvases), 60)
    win.grab().save(str(SHOTS / "results.png"))
    print(f"wrote {SHOTS / 'results.png'} (run: {task.result.manifest['method']}, {task.result.seconds:.1f} s)")
    dlg.close()
    sys.stdout.flush()
    os._exit(0)  # skip Qt/QGIS teardown of the ad-hoc windows (it can crash on exit)


if __name__ == "__main__":
    sys.exit(main())
