"""UnmixTask in QGIS's task manager: results on the map, cancel, errors reported."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import run_group

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory, write_demo_scene):
    return write_demo_scene(tmp_path_factory.mktemp("task_scene"), height=36, width=44,
                                       n_bands=30, n_endmembers=3, seed=5, stem="tsk")


def wait_for(task, timeout=60.0):
    """Process events until the task has run finished() (or fail after timeout).

    (QgsTask.waitForFinished blocks until the task has started, which can deadlock here.)
    """
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication

    ended = []
    task.on_finished = lambda t: ended.append(t)
    QgsApplication.taskManager().addTask(task)
    t0 = time.monotonic()
    while not ended:
        QCoreApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"task did not finish within {timeout} s")
    QCoreApplication.processEvents()
    return task


def test_task_adds_styled_group_with_inputs_crs_and_extent(qgis_new_project, qgis_iface, scene, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer

    from urdm_plugin.core.engine.pipeline import UnmixOptions
    from urdm_plugin.gui.task import UnmixTask, make_run_dir

    src = QgsRasterLayer(scene["image"], "tsk scene", "gdal")
    out = make_run_dir(str(tmp_path), src.name(), "fcls")
    assert Path(out).name.startswith("tsk_scene_fcls_")
    progress = []
    task = UnmixTask(src.source(), scene["library"], out, UnmixOptions(method="fcls"), src.name(),
                     iface=qgis_iface)
    task.progressChanged.connect(progress.append)
    wait_for(task)
    assert task.error == "" and task.result is not None
    assert progress and max(progress) == pytest.approx(100.0, abs=1.0)
    group = run_group(QgsProject.instance().layerTreeRoot(), "tsk scene", "fcls")
    assert group is not None
    layers = [n.layer() for n in group.findLayers()]
    n = len(scene["names"])
    assert len(layers) == n + 2  # abundances + dominant + residual
    assert [ly.name() for ly in layers[:n]] == scene["names"]
    for ly in layers:
        assert ly.crs() == src.crs() and ly.extent() == src.extent()
        assert ly.customProperty("urdm/run_json") == os.path.join(out, "run.json")
    sig = {(ly.renderer().classificationMin(), ly.renderer().classificationMax(),
            tuple(i.color.name() for i in ly.renderer().shader().rasterShaderFunction().colorRampItemList()))
           for ly in layers[:n]}
    assert len(sig) == 1 and next(iter(sig))[:2] == (0.0, 1.0)
    # a second run never collides with the first
    assert make_run_dir(str(tmp_path), src.name(), "fcls") != out



def test_cancel_leaves_no_files_and_no_layers(qgis_new_project, qgis_iface, scene, tmp_path):
    from qgis.core import QgsProject

    from urdm_plugin.core.engine.pipeline import UnmixOptions
    from urdm_plugin.gui.task import UnmixTask

    class CancellingTask(UnmixTask):
        def _progress(self, fraction, msg):
            super()._progress(fraction, msg)
            if fraction > 0.1:  # the solve has started: rows are being written
                self.cancel()

    out = tmp_path / "runs" / "cancelled"
    out.parent.mkdir()
    opts = UnmixOptions(method="fcls", memory_mb=1)  # many small blocks
    task = CancellingTask(scene["image"], scene["library"], str(out), opts, "tsk scene", iface=qgis_iface)
    wait_for(task)
    assert task.was_cancelled and task.result is None and task.error == ""
    assert list(out.parent.iterdir()) == []  # neither the run folder nor a temporary one
    assert QgsProject.instance().mapLayers() == {}
    assert QgsProject.instance().layerTreeRoot().findGroups() == []


def test_user_error_reported_with_message_not_traceback(qgis_new_project, qgis_iface, scene, tmp_path):
    from qgis.core import QgsProject

    from urdm_plugin.core.engine.pipeline import UnmixOptions
    from urdm_plugin.gui.task import UnmixTask

    bad_lib = tmp_path / "far.csv"
    bad_lib.write_text("wavelength_nm,a,b\n5000,0.1,0.2\n5100,0.2,0.3\n5200,0.3,0.1\n")
    failures = []
    task = UnmixTask(scene["image"], str(bad_lib), str(tmp_path / "out"), UnmixOptions(method="fcls"),
                     "tsk scene", iface=qgis_iface)
    task.failed.connect(failures.append)
    wait_for(task)
    assert failures and "do not overlap" in failures[0]
    assert "Traceback" not in failures[0]
    assert not (tmp_path / "out").exists()
    assert QgsProject.instance().mapLayers() == {}


def test_success_message_shows_the_residual_and_an_automatic_selection(tmp_path):
    from run_fixture import make_run

    from urdm_plugin.gui.task import success_text
    from urdm_plugin.qgis_layers.runs import read_manifest

    run = make_run(tmp_path / "r")
    m = read_manifest(run.run_json)
    m["selection"] = {"mode": "automatic", "from": 498, "names": ["Oak", "Asphalt"], "scores": [0.61, 0.39]}
    text = success_text(m, 2.04, str(run.folder))
    assert text.startswith(f"{len(m['endmembers'])} abundance maps (fcls) in 2.0 s")
    assert "selected automatically from 498: Oak 61 %, Asphalt 39 %" in text


def test_success_message_warns_of_a_poor_fit(tmp_path):
    from run_fixture import make_run

    from urdm_plugin.gui.task import success_text
    from urdm_plugin.qgis_layers.runs import read_manifest

    run = make_run(tmp_path / "r")
    m = read_manifest(run.run_json)
    m["fit"] = {"relative_residual": 0.91, "residual_rmse": 0.078, "pixels": 3200, "poor": True}
    text = success_text(m, 2.0, str(run.folder))
    assert "Poor fit: the residual is on average 91 % of a pixel's reflectance" in text
    assert "Selection note" in text
    m["fit"]["poor"] = False
    assert "Poor fit" not in success_text(m, 2.0, str(run.folder))


def _shown_whole(item) -> bool:
    """The message item's text box shows all its wrapped text (no scrolling needed)."""
    from qgis.PyQt.QtWidgets import QTextBrowser

    box = item.findChild(QTextBrowser)
    return box is not None and box.viewport().height() >= box.document().size().height() - 1


def test_a_poor_fit_message_after_a_run_shows_its_advice_whole(qgis_new_project, qgis_iface, scene, tmp_path):
    """QGIS's message item shows two lines and scrolls the rest: the poor-fit advice at the end
    of the message was out of sight (issue #24)."""
    from qgis.core import Qgis
    from qgis.PyQt.QtCore import QCoreApplication

    from urdm_plugin.core.engine.pipeline import UnmixOptions
    from urdm_plugin.gui.task import UnmixTask

    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    bar.resize(900, bar.height())
    bar.show()
    from urdm_plugin.core.io.library import read_library

    wl = read_library(scene["library"]).wavelengths_nm
    snow = tmp_path / "snow.csv"  # one bright flat spectrum: nothing of the scene
    snow.write_text("wavelength_nm,snow\n" + "".join(f"{w},0.95\n" for w in wl))
    task = UnmixTask(scene["image"], str(snow), str(tmp_path / "out"), UnmixOptions(method="fcls"), "tsk scene",
                     iface=qgis_iface)
    wait_for(task)
    assert task.result is not None and task.result.manifest["fit"]["poor"]
    item = bar.currentItem()
    assert item is not None and item.level() == Qgis.MessageLevel.Warning
    for _ in range(5):
        QCoreApplication.processEvents()
    assert "use endmembers from the image, vca" in item.text()
    assert _shown_whole(item)
    bar.clearWidgets()
