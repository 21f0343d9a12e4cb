"""Result layers: group, one styled layer per endmember, residual, dominant map, properties."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_scene_module():
    spec = importlib.util.spec_from_file_location("make_demo_scene", ROOT / "scripts" / "make_demo_scene.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A small georeferenced scene and an FCLS run of it (pipeline, no QGIS)."""
    from urdm_plugin.core.engine.pipeline import UnmixOptions, unmix_raster

    tmp = tmp_path_factory.mktemp("results")
    scene = _load_scene_module().write_scene(tmp, height=40, width=48, n_bands=30, n_endmembers=3,
                                             seed=11, stem="small")
    res = unmix_raster(scene["image"], scene["library"], tmp / "run", UnmixOptions(method="fcls"))
    return scene, res


def test_prepare_run_writes_dominant_and_registers_it(small_run, tmp_path):
    from osgeo import gdal

    from urdm_plugin.qgis_layers.dominant import DOMINANT_NODATA, prepare_run

    scene, res = small_run
    run_json = os.path.join(res.out_dir, "run.json")
    manifest = prepare_run(run_json)
    assert manifest["extra_files"]["dominant"] == "dominant.tif"
    on_disk = json.loads(Path(run_json).read_text())
    assert on_disk["extra_files"]["dominant"] == "dominant.tif"
    assert on_disk["display"]["residual_max"] > 0
    # no temporary files left in the run folder
    assert not [p for p in os.listdir(res.out_dir) if p.startswith(".")]

    ds = gdal.Open(os.path.join(res.out_dir, "dominant.tif"))
    dom = ds.GetRasterBand(1).ReadAsArray()
    assert ds.GetGeoTransform() == pytest.approx(scene["geotransform"])
    # dominant = argmax of the abundance files; nodata border stays nodata
    stack = np.stack([gdal.Open(os.path.join(res.out_dir, e["file"])).ReadAsArray()
                      for e in manifest["endmembers"]])
    valid = stack[0] != -9999.0
    assert (dom[~valid] == DOMINANT_NODATA).all()
    assert (dom[valid] == np.argmax(stack, axis=0)[valid]).all()
    assert dom[3:-3, 3:-3].max() < DOMINANT_NODATA  # inside the 3-pixel nodata border
    assert (dom[:3] == DOMINANT_NODATA).all()
    # idempotent
    assert prepare_run(run_json)["extra_files"]["dominant"] == "dominant.tif"


def _shader_signature(layer):
    r = layer.renderer()
    fn = r.shader().rasterShaderFunction()
    return (r.classificationMin(), r.classificationMax(), fn.minimumValue(), fn.maximumValue(),
            [(round(i.value, 6), i.color.name()) for i in fn.colorRampItemList()])


def test_add_run_to_map_group_style_and_properties(qgis_new_project, small_run):
    from qgis.core import QgsProject, QgsRasterLayer

    from urdm_plugin.qgis_layers.dominant import prepare_run
    from urdm_plugin.qgis_layers.load import add_run_to_map
    from urdm_plugin.qgis_layers.runs import read_manifest
    from urdm_plugin.qgis_layers.style import MAGMA, VIRIDIS
    from urdm_plugin.qgis_layers.tags import PROP_ENDMEMBER, PROP_ROLE, PROP_RUN_JSON

    scene, res = small_run
    run_json = os.path.join(res.out_dir, "run.json")
    prepare_run(run_json)
    project = QgsProject.instance()
    src = QgsRasterLayer(scene["image"], "small scene", "gdal")
    group, layers = add_run_to_map(run_json, "small scene", project)

    assert re.fullmatch(r"small scene – fcls \d\d:\d\d:\d\d", group.name())
    assert group.isExpanded()
    assert [group.findLayer(ly.id()).itemVisibilityChecked() for ly in layers] == [True] + [False] * (len(layers) - 1)
    names = scene["names"]
    abund = [ly for ly in layers if ly.customProperty(PROP_ROLE) == "abundance"]
    assert [ly.name() for ly in abund] == names
    roles = sorted(ly.customProperty(PROP_ROLE) for ly in layers)
    assert roles == sorted(["abundance"] * len(names) + ["residual", "dominant"])
    assert [n.layerId() for n in group.findLayers()] == [ly.id() for ly in layers]
    for ly in layers:
        assert ly.customProperty(PROP_RUN_JSON) == os.path.abspath(run_json)
        assert ly.crs() == src.crs()
        assert ly.extent() == src.extent()
        assert project.mapLayer(ly.id()) is ly
    for ly, name in zip(abund, names):
        assert ly.customProperty(PROP_ENDMEMBER) == name

    # one shared 0–1 viridis ramp for every abundance layer
    sigs = [_shader_signature(ly) for ly in abund]
    assert all(s == sigs[0] for s in sigs)
    assert sigs[0][0:4] == (0.0, 1.0, 0.0, 1.0)
    assert sigs[0][4][0][1] == VIRIDIS[0] and sigs[0][4][-1][1] == VIRIDIS[-1]

    residual = next(ly for ly in layers if ly.customProperty(PROP_ROLE) == "residual")
    rmin, rmax, *_ = _shader_signature(residual)
    p98 = read_manifest(run_json)["display"]["residual_max"]
    assert rmin == 0.0 and rmax == pytest.approx(p98) and 0 < p98 < 1
    assert _shader_signature(residual)[4][-1][1] == MAGMA[-1]

    dominant = next(ly for ly in layers if ly.customProperty(PROP_ROLE) == "dominant")
    classes = dominant.renderer().classes()
    assert [c.label for c in classes] == names
    assert [c.value for c in classes] == list(range(len(names)))
    assert len({c.color.name() for c in classes}) == len(names)

    # a second run of the same input gets its own group
    group2, _ = add_run_to_map(run_json, "small scene", project)
    assert group2.name() == group.name() + " (2)"


def test_uncertainty_layers_listed_when_in_manifest(small_run, tmp_path):
    from urdm_plugin.qgis_layers.runs import run_layers

    _, res = small_run
    m = json.loads(Path(res.out_dir, "run.json").read_text())
    m["extra_files"]["std"] = [{"name": e["name"], "file": e["file"]} for e in m["endmembers"]]
    rows = run_layers(os.path.join(res.out_dir, "run.json"), m)
    unc = [r for r in rows if r[2] == "uncertainty"]
    assert [r[3] for r in unc] == [e["name"] for e in m["endmembers"]]


def test_every_result_layer_carries_the_selection_note(qgis_new_project, small_run):
    from qgis.core import QgsLayerNotesUtils, QgsProject

    from urdm_plugin.qgis_layers.load import add_run_to_map
    from urdm_plugin.qgis_layers.notes import selection_note_html
    from urdm_plugin.qgis_layers.runs import read_manifest

    run_json = str(Path(small_run[1].out_dir) / "run.json")
    m = read_manifest(run_json)
    _group, layers = add_run_to_map(run_json, "small scene", QgsProject.instance())
    notes = [QgsLayerNotesUtils.layerNotes(ly) for ly in layers]
    assert all("Selection" in n for n in notes) and len(set(notes)) == 1
    for e in m["endmembers"]:
        assert e["name"] in notes[0]
    # an automatic selection lists each spectrum's share; a poor fit says so
    m["selection"] = {"mode": "automatic", "from": 498, "max": 20, "names": ["Oak", "Asphalt"],
                      "scores": [0.61, 0.39]}
    m["fit"] = {"relative_residual": 0.91, "residual_rmse": 0.078, "pixels": 3200, "poor": True}
    html = selection_note_html(m)
    assert "of 498 library spectra" in html and "Oak: 61 %" in html
    assert "<b>poor fit</b>" in html and "91 %" in html
