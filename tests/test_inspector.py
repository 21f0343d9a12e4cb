"""Pixel inspector: the data it shows matches the run's rasters; spectra go into libraries."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
)
from qgis.PyQt.QtCore import Qt
from run_fixture import EPSG, NODATA_PIXEL, make_run

from urdm_plugin.core.errors import LibraryError, UrdmError
from urdm_plugin.core.io.library import read_library
from urdm_plugin.gui.inspector_data import (
    PixelNodataError,
    add_spectrum_to_library,
    inspect_pixel,
    inspect_rectangle,
)


def _crs(code: str) -> QgsCoordinateReferenceSystem:
    # made per call: module-level QGIS objects outlive the QgsApplication and crash at exit
    return QgsCoordinateReferenceSystem(code)


@pytest.fixture
def run(tmp_path, qgis_app):
    return make_run(tmp_path / "case")


def _expected(run, row, col):
    idx = np.array([b - 1 for b in (1, 2, 3, 5, 6, 7, 8, 9, 10)])
    return run.Y[idx, row, col], run.A[:, row, col]


def test_pixel_in_raster_crs_matches_rasters(run):
    row, col = 7, 11
    x, y = run.pixel_center(row, col)
    # a point off-centre inside the same pixel
    res = inspect_pixel(str(run.run_json), QgsPointXY(x + 9.0, y - 12.0), _crs(f"EPSG:{EPSG}"))
    assert (res.row, res.col) == (row, col)
    assert (res.image_row, res.image_col) == (row, col)
    obs, a = _expected(run, row, col)
    np.testing.assert_allclose(res.wavelengths_nm, run.wavelengths_used)
    np.testing.assert_allclose(res.observed, obs, atol=1e-9)
    assert list(res.abundances) == run.names
    np.testing.assert_allclose([res.abundances[n] for n in run.names], a, atol=1e-6)
    np.testing.assert_allclose(res.reconstructed, run.E @ a, atol=1e-6)
    np.testing.assert_allclose(res.residual, obs - run.E @ a, atol=1e-6)
    # the fixture's noise is 0.002: the reconstruction is close but not identical
    assert 0 < res.rmse < 0.01
    # the folder works as well as run.json
    res2 = inspect_pixel(str(run.folder), QgsPointXY(x, y), _crs(f"EPSG:{EPSG}"))
    np.testing.assert_allclose(res2.observed, res.observed)


def test_pixel_given_in_wgs84(run):
    row, col = 12, 4
    x, y = run.pixel_center(row, col)
    tr = QgsCoordinateTransform(_crs(f"EPSG:{EPSG}"), _crs("EPSG:4326"), QgsProject.instance().transformContext())
    p = tr.transform(QgsPointXY(x, y))
    assert 10 < p.x() < 20 and 40 < p.y() < 45  # really degrees
    res = inspect_pixel(str(run.run_json), p, _crs("EPSG:4326"))
    assert (res.row, res.col) == (row, col)
    obs, a = _expected(run, row, col)
    np.testing.assert_allclose(res.observed, obs, atol=1e-9)
    np.testing.assert_allclose([res.abundances[n] for n in run.names], a, atol=1e-6)
    assert res.x == pytest.approx(x) and res.y == pytest.approx(y)


def test_outside_returns_none_and_nodata_raises(run):
    x, y = run.pixel_center(0, 0)
    assert inspect_pixel(str(run.run_json), QgsPointXY(x - 100.0, y), _crs(f"EPSG:{EPSG}")) is None
    assert inspect_pixel(str(run.run_json), QgsPointXY(x, y + 31.0), _crs(f"EPSG:{EPSG}")) is None
    r, c = NODATA_PIXEL
    # (no "as excinfo": a kept traceback would hold QGIS objects past QGIS's exit)
    with pytest.raises(PixelNodataError, match="nodata"):
        inspect_pixel(str(run.run_json), QgsPointXY(*run.pixel_center(r, c)), _crs(f"EPSG:{EPSG}"))


def test_missing_image_is_a_clear_error(run):
    run.image.unlink()
    with pytest.raises(UrdmError, match="input image"):
        inspect_pixel(str(run.run_json), QgsPointXY(*run.pixel_center(1, 1)), _crs(f"EPSG:{EPSG}"))


def test_rectangle_mean_skips_nodata(run):
    r, c = NODATA_PIXEL  # (2, 3): the rectangle rows 1..3, cols 2..5 contains it
    x0, y0 = run.pixel_center(1, 2)
    x1, y1 = run.pixel_center(3, 5)
    rect = QgsRectangle(x0 - 5, y1 - 5, x1 + 5, y0 + 5)
    res = inspect_rectangle(str(run.run_json), rect, _crs(f"EPSG:{EPSG}"))
    assert res.n_pixels == 3 * 4 - 1
    mask = np.zeros((run.height, run.width), bool)
    mask[1:4, 2:6] = True
    mask[r, c] = False
    idx = np.array([b - 1 for b in (1, 2, 3, 5, 6, 7, 8, 9, 10)])
    np.testing.assert_allclose(res.observed, run.Y[idx][:, mask].mean(axis=1), atol=1e-9)
    np.testing.assert_allclose([res.abundances[n] for n in run.names], run.A[:, mask].mean(axis=1),
                               atol=1e-6)


def test_add_pixel_to_new_and_existing_library(run, tmp_path):
    res = inspect_pixel(str(run.run_json), QgsPointXY(*run.pixel_center(5, 5)), _crs(f"EPSG:{EPSG}"))
    lib_path = tmp_path / "mine.csv"
    add_spectrum_to_library(lib_path, "field A", res.wavelengths_nm, res.observed)
    lib = read_library(lib_path)
    assert lib.names == ["field A"]
    np.testing.assert_allclose(lib.wavelengths_nm, run.wavelengths_used)
    np.testing.assert_allclose(lib.spectra[:, 0], res.observed, rtol=1e-9)

    res2 = inspect_pixel(str(run.run_json), QgsPointXY(*run.pixel_center(9, 20)), _crs(f"EPSG:{EPSG}"))
    add_spectrum_to_library(lib_path, "field B", res2.wavelengths_nm, res2.observed)
    lib = read_library(lib_path)
    assert lib.names == ["field A", "field B"]
    np.testing.assert_allclose(lib.spectra[:, 1], res2.observed, rtol=1e-9)
    np.testing.assert_allclose(lib.spectra[:, 0], res.observed, rtol=1e-9)

    # duplicate name (any case) refused, file unchanged
    before = lib_path.read_text()
    with pytest.raises(LibraryError, match="already"):
        add_spectrum_to_library(lib_path, "Field a", res2.wavelengths_nm, res2.observed)
    # other wavelengths refused
    with pytest.raises(LibraryError, match="new library"):
        add_spectrum_to_library(lib_path, "other", res.wavelengths_nm[:-1] + 1, res.observed[:-1])
    assert lib_path.read_text() == before


def test_added_spectrum_unmixes_back_through_the_run_library(run, tmp_path):
    """The run's own endmembers_used.csv can be extended with a clicked pixel."""
    import shutil

    lib_path = tmp_path / "extended.csv"
    shutil.copy(run.folder / "endmembers_used.csv", lib_path)
    res = inspect_pixel(str(run.run_json), QgsPointXY(*run.pixel_center(3, 3)), _crs(f"EPSG:{EPSG}"))
    add_spectrum_to_library(lib_path, "pixel r4c4", res.wavelengths_nm, res.observed)
    lib = read_library(lib_path)
    assert lib.names == run.names + ["pixel r4c4"]
    np.testing.assert_allclose(lib.spectra[:, :3], run.E, rtol=1e-9)


# -- the GUI: action enabling, map tool + dock, extras install/unload -------------------------


def _tagged_layer(run, name="Tree"):
    from qgis.core import QgsRasterLayer

    lyr = QgsRasterLayer(str(run.folder / f"{name}.tif"), name, "gdal")
    assert lyr.isValid()
    lyr.setCustomProperty("urdm/run_json", str(run.run_json))
    lyr.setCustomProperty("urdm/role", "abundance")
    lyr.setCustomProperty("urdm/endmember", name)
    return lyr


def test_action_enabled_only_with_a_result_layer(run, qgis_iface, qgis_new_project):
    from qgis.core import QgsRasterLayer

    from urdm_plugin.gui.inspector import InspectorController

    project = QgsProject.instance()
    ctl = InspectorController(qgis_iface, project)
    try:
        assert not ctl.action.isEnabled()
        # why it is off, where QGIS shows it for a disabled button (the status bar)
        assert "no URDM result layer" in ctl.action.statusTip()
        assert "(" not in ctl.action.toolTip()  # QGIS cuts a toolbar tooltip's bracketed part
        plain = QgsRasterLayer(str(run.image), "plain", "gdal")
        project.addMapLayer(plain)
        assert not ctl.action.isEnabled()
        tagged = _tagged_layer(run)
        project.addMapLayer(tagged)
        assert ctl.action.isEnabled() and "click a pixel" in ctl.action.statusTip()
        ctl.action.setChecked(True)
        assert qgis_iface.mapCanvas().mapTool() is ctl.point_tool
        project.removeMapLayer(tagged.id())
        assert not ctl.action.isEnabled()
        assert not ctl.action.isChecked()
        assert qgis_iface.mapCanvas().mapTool() is None
    finally:
        ctl.unload()


def test_click_in_canvas_crs_shows_pixel_and_adds_it_to_a_library(run, tmp_path, qgis_iface,
                                                                  qgis_new_project):
    from qgis.PyQt.QtGui import QImage

    from urdm_plugin.gui.inspector import InspectorController

    project = QgsProject.instance()
    project.addMapLayer(_tagged_layer(run))  # a reopened project: only the property is known
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(_crs("EPSG:3857"))
    ctl = InspectorController(qgis_iface, project)
    try:
        ctl.action.setChecked(True)
        # before any click opens it, the dock names the input image run.json points to
        assert f"observed spectra from {run.image}" in ctl.dock.info.text()
        row, col = 9, 20
        tr = QgsCoordinateTransform(_crs(f"EPSG:{EPSG}"), _crs("EPSG:3857"), project.transformContext())
        p = tr.transform(QgsPointXY(*run.pixel_center(row, col)))
        ctl.point_tool.canvasClicked.emit(p, Qt.LeftButton)
        data = ctl.current
        assert data is not None and (data.row, data.col) == (row, col)
        obs, a = _expected(run, row, col)
        np.testing.assert_allclose(data.observed, obs, atol=1e-9)
        dock = ctl.dock
        assert dock is not None and dock.add_button.isEnabled()
        assert dock.bars.values == data.abundances
        assert "row 10, column 21" in dock.info.text() and f"observed spectrum from {run.image}" in dock.info.text()
        assert ctl.band is not None  # the pixel is highlighted
        # the plot draws the three spectra (not a blank widget)
        dock.plot.resize(360, 220)
        img = dock.plot.grab().toImage().convertToFormat(QImage.Format_RGB32)
        colours = {img.pixel(x, y) for x in range(0, img.width(), 2) for y in range(0, img.height(), 2)}
        assert len(colours) > 5

        lib_path = tmp_path / "picked.csv"
        ctl.add_current_to_library(str(lib_path), "clicked")
        lib = read_library(lib_path)
        assert lib.names == ["clicked"]
        np.testing.assert_allclose(lib.spectra[:, 0], obs, rtol=1e-9)

        # outside: a message, nothing to add
        ctl.point_tool.canvasClicked.emit(QgsPointXY(0, 0), Qt.LeftButton)
        assert ctl.current is None and not dock.add_button.isEnabled()
        assert "Outside" in dock.info.text()
        with pytest.raises(UrdmError, match="Click a pixel"):
            ctl.add_current_to_library(str(lib_path), "again")
    finally:
        ctl.unload()
        canvas.setDestinationCrs(_crs("EPSG:4326"))


def test_extras_install_and_unload_pair_up(qgis_iface, qgis_new_project, monkeypatch):
    from unittest.mock import MagicMock

    from urdm_plugin.gui.run_menu import install_extras

    for name in ("addRasterToolBarIcon", "removeRasterToolBarIcon", "addPluginToRasterMenu",
                 "removePluginRasterMenu"):
        getattr(qgis_iface, name).reset_mock()
    monkeypatch.setattr(qgis_iface, "addDockWidget", MagicMock(), raising=False)
    monkeypatch.setattr(qgis_iface, "removeDockWidget", MagicMock(), raising=False)

    class Plugin:
        iface = qgis_iface

    plugin = Plugin()
    undo = install_extras(plugin)
    assert undo and all(callable(u) for u in undo)
    added_tb = [c.args[-1] for c in qgis_iface.addRasterToolBarIcon.call_args_list]
    added_menu = [c.args for c in qgis_iface.addPluginToRasterMenu.call_args_list]
    assert [a.objectName() for a in added_tb] == ["urdmPixelInspectorAction"]
    assert {a.objectName() for _, a in added_menu} == {"urdmPixelInspectorAction", "urdmMapSheetAction"}
    assert all(m == "URDM Unmixing" for m, _ in added_menu)
    inspector = added_tb[0]
    assert inspector.isCheckable() and not inspector.isEnabled()
    plugin._inspector.ensure_dock()  # the dock is created on first use
    for u in reversed(undo):
        u()
    removed_tb = [c.args[-1] for c in qgis_iface.removeRasterToolBarIcon.call_args_list]
    removed_menu = [c.args for c in qgis_iface.removePluginRasterMenu.call_args_list]
    assert removed_tb == added_tb
    assert sorted(map(id, (a for _, a in removed_menu))) == sorted(map(id, (a for _, a in added_menu)))
    assert qgis_iface.addDockWidget.call_count == qgis_iface.removeDockWidget.call_count == 1
    # no project signal reaches the unloaded inspector
    QgsProject.instance().addMapLayer(_tagged_layer(make_run(Path(tempfile.mkdtemp()) / "r")))


def test_extras_without_iface_do_nothing():
    from urdm_plugin.gui.run_menu import install_extras

    class Headless:
        iface = None

    assert install_extras(Headless()) == []


def test_inspector_on_a_real_pipeline_run(run, tmp_path):
    """With the real pipeline's outputs: abundances and observed values match the files, and
    the residual's RMSE equals the pipeline's own residual_rmse raster at that pixel."""
    from osgeo import gdal
    from run_fixture import run_real_pipeline

    result = run_real_pipeline(run, tmp_path / "real_out")
    run_json = Path(result.out_dir) / "run.json"
    row, col = 8, 14
    data = inspect_pixel(str(run_json), QgsPointXY(*run.pixel_center(row, col)), _crs(f"EPSG:{EPSG}"))
    assert (data.row, data.col) == (row, col)
    for e in result.manifest["endmembers"]:
        ds = gdal.Open(str(Path(result.out_dir) / e["file"]))
        assert data.abundances[e["name"]] == pytest.approx(float(ds.ReadAsArray()[row, col]), abs=1e-6)
    used = np.array(result.manifest["inputs"]["bands_used"]) - 1
    np.testing.assert_allclose(data.observed, run.Y[used, row, col], atol=1e-6)
    res = gdal.Open(str(Path(result.out_dir) / result.manifest["residual_file"])).ReadAsArray()
    assert data.rmse == pytest.approx(float(res[row, col]), rel=1e-3)
    assert sum(data.abundances.values()) == pytest.approx(1.0, abs=1e-5)  # FCLS
