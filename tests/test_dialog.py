"""The unmixing dialog: layer/library selection, inline validation, settings, extent, runs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_group

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory, write_demo_scene):
    return write_demo_scene(tmp_path_factory.mktemp("dlg_scene"), height=40, width=50,
                                       n_bands=30, n_endmembers=3, seed=7, stem="dlg")


@pytest.fixture()
def clean_settings(qgis_app):
    from qgis.core import QgsSettings

    QgsSettings().remove("urdm")
    yield
    QgsSettings().remove("urdm")


@pytest.fixture()
def project_with_scene(qgis_new_project, qgis_iface, scene, clean_settings):
    from qgis.core import QgsProject, QgsRasterLayer

    layer = QgsRasterLayer(scene["image"], "dlg scene", "gdal")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def make_dialog(iface, library=None, output=None):
    from urdm_plugin.gui.dialog import UnmixDialog

    dlg = UnmixDialog(iface)
    if library is not None:
        dlg.library_widget.setFilePath(str(library))
    if output is not None:
        dlg.output_widget.setFilePath(str(output))
    return dlg


def wait_task(dlg, attr="task", timeout=60):
    from qgis.PyQt.QtCore import QCoreApplication

    t0 = time.monotonic()
    while getattr(dlg, attr) is not None:
        QCoreApplication.processEvents()
        time.sleep(0.02)
        assert time.monotonic() - t0 < timeout, "task did not finish"
    QCoreApplication.processEvents()


def test_layer_and_library_fill_table_and_plot(project_with_scene, qgis_iface, scene, tmp_path):
    dlg = make_dialog(qgis_iface, scene["library"], tmp_path)
    assert dlg.current_layer() is project_with_scene  # the only hyperspectral layer is preselected
    assert "50×40 pixels, 30 bands" in dlg.layer_info.text()
    names = [dlg.table.item(i, 0).text() for i in range(dlg.table.rowCount())]
    assert names == scene["names"]
    assert dlg.checked_names() == scene["names"]
    n_used = dlg.matched.report.n_used
    assert 3 < n_used <= 30
    assert dlg.library_summary.text() == "Bands: " + dlg.matched.report.summary()  # once, not per row
    assert dlg.tick_count.text() == "3 of 3 ticked"
    assert dlg.plot.names == scene["names"]
    assert dlg.problems == [] and dlg.run_button.isEnabled()
    # unticking a spectrum removes it from the plot and the run
    dlg.table.item(1, 1).setCheckState(0)
    assert dlg.plot.names == [scene["names"][0], scene["names"][2]]
    assert dlg.build_options().endmembers == [scene["names"][0], scene["names"][2]]


def test_ticking_too_few_materials_warns_of_a_poor_fit_before_run(project_with_scene, qgis_iface, scene,
                                                                 tmp_path):
    dlg = make_dialog(qgis_iface, scene["library"], "results")
    assert any("relative path" in p for p in dlg.problems) and not dlg.run_button.isEnabled()
    dlg.output_widget.setFilePath(str(tmp_path))
    assert dlg.problems == []
    assert not any(w.startswith("Poor fit") for w in dlg.warnings)
    for row in (1, 2):  # one material left for a three-material scene
        dlg.table.item(row, 1).setCheckState(0)
    assert any(w.startswith("Poor fit") and "vca" in w for w in dlg.warnings)
    assert dlg.run_button.isEnabled()  # a warning, not a problem


def test_the_dialogs_checks_are_the_plans_on_a_sample_read_once(project_with_scene, qgis_iface, scene, tmp_path,
                                                                  monkeypatch):
    """Ticking re-plans (core.engine.plan.plan_run is the one source of the rules) without
    reading the image again; the messages are typed and listed problems first, by kind."""
    from urdm_plugin.core.engine import sample as sample_module
    from urdm_plugin.core.engine.findings import Kind, Severity

    reads = []
    real = sample_module.read_sample
    monkeypatch.setattr(sample_module, "read_sample", lambda *a, **k: reads.append(a[1]) or real(*a, **k))
    dlg = make_dialog(qgis_iface, scene["library"], "results")
    assert len(reads) == 1 and dlg.problems and all(p.kind == Kind.OUTPUT for p in dlg.problems)
    for row in (1, 2):
        dlg.table.item(row, 1).setCheckState(0)
    dlg.set_method("nnls")
    assert len(reads) == 1  # the same layer, bands and extent: the sample read once
    poor = next(w for w in dlg.warnings if w.startswith("Poor fit"))
    assert poor.kind == Kind.FIT and poor.severity == Severity.WARNING
    assert poor in dlg._plan().warnings  # the plan's own warning, not one of the dialog's
    dlg.library_widget.setFilePath("")
    kinds = [p.kind for p in dlg.problems]
    assert kinds == sorted(kinds) and kinds[0] == Kind.INPUT and kinds[-1] == Kind.OUTPUT


def test_single_band_layers_are_not_offered(project_with_scene, qgis_iface, tmp_path):
    from osgeo import gdal
    from qgis.core import QgsProject, QgsRasterLayer

    one = tmp_path / "one.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(one), 8, 8, 1, gdal.GDT_Float32)
    ds.FlushCache()
    del ds
    single = QgsRasterLayer(str(one), "single band", "gdal")
    QgsProject.instance().addMapLayer(single)
    result = QgsRasterLayer(str(one), "an abundance map", "gdal")  # a run's output: hidden, not mentioned
    result.setCustomProperty("urdm/run_json", str(tmp_path / "run.json"))
    QgsProject.instance().addMapLayer(result)
    dlg = make_dialog(qgis_iface)
    assert single in dlg.layer_combo.exceptedLayerList()
    assert project_with_scene not in dlg.layer_combo.exceptedLayerList()
    # not silently: the dialog says which layers it leaves out and why
    assert "1 single-band layer not listed (single band)" in dlg.layer_info.text()
    assert result in dlg.layer_combo.exceptedLayerList() and "abundance map" not in dlg.layer_info.text()
    assert "50×40 pixels" in dlg.layer_info.text()


def test_opening_in_a_project_with_only_a_single_band_raster_raises_nothing(qgis_new_project, qgis_iface,
                                                                            clean_settings, tmp_path, monkeypatch):
    """The combo drops the single-band layer while the dialog is built, which fires the
    layer check before a library was chosen: no Python error window, a clear problem instead."""
    import sys

    from osgeo import gdal
    from qgis.core import QgsProject, QgsRasterLayer

    one = tmp_path / "dem.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(one), 8, 8, 1, gdal.GDT_Float32)
    ds.FlushCache()
    del ds
    QgsProject.instance().addMapLayer(QgsRasterLayer(str(one), "dem", "gdal"))
    errors = []  # what QGIS would show in its Python error window
    monkeypatch.setattr(sys, "excepthook", lambda *exc: errors.append(exc[1]))
    dlg = make_dialog(qgis_iface)
    assert errors == []
    assert dlg.current_layer() is None
    assert "Choose a hyperspectral raster layer (two or more bands)." in dlg.problems
    assert "1 single-band layer not listed (dem)" in dlg.layer_info.text()


@pytest.mark.parametrize("sensor", ["enmap", "emit"])
def test_a_sensor_product_layer_opens_with_its_wavelengths(qgis_new_project, qgis_iface, clean_settings,
                                                           tmp_path, sensor):
    """The layer QGIS makes of a product's main file (EnMAP's SPECTRAL_IMAGE.TIF, EMIT's
    reflectance subdataset) is read as the product behind it: bands, wavelengths, grid."""
    import sensor_products as sp
    from qgis.core import QgsProject, QgsRasterLayer

    if sensor == "enmap":
        folder, t = sp.write_enmap(tmp_path / "p")
        source = str(next(folder.glob("*SPECTRAL_IMAGE.TIF")))
    else:
        path, t = sp.write_emit(tmp_path)
        source = f'NETCDF:"{path}":reflectance'
    layer = QgsRasterLayer(source, sensor, "gdal")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    dlg = make_dialog(qgis_iface, sp.write_library(tmp_path / "lib.csv"), tmp_path / "out")
    assert dlg.current_layer() is layer
    text = dlg.layer_info.text()
    assert text.startswith({"enmap": "EnMAP L2A product", "emit": "EMIT L2A"}[sensor])
    assert dlg.info.wavelengths_nm is not None and " nm " in text
    assert dlg.problems == [] and dlg.run_button.isEnabled()
    if sensor == "emit":  # the view is read on the product's grid and CRS, not the swath layer's
        from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

        canvas = qgis_iface.mapCanvas()
        canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32611"))
        gt = dlg.info.geotransform
        canvas.setExtent(QgsRectangle(gt[0], gt[3] + 6 * gt[5], gt[0] + 11 * gt[1], gt[3]))  # the top 6 rows
        dlg.set_extent_mode("view")
        c0, r0, w, h = dlg._view_window().xywh()
        assert r0 == 0 and h <= 7 and (c0, w) == (0, 11)


def test_no_overlap_and_too_few_bands_block_run(project_with_scene, qgis_iface, scene, tmp_path):
    from osgeo import gdal, osr
    from qgis.core import QgsProject, QgsRasterLayer

    far = tmp_path / "far.csv"
    far.write_text("wavelength_nm,a,b\n5000,0.1,0.2\n5100,0.2,0.3\n5200,0.3,0.1\n")
    dlg = make_dialog(qgis_iface, far, tmp_path)
    assert not dlg.run_button.isEnabled()
    assert any("do not overlap" in p for p in dlg.problems)
    assert "do not overlap" in dlg.problem_label.text()

    # a 3-band multispectral raster and 3 chosen endmembers: 3 bands < 3 + 1
    path = tmp_path / "three.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 10, 10, 3, gdal.GDT_Float32)
    ds.SetGeoTransform((500000, 30, 0, 5200000, 0, -30))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for b, wl in enumerate((480, 560, 660)):
        band = ds.GetRasterBand(b + 1)
        band.SetMetadataItem("wavelength", str(wl))
        band.SetMetadataItem("wavelength_units", "nm")
        band.WriteArray(np.full((10, 10), 0.2 + 0.05 * b, np.float32))
    ds = None
    lib = tmp_path / "four.csv"
    lib.write_text("wavelength_nm,a,b,c,d\n" + "".join(
        f"{w},{0.1 + i * 0.01},{0.5 - i * 0.01},{0.3},{0.2 + i * 0.02}\n" for i, w in enumerate(range(400, 800, 20))))
    layer = QgsRasterLayer(str(path), "three bands", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dlg.layer_combo.setLayer(layer)
    dlg.library_widget.setFilePath(str(lib))
    dlg.set_checked(["a", "b", "c"])  # more than 3 bands support: selected from the ticked ones
    assert dlg.problems == [] and dlg.run_button.isEnabled()
    assert "3 ticked, more than the 2 a run can use" in dlg.selection_hint.text()
    dlg.set_checked(["a", "b"])
    assert dlg.problems == [] and dlg.run_button.isEnabled() and dlg.selection_hint.text() == ""


def test_unknown_unit_and_scale_warnings_shown(project_with_scene, qgis_iface, scene, tmp_path):
    # a library in percent against a reflectance image: warning, Run still allowed
    from urdm_plugin.core.io.library import read_library

    lib = read_library(scene["library"])
    rows = ["wavelength_nm," + ",".join(lib.names)]
    for i, w in enumerate(lib.wavelengths_nm):
        rows.append(f"{w}," + ",".join(f"{100 * v}" for v in lib.spectra[i]))
    pct = tmp_path / "percent.csv"
    pct.write_text("\n".join(rows) + "\n")
    dlg = make_dialog(qgis_iface, pct, tmp_path)
    assert any("percent" in w for w in dlg.warnings)
    assert dlg.run_button.isEnabled()


def test_a_library_in_micrometres_with_a_bare_wavelength_header_is_warned_about(project_with_scene, qgis_iface,
                                                                                scene, tmp_path):
    from urdm_plugin.core.io.library import read_library

    lib = read_library(scene["library"])
    rows = ["wavelength," + ",".join(lib.names)]  # no unit: µm read from values below 30
    rows += [f"{w / 1000}," + ",".join(f"{v}" for v in lib.spectra[i]) for i, w in enumerate(lib.wavelengths_nm)]
    um = tmp_path / "micrometres.csv"
    um.write_text("\n".join(rows) + "\n")
    dlg = make_dialog(qgis_iface, um, tmp_path)
    assert any(w.startswith("The library's wavelength unit is not stated; taken as µm") and "wavelength_um" in w
               for w in dlg.warnings)
    assert dlg.run_button.isEnabled() and dlg.matched.report.n_used > 3  # matched as µm
    dlg.library_widget.setFilePath(str(scene["library"]))  # wavelength_nm: stated, no warning
    assert not any("library's wavelength unit" in w for w in dlg.warnings)


def test_settings_persist_across_dialogs(project_with_scene, qgis_iface, scene, tmp_path):
    dlg = make_dialog(qgis_iface, scene["library"], tmp_path / "results")
    assert dlg.set_method("tv")
    w = dlg.parameters.widget  # editors generated from the registry
    w("quality").setCurrentText("best")
    w("seed").setValue(42)
    w("lam").set_value(0.25)
    w("memory_mb").setValue(256)
    dlg.set_extent_mode("view")
    dlg.table.item(0, 1).setCheckState(0)
    dlg.close()  # saves

    again = make_dialog(qgis_iface)
    assert again.current_method() == "tv"
    w = again.parameters.widget
    assert w("quality").currentText() == "best"
    assert w("seed").value() == 42
    assert not w("lam").auto.isChecked() and w("lam").spin.value() == pytest.approx(0.25)
    assert w("memory_mb").value() == 256
    assert again.extent_mode() == "view"
    assert again.library_widget.filePath() == scene["library"]
    assert again.output_widget.filePath() == str(tmp_path / "results")
    assert again.checked_names() == scene["names"][1:]
    opts = again.build_options()
    assert opts.method == "tv" and opts.params == {"lam": pytest.approx(0.25)} and opts.seed == 42


def test_method_combo_follows_registry(project_with_scene, qgis_iface):
    from urdm_plugin.core.methods.registry import METHODS, method_available

    dlg = make_dialog(qgis_iface)
    assert dlg.method_ids() == [m.id for m in METHODS]
    for m in METHODS:
        assert dlg.method_enabled(m.id) == method_available(m.id)[0]
    assert dlg.current_method() == dlg.default_method()


def test_current_view_extent_runs_on_that_window(project_with_scene, qgis_iface, qgis_canvas, scene, tmp_path):
    from osgeo import gdal
    from qgis.core import QgsProject, QgsRectangle

    layer = project_with_scene
    qgis_canvas.setDestinationCrs(layer.crs())
    gt = scene["geotransform"]
    # view: columns 10..30, rows 5..25
    qgis_canvas.setExtent(QgsRectangle(gt[0] + 10 * gt[1], gt[3] + 25 * gt[5], gt[0] + 30 * gt[1], gt[3] + 5 * gt[5]))
    dlg = make_dialog(qgis_iface, scene["library"], tmp_path)
    dlg.set_method("fcls")
    dlg.set_extent_mode("view")
    win = dlg._view_window()
    c0, r0, w, h = win.xywh()
    # the canvas may widen the extent to its aspect ratio: expect the visible part of the image
    ext = qgis_canvas.extent()
    exp_c0 = max(0, int(np.floor((ext.xMinimum() - gt[0]) / gt[1])))
    exp_c1 = min(50, int(np.ceil((ext.xMaximum() - gt[0]) / gt[1])))
    exp_r0 = max(0, int(np.floor((ext.yMaximum() - gt[3]) / gt[5])))
    exp_r1 = min(40, int(np.ceil((ext.yMinimum() - gt[3]) / gt[5])))
    assert win.xywh() == (exp_c0, exp_r0, exp_c1 - exp_c0, exp_r1 - exp_r0)
    assert h < 40  # a real sub-window
    task = dlg.run()
    assert task is not None
    wait_task(dlg)
    assert task.result is not None, task.error
    out = Path(task.result.out_dir)
    assert out.parent == tmp_path and out.name.startswith("dlg_scene_fcls_")
    ds = gdal.Open(str(out / task.result.manifest["endmembers"][0]["file"]))
    assert (ds.RasterXSize, ds.RasterYSize) == (w, h)
    ogt = ds.GetGeoTransform()
    assert ogt[0] == pytest.approx(gt[0] + c0 * gt[1]) and ogt[3] == pytest.approx(gt[3] + r0 * gt[5])
    group = run_group(QgsProject.instance().layerTreeRoot(), "dlg scene", "fcls")
    assert group is not None and len(group.findLayers()) == 3 + 2


def test_polygon_mask_extent(project_with_scene, qgis_iface, scene, tmp_path):
    from osgeo import gdal
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProject, QgsVectorLayer

    gt = scene["geotransform"]
    vl = QgsVectorLayer("Polygon?crs=EPSG:32633", "area", "memory")
    f = QgsFeature()
    x0, y0 = gt[0] + 5 * gt[1], gt[3] + 5 * gt[5]
    x1, y1 = gt[0] + 20 * gt[1], gt[3] + 15 * gt[5]
    f.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(x0, y0), QgsPointXY(x1, y0), QgsPointXY(x1, y1),
                                               QgsPointXY(x0, y1)]]))
    vl.dataProvider().addFeatures([f])
    QgsProject.instance().addMapLayer(vl)
    dlg = make_dialog(qgis_iface, scene["library"], tmp_path)
    dlg.set_method("fcls")
    dlg.set_extent_mode("mask")
    dlg.mask_combo.setLayer(vl)
    assert dlg.problems == []
    task = dlg.run()
    wait_task(dlg)
    assert task.result is not None, task.error
    a = gdal.Open(str(Path(task.result.out_dir) / task.result.manifest["endmembers"][0]["file"])).ReadAsArray()
    inside = a != -9999.0
    assert inside[5:15, 5:20].all() and inside.sum() == 10 * 15
    assert not Path(task.cleanup[0]).exists()  # temporary mask removed


def test_preview_adds_temporary_group(project_with_scene, qgis_iface, scene, tmp_path):
    from qgis.core import QgsProject

    dlg = make_dialog(qgis_iface, scene["library"], tmp_path)
    dlg.set_method("fcls")
    t = dlg.preview()
    assert t is not None and t.options.window is not None
    wait_task(dlg, "preview_task")
    assert t.result is not None, t.error
    root = QgsProject.instance().layerTreeRoot()
    assert root.findGroup("URDM preview – dlg scene") is not None
    assert list(tmp_path.iterdir()) == []  # the output folder is untouched by a preview
    t2 = dlg.preview()  # a second preview replaces the first group
    wait_task(dlg, "preview_task")
    assert t2.result is not None
    assert [g.name() for g in root.findGroups()].count("URDM preview – dlg scene") == 1
    first_dir = Path(t.result.out_dir).parent
    assert not first_dir.exists()  # the replaced preview's temporary folder is gone
    second_dir = Path(t2.result.out_dir).parent
    assert second_dir.exists() and second_dir.name.startswith("urdm_preview_")
    dlg.close()  # closing the dialog removes the preview layers and their folder
    assert root.findGroup("URDM preview – dlg scene") is None and not second_dir.exists()


def test_method_parameters_come_from_the_registry(project_with_scene, qgis_iface, scene, tmp_path):
    from urdm_plugin.core.methods.registry import ENGINE_OPTIONS, all_params

    dlg = make_dialog(qgis_iface, scene["library"], tmp_path)
    assert set(dlg.parameters.editors) == set(all_params()) | {o.name for o in ENGINE_OPTIONS}
    assert dlg.set_method("fcls")
    assert not dlg.parameters.widget("lam").isEnabled() and not dlg.parameters.widget("tile_size").isEnabled()
    assert dlg.build_options().params == {}
    assert dlg.set_method("tv")
    assert dlg.parameters.widget("lam").isEnabled() and not dlg.parameters.widget("samples").isEnabled()
    assert dlg.build_options().params == {}  # "automatic" is the registry's default: nothing to pass
    dlg.parameters.widget("max_iter").setValue(77)
    assert dlg.build_options().params == {"max_iter": 77}


def test_a_large_library_is_filtered_ticked_and_sorted(project_with_scene, qgis_iface, scene, tmp_path):
    """498 spectra: the filter shows matching names only, All / None / Invert act on those,
    sorting the table keeps the run's endmembers in library order."""
    import numpy as np

    base = np.loadtxt(scene["library"], delimiter=",", skiprows=1)
    rng = np.random.default_rng(0)
    names = [f"{'Actinolite' if i % 3 else 'Kaolinite'} sample {i:03d} long descriptive name NMNH{80000 + i}"
             for i in range(498)]
    spectra = np.clip(base[:, 1:2] + rng.normal(0, 0.02, (base.shape[0], 498)), 0.01, 1)
    lib = tmp_path / "big.csv"
    lib.write_text("wavelength_nm," + ",".join(names) + "\n" + "".join(
        f"{base[r, 0]}," + ",".join(f"{v:.5f}" for v in spectra[r]) + "\n" for r in range(base.shape[0])))
    dlg = make_dialog(qgis_iface, lib, tmp_path)
    assert dlg.table.rowCount() == 498 and dlg.tick_count.text() == "498 of 498 ticked"
    assert dlg.table.item(5, 0).toolTip() == names[5]  # the full name, however narrow the column
    dlg.library_filter.setText("kaolinite")
    shown = [i for i in range(498) if not dlg.table.isRowHidden(i)]
    assert len(shown) == 166 and all("Kaolinite" in dlg.table.item(i, 0).text() for i in shown)
    dlg.tick_none_button.click()
    assert len(dlg.checked_names()) == 332  # only the shown rows were unticked
    dlg.tick_invert_button.click()
    assert len(dlg.checked_names()) == 498
    dlg.library_filter.setText("")
    dlg.tick_none_button.click()
    assert dlg.checked_names() == [] and any("Tick at least one" in p for p in dlg.problems)
    dlg.library_filter.setText("sample 00")
    dlg.tick_all_button.click()  # ten spectra: few enough to use as they are
    dlg.table.sortItems(0, 1)  # descending by name
    assert dlg.checked_names() == [n for n in names if "sample 00" in n]  # library order
    assert dlg.tick_count.text() == "10 of 498 ticked"
    assert dlg.build_options().endmembers == [n for n in names if "sample 00" in n]


def test_spectra_plot_draws_every_ticked_spectrum_and_counts_the_rest(qgis_app):
    import numpy as np

    from urdm_plugin.gui.spectra_plot import SpectraPlot

    plot = SpectraPlot()
    plot.resize(420, 200)
    wl = np.linspace(400, 2500, 50)
    plot.set_data(wl, np.random.default_rng(0).uniform(0, 1, (50, 40)), [f"spectrum {i}" for i in range(40)])
    plot.grab()  # paints
    assert 0 < plot.legend_shown < 40  # the legend ends in "+N more"


def test_every_control_explains_itself_and_help_opens_the_guide(project_with_scene, qgis_iface, scene,
                                                                 tmp_path, monkeypatch):
    from qgis.PyQt.QtGui import QDesktopServices

    dlg = make_dialog(qgis_iface, scene["library"], tmp_path)
    controls = [dlg.layer_combo, dlg.library_widget, dlg.library_filter, dlg.tick_all_button,
                dlg.tick_none_button, dlg.tick_invert_button, dlg.table, dlg.method_combo, dlg.extent_whole,
                dlg.extent_view, dlg.extent_mask, dlg.mask_combo, dlg.mask_selected, dlg.output_widget,
                dlg.add_to_map, dlg.preview_button, dlg.run_button, dlg.cancel_button, dlg.close_button,
                dlg.help_button]
    controls += [dlg.parameters.widget(n) for n in list(dlg.parameters.method_params) +
                 list(dlg.parameters.engine_options)]  # λ, seed, device, tile, memory, …
    assert all(w.toolTip().strip() for w in controls), [w.objectName() or type(w).__name__
                                                         for w in controls if not w.toolTip().strip()]
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    dlg.help_button.click()
    assert len(opened) == 1 and opened[0].endswith("USAGE.md") and Path(opened[0]).is_file()


def test_a_new_subfolder_of_a_folder_that_takes_no_files_blocks_run(project_with_scene, qgis_iface, scene,
                                                                   unwritable_folder, tmp_path):
    dlg = make_dialog(qgis_iface, scene["library"], unwritable_folder / "results")
    assert any("cannot be made" in p and "Choose a folder you can write to" in p for p in dlg.problems)
    assert not dlg.run_button.isEnabled() and dlg.run() is None
    assert dlg.preview_button.isEnabled()  # a preview writes to a temporary folder
    dlg.output_widget.setFilePath(str(tmp_path / "results"))
    assert dlg.problems == [] and dlg.run_button.isEnabled()


def test_an_error_in_the_dialogs_bar_shows_its_fix_whole(project_with_scene, qgis_iface, scene, tmp_path,
                                                         monkeypatch):
    """The folder vanishes (or turns read-only) between the check and Run: the error with its
    fix ("Choose another folder.") is shown whole in the dialog's bar, not cut after two lines."""
    import os

    from qgis.PyQt.QtCore import QCoreApplication
    from qgis.PyQt.QtWidgets import QTextBrowser

    out = tmp_path / ("a_rather_long_folder_name_for_results_" * 3) / "results"
    dlg = make_dialog(qgis_iface, scene["library"], out)
    dlg.resize(760, 700)
    dlg.show()
    assert dlg.problems == []

    def refuse(*_a, **_k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "makedirs", refuse)
    assert dlg.run() is None
    for _ in range(5):
        QCoreApplication.processEvents()
    item = dlg.bar.currentItem()
    assert item is not None and item.text().endswith("Choose another folder.")
    box = item.findChild(QTextBrowser)
    assert box.viewport().height() >= box.document().size().height() - 1  # nothing scrolled out of sight
    dlg.close()


def _wait(condition, timeout=60):
    from qgis.PyQt.QtCore import QCoreApplication

    t0 = time.monotonic()
    while not condition():
        QCoreApplication.processEvents()
        time.sleep(0.02)
        assert time.monotonic() - t0 < timeout, "timed out"
    QCoreApplication.processEvents()


def test_an_automatic_selection_that_fits_poorly_is_warned_about_before_run(project_with_scene, qgis_iface, scene,
                                                                           tmp_path):
    """More spectra ticked than a run can use, none of the scene's materials among them: the
    selection's poor fit shows before Run (it showed only after the run), checked in the
    background, once per choice, and a change cancels a check still running."""
    from qgis.core import QgsApplication

    from urdm_plugin.core.io.library import read_library

    lib = read_library(scene["library"])
    rng = np.random.default_rng(3)
    decoys = np.clip(0.6 + 0.3 * rng.random((len(lib.wavelengths_nm), 25)), 0, 1)  # bright, nothing of the scene
    path = tmp_path / "decoys.csv"
    path.write_text("wavelength_nm," + ",".join(f"decoy {i}" for i in range(25)) + "\n" + "".join(
        f"{w}," + ",".join(f"{v}" for v in decoys[j]) + "\n" for j, w in enumerate(lib.wavelengths_nm)))
    started = []
    QgsApplication.taskManager().taskAdded.connect(started.append)
    dlg = make_dialog(qgis_iface, path, tmp_path)
    assert dlg.run_button.isEnabled()  # Run never waits for the check
    assert "Checking the automatic selection" in dlg.selection_hint.text()
    _wait(lambda: dlg._selection_key is None and dlg._selection_task is None)
    assert any(w.startswith("Poor fit: with the spectra selected from the library") for w in dlg.warnings)
    assert "pixels: it would select" in dlg.selection_hint.text()
    assert any("selected" in w and "decoy" in w for w in dlg.warnings)
    assert len(started) == 1
    dlg.table.item(0, 1).setCheckState(0)  # a new ticked set: a new check …
    assert dlg._selection_key is not None
    dlg.table.item(0, 1).setCheckState(2)  # … back before it started: the cached one, nothing new
    assert dlg._selection_key is None and any(w.startswith("Poor fit") for w in dlg.warnings)
    _wait(lambda: True)
    assert len(started) == 1
    dlg.table.item(1, 1).setCheckState(0)
    dlg._selection_timer.stop()
    dlg._start_selection_check()
    running = dlg._selection_task
    dlg._stop_selection_check()  # Stop: cancelled, said so, no warning invented
    assert running.isCanceled() and dlg._selection_task is None
    assert "Check stopped" in dlg.selection_hint.text()
    dlg.close()


def test_at_1366_by_768_the_table_the_extent_and_the_output_folder_are_in_sight(project_with_scene, qgis_iface,
                                                                                scene, tmp_path):
    """A laptop screen: the library table showed about 5 of 498 rows, Extent and Output folder
    only by scrolling, and the band match twice (issue #24)."""
    from qgis.PyQt.QtCore import QCoreApplication, QRect

    from urdm_plugin.core.io.library import read_library

    lib = read_library(scene["library"])
    big = tmp_path / "big.csv"  # a USGS-sized library: 498 spectra, of one of the scene's 3 materials
    E = np.concatenate([lib.spectra[:, :1] * f for f in np.linspace(0.5, 1.5, 498)], axis=1)
    big.write_text("wavelength_nm," + ",".join(f"spectrum {i:03d}" for i in range(E.shape[1])) + "\n" + "".join(
        f"{w}," + ",".join(f"{v:.4f}" for v in E[j]) + "\n" for j, w in enumerate(lib.wavelengths_nm)))
    dlg = make_dialog(qgis_iface, big, tmp_path)
    dlg.resize(1326, 698)  # 1366 × 768 less the window frame and a task bar
    dlg.show()
    for _ in range(10):
        QCoreApplication.processEvents()
    assert dlg.table.rowCount() == 498
    rows = dlg.table.viewport().height() // dlg.table.rowHeight(0)
    assert rows >= 10, rows

    def in_sight(widget) -> bool:
        return widget.isVisible() and widget.visibleRegion().boundingRect() == widget.rect()

    for widget in (dlg.layer_combo, dlg.method_combo, dlg.extent_whole, dlg.extent_view, dlg.output_widget,
                   dlg.run_button):
        assert in_sight(widget), widget
    summary = dlg.matched.report.summary()
    assert summary in dlg.library_summary.text() and summary not in dlg.problem_label.text()  # once
    # the automatic selection's warnings arrive: shown whole, not squeezed to one line
    _wait(lambda: dlg._selection_key is None and dlg._selection_task is None)
    assert any(w.startswith("Poor fit") for w in dlg.warnings) and sum(len(w) for w in dlg.warnings) > 300
    for height in (698, 600):  # the real desktop's fonts take more room: squeeze it further
        dlg.resize(1326, height)
        for _ in range(5):
            QCoreApplication.processEvents()
        label = dlg.problem_label
        need = label.heightForWidth(label.width())
        assert label.height() >= need > 2 * dlg.fontMetrics().height() and in_sight(label), height
        assert dlg.table.viewport().height() // dlg.table.rowHeight(0) >= 5  # the table gave the room
    dlg.close()
    from urdm_plugin.gui.dialog import dialog_size

    w, h = dialog_size(QRect(0, 0, 1366, 768 - 30))  # the size it opens at there
    assert w <= 1326 and h <= 698
