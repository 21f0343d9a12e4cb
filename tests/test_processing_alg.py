"""Processing algorithms through processing.run / runAndLoadResults (qgis_processing fixture)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_group
from option_cases import BAD_RUNS, builder_message

from urdm_plugin.core.window import Window

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory, write_demo_scene):
    return write_demo_scene(tmp_path_factory.mktemp("proc_scene"), height=32, width=40,
                                       n_bands=30, n_endmembers=3, seed=9, stem="proc")


_PROVIDER: list = []


@pytest.fixture()
def provider(qgis_processing):
    from qgis.core import QgsApplication

    from urdm_plugin.processing.provider import UrdmProvider

    reg = QgsApplication.processingRegistry()
    if reg.providerById("urdm") is None:
        _PROVIDER.append(UrdmProvider())  # keep the Python object alive (as the plugin does)
        reg.addProvider(_PROVIDER[-1])
    yield reg.providerById("urdm")


def test_provider_lists_algorithms_and_method_enum_follows_registry(provider):
    from qgis.core import QgsApplication

    from urdm_plugin.core.methods.registry import METHODS

    ids = {a.id() for a in provider.algorithms()}
    assert {"urdm:unmix", "urdm:vca"} <= ids
    alg = QgsApplication.processingRegistry().algorithmById("urdm:unmix")
    opts = alg.parameterDefinition("METHOD").options()
    assert len(opts) == len(METHODS)
    for label, m in zip(opts, METHODS):
        assert label.startswith(m.label)
    for name in ("LAMBDA", "SEED", "DEVICE", "MEMORY_MB", "TILE_SIZE", "SAMPLES", "ZETA", "MAX_ITER", "MASK", "EXTENT"):
        assert alg.parameterDefinition(name).flags() & alg.parameterDefinition(name).FlagAdvanced
    # generated from the registry: the quality choices and λ's range are the registry's
    urdm = [m for m in METHODS if m.id == "urdm"][0]
    assert alg.parameterDefinition("QUALITY").options() == list(urdm.param("quality").choices)
    lam = alg.parameterDefinition("LAMBDA")
    assert lam.maximum() == urdm.param("lam").maximum and lam.defaultValue() is None  # empty = automatic


@pytest.fixture
def unmix_alg(provider, scene):
    """[urdm:unmix, the scene's layer, a context, a feedback], emptied in this fixture's teardown:
    QGIS 3.22 crashed in ~QgsRasterPipe when the layer was freed later, with the test's
    arguments, after every fixture had finished."""
    from qgis.core import (
        QgsApplication,
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsRasterLayer,
    )

    held = [QgsApplication.processingRegistry().algorithmById("urdm:unmix"),
            QgsRasterLayer(scene["image"], "scene", "gdal"), QgsProcessingContext(), QgsProcessingFeedback()]
    yield held
    held.clear()


def test_processing_options_from_parameters(unmix_alg, tmp_path):
    """LAMBDA left empty stays automatic, 0 is "no regularisation"; a window from EXTENT."""
    from urdm_plugin.core.methods.registry import method_index

    alg, layer, ctx, fb = unmix_alg
    tv = method_index("tv")
    opts = alg.options_from({"METHOD": tv, "SAMPLES": None}, ctx, layer, fb)
    assert opts.method == "tv" and opts.params == {} and opts.window is None
    assert opts.quality_mask is True  # a sensor product's flagged pixels stay nodata unless asked
    assert alg.options_from({"METHOD": tv, "QUALITY_MASK": False}, ctx, layer, fb).quality_mask is False
    opts = alg.options_from({"METHOD": tv, "LAMBDA": 0.0, "MAX_ITER": 50}, ctx, layer, fb)
    assert opts.params == {"lam": 0.0, "max_iter": 50}
    ext = layer.extent()
    half = f"{ext.xMinimum()},{(ext.xMinimum() + ext.xMaximum()) / 2},{ext.yMinimum()},{ext.yMaximum()}"
    opts = alg.options_from({"METHOD": 0, "EXTENT": half}, ctx, layer, fb)
    assert opts.window == Window.from_xywh((0, 0, layer.width() // 2, layer.height()))


def test_processing_run_writes_outputs(provider, scene, tmp_path):
    import processing
    from osgeo import gdal

    out = tmp_path / "out"
    res = processing.run("urdm:unmix", {
        "INPUT": scene["image"], "LIBRARY": scene["library"], "ENDMEMBERS": f"{scene['names'][0]};\n{scene['names'][2]}",
        "METHOD": 0, "OUTPUT_FOLDER": str(out)})
    assert res["OUTPUT_FOLDER"] == str(out)
    m = json.loads(Path(res["RUN_JSON"]).read_text())
    assert [e["name"] for e in m["endmembers"]] == [scene["names"][0], scene["names"][2]]
    assert m["method"] == "fcls"
    assert os.path.isfile(res["RESIDUAL"]) and os.path.isfile(res["DOMINANT"])
    ds = gdal.Open(res[f"ABUNDANCE_{scene['names'][0]}"])
    assert ds.GetGeoTransform() == pytest.approx(scene["geotransform"])


def test_processing_error_is_user_message(provider, scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as exc:
        processing.run("urdm:unmix", {"INPUT": scene["image"], "LIBRARY": scene["library"],
                                      "ENDMEMBERS": "no_such_material", "METHOD": 0,
                                      "OUTPUT_FOLDER": str(tmp_path / "o")})
    assert "no_such_material" in str(exc.value)
    assert not (tmp_path / "o").exists()


def test_processing_has_the_run_options_of_the_command_line(unmix_alg):
    """max_endmembers, tile_overlap and the water-band switch: declared once, in every front end."""
    from urdm_plugin.core.methods.registry import method_index

    alg, layer, ctx, fb = unmix_alg
    opts = alg.options_from({"METHOD": method_index("tv"), "MAX_ENDMEMBERS": 2, "TILE_OVERLAP": 8,
                             "MASK_WATER_BANDS": False}, ctx, layer, fb)
    assert (opts.max_endmembers, opts.tile_overlap, opts.mask_water_bands) == (2, 8, False)
    opts = alg.options_from({"METHOD": method_index("tv")}, ctx, layer, fb)
    assert (opts.max_endmembers, opts.tile_overlap, opts.mask_water_bands) == (None, None, True)


@pytest.mark.parametrize("case, values, _cli, params", BAD_RUNS, ids=[c[0] for c in BAD_RUNS])
def test_processing_refuses_what_the_command_line_refuses_with_its_message(unmix_alg, scene, tmp_path, case, values,
                                                                           _cli, params):
    """Processing's parameters go through the same options builder: the same bad values are
    refused with the same message, in Processing's names (QGIS's own checks of a parameter's
    range come first in processing.run; the algorithm's mapping is called directly here)."""
    import processing
    from qgis.core import QgsProcessingException

    from urdm_plugin.core.errors import OptionError
    from urdm_plugin.core.methods.registry import method_index
    from urdm_plugin.processing.alg_unmix import processing_name

    params = dict(params, METHOD=method_index(params["METHOD"]))
    alg, layer, ctx, fb = range(4)  # indices: no QGIS object in this frame, which exc's traceback keeps alive
    with pytest.raises(OptionError) as exc:
        unmix_alg[alg].run_from(params, unmix_alg[ctx], unmix_alg[layer], unmix_alg[fb])
    expected = builder_message(values, processing_name)
    assert " ".join(str(exc.value).split()) == expected
    if case in ("parameter of another method", "workers and a scheduler"):  # values QGIS itself accepts
        with pytest.raises(QgsProcessingException) as exc:
            processing.run("urdm:unmix", dict(params, INPUT=scene["image"], LIBRARY=scene["library"],
                                              OUTPUT_FOLDER=str(tmp_path / "o")))
        assert expected in " ".join(str(exc.value).split())
        assert not (tmp_path / "o").exists()


def test_run_and_load_results_styles_and_groups_layers(provider, qgis_new_project, scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    from urdm_plugin.qgis_layers.style import VIRIDIS

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    res = processing.runAndLoadResults("urdm:unmix", {
        "INPUT": scene["image"], "LIBRARY": scene["library"], "METHOD": 0,
        "OUTPUT_FOLDER": str(tmp_path / "loaded")}, feedback=QgsProcessingFeedback(), context=context)
    run_json = os.path.abspath(res["RUN_JSON"])
    layers = list(QgsProject.instance().mapLayers().values())
    assert len(layers) == len(scene["names"]) + 2
    by_role = {}
    for ly in layers:
        assert ly.customProperty("urdm/run_json") == run_json
        by_role.setdefault(ly.customProperty("urdm/role"), []).append(ly)
    assert sorted(ly.customProperty("urdm/endmember") for ly in by_role["abundance"]) == sorted(scene["names"])
    for ly in by_role["abundance"]:
        r = ly.renderer()
        assert (r.classificationMin(), r.classificationMax()) == (0.0, 1.0)
        assert r.shader().rasterShaderFunction().colorRampItemList()[0].color.name() == VIRIDIS[0]
    assert [c.label for c in by_role["dominant"][0].renderer().classes()] == scene["names"]
    group = run_group(QgsProject.instance().layerTreeRoot(), "proc_scene", "fcls")
    assert group is not None and len(group.findLayers()) == len(layers)
    # the dialog's order: abundances in library order, then dominant and residual; only the
    # first map visible, however Processing happened to load them
    nodes = group.findLayers()
    assert [n.layer().customProperty("urdm/endmember") for n in nodes[:len(scene["names"])]] == scene["names"]
    assert [n.layer().customProperty("urdm/role") for n in nodes[len(scene["names"]):]] == ["dominant", "residual"]
    assert [n.itemVisibilityChecked() for n in nodes] == [True] + [False] * (len(nodes) - 1)


def test_vca_algorithm_writes_library(provider, scene, tmp_path):
    import processing

    from urdm_plugin.core.io.library import read_library

    out = tmp_path / "em.csv"
    res = processing.run("urdm:vca", {"INPUT": scene["image"], "N": 3, "OUTPUT": str(out)})
    lib = read_library(res["OUTPUT"])
    assert len(lib) == 3 and lib.wavelengths_nm is not None


def test_processing_workers_give_the_local_result_and_a_bad_scheduler_one_message(provider, scene, tmp_path):
    import processing
    from osgeo import gdal
    from qgis.core import QgsProcessingException

    base = {"INPUT": scene["image"], "LIBRARY": scene["library"], "METHOD": 0}
    local = processing.run("urdm:unmix", dict(base, OUTPUT_FOLDER=str(tmp_path / "local")))
    pooled = processing.run("urdm:unmix", dict(base, OUTPUT_FOLDER=str(tmp_path / "pool"), WORKERS=2))
    for key in [k for k in local if k.startswith("ABUNDANCE_")] + ["RESIDUAL"]:
        assert (gdal.Open(local[key]).ReadAsArray() == gdal.Open(pooled[key]).ReadAsArray()).all()
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with pytest.raises(QgsProcessingException, match="Cannot reach the Dask scheduler"):
        processing.run("urdm:unmix", dict(base, OUTPUT_FOLDER=str(tmp_path / "dask"),
                                          SCHEDULER="tcp://127.0.0.1:9"))
    assert not (tmp_path / "dask").exists()


@pytest.mark.parametrize("load", [False, True])
def test_batch_loads_the_layers_only_when_load_layers_on_completion_is_ticked(provider, qgis_new_project, scene,
                                                                                tmp_path, load):
    """What the batch dialog does per row (processing/gui/BatchAlgorithmDialog.runAlgorithm):
    layer destinations carry the project only with "Load layers on completion" ticked, a new
    context per row, then Postprocessing.handleAlgorithmResults whatever the tick."""
    import inspect

    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects
    from qgis.core import (
        QgsApplication,
        QgsProcessingFeedback,
        QgsProcessingOutputLayerDefinition,
        QgsProject,
    )

    alg = QgsApplication.processingRegistry().algorithmById("urdm:unmix")
    project = QgsProject.instance() if load else None
    for row in (1, 2):  # two rows, two runs: two groups or none
        feedback = QgsProcessingFeedback()
        context = dataobjects.createContext(feedback)
        params = {"INPUT": scene["image"], "LIBRARY": scene["library"], "METHOD": 0,
                  "OUTPUT_FOLDER": str(tmp_path / f"row{row}"),
                  "DOMINANT": QgsProcessingOutputLayerDefinition("TEMPORARY_OUTPUT", project)}
        results, ok = alg.run(params, context, feedback)
        assert ok, feedback.textLog()
        assert results["DOMINANT"] == str(tmp_path / f"row{row}" / "dominant.tif")
        # QGIS 3.22: (alg, context, feedback, showResults, parameters); 3.40 dropped showResults
        extra = {"showResults": False} if "showResults" in inspect.signature(handleAlgorithmResults).parameters else {}
        handleAlgorithmResults(alg, context, feedback=feedback, parameters=params, **extra)
    n_layers = len(QgsProject.instance().mapLayers())
    groups = [g for g in QgsProject.instance().layerTreeRoot().findGroups() if g.name().startswith("proc_scene")]
    if load:
        assert len(groups) == 2 and n_layers == 2 * (len(scene["names"]) + 2)
    else:
        assert groups == [] and n_layers == 0


def test_a_dominant_file_named_gets_a_copy(provider, scene, tmp_path):
    import processing
    from osgeo import gdal

    res = processing.run("urdm:unmix", {"INPUT": scene["image"], "LIBRARY": scene["library"], "METHOD": 0,
                                        "OUTPUT_FOLDER": str(tmp_path / "out"), "DOMINANT": str(tmp_path / "dom.tif")})
    assert res["DOMINANT"] == str(tmp_path / "dom.tif")
    a = gdal.Open(res["DOMINANT"]).ReadAsArray()
    b = gdal.Open(str(tmp_path / "out" / "dominant.tif")).ReadAsArray()
    assert (a == b).all()



def test_a_dominant_file_named_follows_the_output_rule(provider, scene, tmp_path):
    """DOMINANT never writes onto an input or a file this tool did not make (refused before
    the run: no output folder made); a copy from an earlier run is replaced."""
    import processing
    from qgis.core import QgsProcessingException

    mine = tmp_path / "notes.tif"
    mine.write_bytes(b"not ours")
    for dest, why in ((mine, "was not written by this tool"), (scene["image"], "is an input of this run")):
        out = tmp_path / f"out_{Path(dest).stem}"
        with pytest.raises(QgsProcessingException, match=why):
            processing.run("urdm:unmix", {"INPUT": scene["image"], "LIBRARY": scene["library"], "METHOD": 0,
                                          "OUTPUT_FOLDER": str(out), "DOMINANT": str(dest)})
        assert not out.exists()
    assert mine.read_bytes() == b"not ours"
    dom = tmp_path / "dom.tif"
    for run in ("a", "b"):  # the second run replaces the first run's copy (it carries the tool's mark)
        res = processing.run("urdm:unmix", {"INPUT": scene["image"], "LIBRARY": scene["library"], "METHOD": 0,
                                            "OUTPUT_FOLDER": str(tmp_path / run), "DOMINANT": str(dom)})
        assert res["DOMINANT"] == str(dom)


def test_every_algorithm_links_the_toolbox_section_of_the_shipped_guide(provider):
    """Help ▸ opens USAGE.md as installed with the plugin, at the section on the toolbox."""
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    for alg in provider.algorithms():
        url = urlparse(alg.helpUrl())
        assert url.scheme == "file", alg.id()
        guide = Path(unquote(url.path))
        assert guide.is_file() and guide.name == "USAGE.md", alg.id()
        heading = url.fragment.replace("-", " ")
        lines = [ln for ln in guide.read_text(encoding="utf-8").splitlines() if ln.startswith("#")]
        assert any(heading == "".join(c for c in ln.lstrip("# ").lower() if c.isalnum() or c == " ")
                   for ln in lines), (alg.id(), url.fragment)
        assert f"`{alg.id()}`" in guide.read_text(encoding="utf-8"), f"{alg.id()} is not in the guide"
