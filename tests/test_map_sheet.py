"""Abundance map sheet: the layout a user gets from a run, and its PDF/PNG export."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_group
from qgis.core import (
    QgsApplication,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemPicture,
    QgsLayoutItemScaleBar,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QImage
from run_fixture import NAMES, make_run

from urdm_plugin.processing.alg_sheet import MapSheetAlgorithm
from urdm_plugin.qgis_layers.map_sheet import (
    ABUNDANCE_LEGEND,
    DOMINANT_LEGEND,
    RESIDUAL_LEGEND,
    build_map_sheet,
    footnote_text,
    weight_text,
)


@pytest.fixture
def run(tmp_path, qgis_app):
    return make_run(tmp_path / "case", width=40, height=30, method="tv", version="9.8.7")


def _items(layout, cls):
    """Items of a type in reading order (top to bottom, left to right)."""
    items = [i for i in layout.items() if isinstance(i, cls)]
    return sorted(items, key=lambda i: (round(i.positionWithUnits().y(), 1), i.positionWithUnits().x()))


def _label_points(label) -> float:
    """A layout label's text size (points): its text format (QGIS >= 3.24) or its font (3.22)."""
    return label.textFormat().size() if hasattr(label, "textFormat") else label.font().pointSizeF()


def _labels(layout):
    return [i.text() for i in _items(layout, QgsLayoutItemLabel)]


def _png_colours(path) -> tuple:
    img = QImage(str(path))
    assert not img.isNull()
    img = img.convertToFormat(QImage.Format_RGB32)
    w, h = img.width(), img.height()
    ptr = img.constBits()
    ptr.setsize(img.byteCount())
    arr = np.frombuffer(ptr, np.uint32).reshape(h, img.bytesPerLine() // 4)[:, :w] & 0xFFFFFF
    return w, h, len(np.unique(arr)), float(np.mean(arr == 0xFFFFFF))


def test_layout_has_a_map_per_endmember_residual_legend_and_footnote(run, qgis_new_project):
    layout = build_map_sheet(str(run.run_json), QgsProject.instance())
    maps = _items(layout, QgsLayoutItemMap)
    assert len(maps) == len(NAMES) + 2
    # each map shows exactly one result layer, on the run's own extent: the abundances in
    # library order, then the dominant material (written for the sheet) and the residual
    shown = [m.layers()[0] for m in maps]
    assert all(len(m.layers()) == 1 for m in maps)
    assert [lyr.customProperty("urdm/endmember") for lyr in shown[:3]] == NAMES
    assert [lyr.customProperty("urdm/role") for lyr in shown] == ["abundance"] * 3 + ["dominant", "residual"]
    assert (run.folder / "dominant.tif").is_file()
    # five maps in a 3 + 2 grid: the short row is centred, no hole at its end
    xs = sorted({round(m.positionWithUnits().x(), 1) for m in maps})
    row2 = [m for m in maps if m.positionWithUnits().y() > maps[0].positionWithUnits().y() + 1]
    if row2 and len(row2) < 3:
        left, right = row2[0].positionWithUnits().x() - xs[0], xs[-1] - row2[-1].positionWithUnits().x()
        assert left == pytest.approx(right, abs=0.5)
    ext = shown[0].extent()
    for m in maps:
        assert m.extent().contains(ext) or m.extent().toString(3) == ext.toString(3)
        assert m.crs().authid() == "EPSG:32633"
    legends = _items(layout, QgsLayoutItemLegend)
    assert len(legends) == 2  # the ramps, then the dominant map's classes below them
    titles = [n.customProperty("legend/title-label") for lg in legends for n in lg.model().rootGroup().findLayers()]
    assert titles == [ABUNDANCE_LEGEND, RESIDUAL_LEGEND, DOMINANT_LEGEND]
    classes = legends[1].model().layerLegendNodes(legends[1].model().rootGroup().findLayers()[0])
    assert [n.data(0) for n in classes] == NAMES
    # the residual ramp ends at a rounded value, printed as it is
    res_max = shown[-1].renderer().classificationMax()
    assert res_max == pytest.approx(float(f"{res_max:.2g}"))
    bars = _items(layout, QgsLayoutItemScaleBar)
    assert len(bars) == 1 and bars[0].linkedMap() is maps[0]
    # a segment is drawn at the maps' scale: between 5 mm and the 58 mm panel on paper
    to_m = 1000.0 if bars[0].unitLabel() == "km" else 1.0
    seg_mm = bars[0].unitsPerSegment() * to_m * 1000.0 / maps[0].scale()
    assert 5 < seg_mm * bars[0].numberOfSegments() < 58
    assert all(m.scale() == pytest.approx(maps[0].scale()) for m in maps)
    assert len(_items(layout, QgsLayoutItemPicture)) == 1  # north arrow
    labels = _labels(layout)
    footnote = next(t for t in labels if t.startswith("Method:"))
    assert footnote.startswith("Method: TV-regularised")
    assert "9.8.7" in footnote and "weight λ = 0.3, as given" in footnote and "lam=" not in footnote
    assert "2025-03-14 09:26" in footnote
    title = max(_items(layout, QgsLayoutItemLabel), key=_label_points).text()
    assert "scene" in title and "2025-03-14" in title and title.count("unmixing") <= 1
    assert any(t.startswith("CRS: EPSG:32633") for t in labels)
    for name in NAMES:
        assert name in labels
    # the layout is not added to the project by itself
    assert QgsProject.instance().layoutManager().layouts() == []


def test_project_layers_are_reused_with_their_style(run, qgis_new_project):
    project = QgsProject.instance()
    lyr = QgsRasterLayer(str(run.folder / "Soil.tif"), "my soil", "gdal")
    lyr.setCustomProperty("urdm/run_json", str(run.run_json))
    lyr.setCustomProperty("urdm/role", "abundance")
    lyr.setCustomProperty("urdm/endmember", "Soil")
    project.addMapLayer(lyr)
    bg = QgsRasterLayer(str(run.image), "background", "gdal")
    project.addMapLayer(bg)
    layout = build_map_sheet(str(run.folder), project, background_layer=bg, title="My title")
    maps = _items(layout, QgsLayoutItemMap)
    assert maps[1].layers()[0] is lyr
    assert all(m.layers()[-1] is bg and len(m.layers()) == 2 for m in maps)
    assert "My title" in _labels(layout)


def test_algorithm_exports_pdf_and_non_blank_png(run, tmp_path, qgis_new_project):
    alg = MapSheetAlgorithm()
    alg.initAlgorithm()
    assert alg.flags() & alg.FlagNoThreading
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    pdf, png = tmp_path / "out" / "sheet.pdf", tmp_path / "out" / "sheet.png"
    params = {"INPUT": str(run.run_json), "PAPER": 0, "DPI": 80, "OUTPUT_PDF": str(pdf),
              "OUTPUT_PNG": str(png)}
    ok, msg = alg.checkParameterValues(params, context)
    assert ok, msg
    res = alg.processAlgorithm(params, context, feedback)
    assert res == {"OUTPUT_PDF": str(pdf), "OUTPUT_PNG": str(png)}
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000
    w, h, colours, white = _png_colours(png)
    # A4 landscape at 80 dpi
    assert abs(w - 297 / 25.4 * 80) <= 2 and abs(h - 210 / 25.4 * 80) <= 2
    assert colours > 50  # viridis/magma maps, not a blank page
    assert 0.2 < white < 0.9


def test_processing_run_by_id_with_the_run_folder(run, tmp_path, qgis_new_project, qgis_processing):
    import processing
    from qgis.core import QgsProcessingException

    from urdm_plugin.processing.provider import UrdmProvider

    reg = QgsApplication.processingRegistry()
    provider = None
    if reg.providerById("urdm") is None:  # other test modules keep theirs registered: a second one is deleted
        provider = UrdmProvider()
        reg.addProvider(provider)
    try:
        assert reg.algorithmById("urdm:mapsheet") is not None
        out = processing.run("urdm:mapsheet", {"INPUT": str(run.folder), "PAPER": 2, "DPI": 50,
                                               "OUTPUT_PDF": str(tmp_path / "b.pdf"),
                                               "OUTPUT_PNG": str(tmp_path / "b.png")})
        assert out["OUTPUT_PNG"] == str(tmp_path / "b.png")
        w, h, colours, _ = _png_colours(tmp_path / "b.png")
        assert abs(w - 11 * 50) <= 2 and abs(h - 8.5 * 50) <= 2  # Letter landscape
        assert colours > 50
        # a folder without run.json: a clear message, nothing written
        with pytest.raises(QgsProcessingException, match="run.json"):
            processing.run("urdm:mapsheet", {"INPUT": str(tmp_path), "OUTPUT_PDF": str(tmp_path / "a.pdf"),
                                             "OUTPUT_PNG": str(tmp_path / "a.png")})
        assert not (tmp_path / "a.pdf").exists()
    finally:
        if provider is not None:
            reg.removeProvider(provider)


def test_sheet_of_a_real_pipeline_run(run, tmp_path, qgis_new_project):
    from run_fixture import run_real_pipeline

    from urdm_plugin.paths import plugin_version
    from urdm_plugin.qgis_layers.map_sheet import export_map_sheet

    result = run_real_pipeline(run, tmp_path / "real_out")
    layout = build_map_sheet(result.out_dir, QgsProject.instance(), paper="A3")
    assert len(_items(layout, QgsLayoutItemMap)) == len(result.manifest["endmembers"]) + 2
    footnote = next(t for t in _labels(layout) if t.startswith("Method:"))
    assert "FCLS" in footnote and plugin_version() in footnote and "λ" not in footnote
    done = export_map_sheet(layout, png_path=str(tmp_path / "real.png"), dpi=40)
    w, h, colours, white = _png_colours(done["png"])
    assert abs(w - 420 / 25.4 * 40) <= 2 and colours > 50 and white < 0.95


def test_open_map_sheet_adds_layout_and_layers_and_opens_designer(run, tmp_path, qgis_iface,
                                                                  qgis_new_project):
    from urdm_plugin.qgis_layers.map_sheet import open_map_sheet
    from urdm_plugin.qgis_layers.tags import layers_with_runs

    project = QgsProject.instance()
    qgis_iface.openLayoutDesigner.reset_mock()
    layout = open_map_sheet(qgis_iface, str(run.run_json))
    assert layout is not None
    assert project.layoutManager().layoutByName(layout.name()) is layout
    qgis_iface.openLayoutDesigner.assert_called_once_with(layout)
    # the layers the saved layout refers to are in the project, tagged with the run
    tagged = layers_with_runs(project)
    assert len(tagged) == len(NAMES) + 2  # abundances, dominant, residual
    assert run_group(project.layerTreeRoot(), "scene") is not None
    # a second sheet reuses them and gets its own name
    again = open_map_sheet(qgis_iface, str(run.folder))
    assert len(layers_with_runs(project)) == len(NAMES) + 2
    assert again.name() != layout.name()
    # a bad run: a message, no designer, no exception
    qgis_iface.openLayoutDesigner.reset_mock()
    assert open_map_sheet(qgis_iface, str(tmp_path / "nothing")) is None
    qgis_iface.openLayoutDesigner.assert_not_called()


def test_failed_export_is_a_message_on_qgis_322(qgis_app, tmp_path):
    """QgsLayoutExporter.errorMessage() does not exist on 3.22: the failure is still a
    one-line OutputError naming the file, never an AttributeError."""
    from qgis.core import QgsLayoutExporter

    from urdm_plugin.core.errors import OutputError
    from urdm_plugin.qgis_layers.map_sheet import _export

    class FailingExporter:  # the 3.22 API: export methods, no errorMessage
        def exportToPdf(self, path, settings):  # noqa: N802
            return QgsLayoutExporter.FileError

    with pytest.raises(OutputError, match="sheet.pdf.*cannot be written"):
        _export(FailingExporter(), str(tmp_path / "sheet.pdf"), None, 150, {})


def test_footnote_states_the_weight_a_run_chose_in_words():
    assert weight_text({"lam": "auto", "lam_chosen": 0.69584}) == "weight λ = 0.696, chosen from the image itself"
    assert weight_text({"lam": 0.3}) == "weight λ = 0.3, as given"
    assert weight_text({"max_iter": 5}) == ""


def test_footnote_of_an_automatic_weight_run(run):
    from urdm_plugin.qgis_layers.runs import load_run

    info = load_run(str(run.run_json))
    info.parameters = {"lam": "auto", "lam_chosen": 0.6958, "lam_chosen_per_tile": [0.6958] * 4,
                       "quality": "fast", "options": {"seed": 7}}
    text = footnote_text(info)
    assert "weight λ = 0.696, chosen from the image itself" in text and "quality=fast" in text
    assert "lam" not in text and "seed 7" in text


def _run_with(n: int, folder, qgis_app):
    """A real FCLS run of a synthetic scene with ``n`` materials named like USGS spectra."""
    from osgeo import gdal, osr

    from urdm_plugin.core import synthetic
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster

    sc = synthetic.make_scene(30, 40, n, 40.0, seed=3, n_bands=60)
    folder.mkdir(parents=True)
    tif, csv = folder / "scene.tif", folder / "library.csv"
    ds = gdal.GetDriverByName("GTiff").Create(str(tif), 40, 30, sc.Y.shape[0], gdal.GDT_Float32)
    ds.SetGeoTransform((500000.0, 30.0, 0.0, 4200000.0, 0.0, -30.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32610)
    ds.SetProjection(srs.ExportToWkt())
    for i in range(sc.Y.shape[0]):
        b = ds.GetRasterBand(i + 1)
        b.WriteArray(sc.Y[i].astype(np.float32))
        b.SetMetadataItem("wavelength", f"{sc.wavelengths_nm[i]:g}")
        b.SetMetadataItem("wavelength_units", "nm")
    ds = None
    names = [f"Material {chr(65 + i)} GDS{100 + i} (a long name)" for i in range(n)]
    csv.write_text("wavelength_nm," + ",".join(names) + "\n" + "".join(
        f"{w}," + ",".join(f"{v}" for v in sc.E[j]) + "\n" for j, w in enumerate(sc.wavelengths_nm)))
    return unmix_raster(tif, csv, folder / "out", UnmixOptions(method="fcls")).out_dir


def _overlaps(layout) -> list:
    """Pairs of items (maps, labels, legends, scale bar, north arrow) whose rectangles intersect."""
    import itertools

    boxes = []
    for it in layout.items():
        if isinstance(it, (QgsLayoutItemMap, QgsLayoutItemLabel, QgsLayoutItemLegend, QgsLayoutItemScaleBar,
                           QgsLayoutItemPicture)):
            p, s = it.positionWithUnits(), it.sizeWithUnits()
            boxes.append((it.id() or it.text()[:30], p.x(), p.y(), p.x() + s.width(), p.y() + s.height()))
    return [(a[0], b[0]) for a, b in itertools.combinations(boxes, 2)
            if min(a[3], b[3]) - max(a[1], b[1]) > 0.01 and min(a[4], b[4]) - max(a[2], b[2]) > 0.01]


@pytest.mark.slow
def test_nothing_on_the_sheet_overlaps_for_one_to_twelve_endmembers(tmp_path, qgis_new_project, qgis_app):
    """Six endmembers hid the north arrow behind the dominant-material legend (issue #24)."""
    for n in range(1, 13):
        layout = build_map_sheet(_run_with(n, tmp_path / f"n{n}", qgis_app), QgsProject.instance(), paper="A4")
        assert len(_items(layout, QgsLayoutItemMap)) == n + (2 if n > 1 else 1)  # one: no dominant map
        assert _overlaps(layout) == [], n
        for it in layout.items():  # and everything stays on the page
            if isinstance(it, (QgsLayoutItemMap, QgsLayoutItemLabel, QgsLayoutItemLegend)):
                p, s = it.positionWithUnits(), it.sizeWithUnits()
                assert p.x() >= 0 and p.y() >= 0 and p.x() + s.width() <= 297.01 and p.y() + s.height() <= 210.01


def test_a_sheet_of_a_poor_fit_or_automatically_selected_run_says_so(run, qgis_new_project):
    import json

    m = json.loads(run.run_json.read_text())
    plain = build_map_sheet(str(run.run_json), QgsProject.instance())  # fits, endmembers given: no note
    assert "notes" not in [i.id() for i in plain.items() if isinstance(i, QgsLayoutItemLabel)]
    m["fit"] = {"relative_residual": 1.66, "residual_rmse": 0.21, "pixels": 3000, "poor": True}
    m["selection"] = {"mode": "automatic", "from": 498, "max": 20, "names": NAMES, "scores": [0.5, 0.3, 0.2],
                      "flags": [f"{NAMES[2]}: kept in 1 of 3 random pixel samples (unstable)"]}
    run.run_json.write_text(json.dumps(m))
    layout = build_map_sheet(str(run.run_json), QgsProject.instance())
    notes = next(i for i in layout.items() if isinstance(i, QgsLayoutItemLabel) and i.id() == "notes")
    text = notes.text()
    assert "Poor fit: the endmembers leave on average 166 % of a pixel's reflectance unexplained" in text
    assert f"selected automatically from 498 library spectra: {NAMES[0]} 50 %" in text
    assert "unstable" in text and _overlaps(layout) == []
