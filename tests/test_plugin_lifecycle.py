"""The plugin loads into QGIS, registers its GUI and Processing provider, and unloads cleanly."""

from __future__ import annotations

import sys

import pytest
from qgis.core import QgsApplication

import urdm_plugin


def _provider_ids():
    return {p.id() for p in QgsApplication.processingRegistry().providers()}


def _calls(mock):
    return [c.args[-1] for c in mock.call_args_list]


@pytest.fixture
def iface(qgis_iface):
    for name in ("addPluginToRasterMenu", "removePluginRasterMenu"):
        getattr(qgis_iface, name).reset_mock()
    return qgis_iface


def _our_toolbars(iface):
    from qgis.PyQt.QtCore import QCoreApplication, QEvent
    from qgis.PyQt.QtWidgets import QToolBar

    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    return iface.mainWindow().findChildren(QToolBar, "urdmToolBar")


def test_init_gui_adds_menu_toolbar_and_provider_and_unload_removes_all(iface, qgis_app):
    plugin = urdm_plugin.classFactory(iface)
    plugin.initGui()
    try:
        assert "urdm" in _provider_ids()
        (toolbar,) = _our_toolbars(iface)  # its own toolbar: QGIS hides the Raster toolbar by default
        buttons = [a.objectName() for a in toolbar.actions()]
        assert buttons[0] == "urdmUnmixAction" and "urdmPixelInspectorAction" in buttons
        menu_added = _calls(iface.addPluginToRasterMenu)
        assert "urdmUnmixAction" in [a.objectName() for a in menu_added]
        assert {c.args[0] for c in iface.addPluginToRasterMenu.call_args_list} == {"URDM Unmixing"}
    finally:
        plugin.unload()
    assert "urdm" not in _provider_ids()
    assert _our_toolbars(iface) == []
    # every menu addition was undone with the same object
    assert sorted(map(id, _calls(iface.removePluginRasterMenu))) == sorted(map(id, menu_added))


def test_load_unload_twice(iface, qgis_app):
    for _ in range(2):
        plugin = urdm_plugin.classFactory(iface)
        plugin.initGui()
        assert "urdm" in _provider_ids() and len(_our_toolbars(iface)) == 1
        plugin.unload()
        assert "urdm" not in _provider_ids() and _our_toolbars(iface) == []


def test_headless_init_processing_registers_provider(qgis_app):
    plugin = urdm_plugin.classFactory(None)  # as qgis_process calls it
    plugin.initProcessing()
    try:
        provider = QgsApplication.processingRegistry().providerById("urdm")
        assert provider is not None
        assert provider.algorithms(), "the provider must offer algorithms"
    finally:
        plugin.unload()
    assert "urdm" not in _provider_ids()


def test_importing_the_plugin_does_not_import_torch():
    import subprocess

    code = ("import sys, urdm_plugin, urdm_plugin.core, urdm_plugin.plugin, urdm_plugin.processing.provider;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pytest_qgis_fixtures_used_by_the_suite_work(qgis_app, qgis_iface, qgis_canvas, qgis_new_project):
    """Smoke test of pytest-qgis 5.0.2 on QGIS 3.22 (its README names 3.34)."""
    from qgis.core import QgsProject

    assert qgis_iface.mapCanvas() is qgis_canvas
    assert QgsProject.instance().count() == 0


def test_a_run_still_going_at_unload_reports_to_no_deleted_dialog(iface, qgis_app, tmp_path):
    """Unloading deletes the dialog; a run it started keeps going and, when it ends, must not
    call into the deleted dialog (an error window, or worse, during QGIS's teardown)."""
    from qgis.PyQt.QtCore import QCoreApplication, QEvent

    from urdm_plugin.core.engine.pipeline import UnmixOptions
    from urdm_plugin.gui.task import UnmixTask

    plugin = urdm_plugin.classFactory(iface)
    plugin.initGui()
    plugin.show_dialog()
    dlg = plugin.dialog
    task = UnmixTask(str(tmp_path / "none.tif"), str(tmp_path / "none.csv"), str(tmp_path / "out"),
                     UnmixOptions(method="fcls"), "x", add_to_map=False)
    task.on_finished = dlg._task_finished
    dlg.task = task  # as if Run had started it
    plugin.unload()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    task.was_cancelled = True
    task.finished(False)  # the task manager calls this when the run ends
