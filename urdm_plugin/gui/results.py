"""Result layers of a run: adding them to a project, styling them, tagging them.

Two halves:

* :func:`prepare_run` works without QGIS (GDAL + numpy only) and may run in a background
  thread: it writes the dominant-material raster ``dominant.tif`` next to ``run.json`` (from
  the abundance files, block by block) and registers it and the display ranges in
  ``run.json`` (rewritten atomically: temporary file, then rename).
* :func:`add_run_to_map` (main thread) loads the layers of a run into a group
  ``URDM – <input layer name>``, styles them (:func:`style_abundance`,
  :func:`style_residual`, :func:`style_dominant`, :func:`style_uncertainty`) and sets the
  custom properties other tools rely on (``urdm/run_json``, ``urdm/role``,
  ``urdm/endmember``).

The Processing post-processor and the map-sheet tools reuse these functions.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

#: Custom layer properties set on every result layer.
PROP_RUN_JSON = "urdm/run_json"
PROP_ROLE = "urdm/role"
PROP_ENDMEMBER = "urdm/endmember"

ROLE_ABUNDANCE = "abundance"
ROLE_RESIDUAL = "residual"
ROLE_DOMINANT = "dominant"
ROLE_UNCERTAINTY = "uncertainty"

DOMINANT_FILE = "dominant.tif"
DOMINANT_NODATA = 255
GROUP_PREFIX = "URDM – "

# Colour ramps sampled from matplotlib's perceptually uniform maps (9 stops each).
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")
MAGMA = ("#000004", "#1c1044", "#4f127b", "#812581", "#b5367a", "#e55064", "#fb8761", "#fec287", "#fcfdbf")
PLASMA = ("#0d0887", "#4c02a1", "#7e03a8", "#a92395", "#cc4778", "#e56b5d", "#f89540", "#fdc527", "#f0f921")
# Categorical palette for the dominant-material map (tab10, then tab20's light tones).
CATEGORICAL = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
               "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")


# ======================================================================================
# Part 1: files (no qgis)
# ======================================================================================


def read_manifest(run_json: str) -> dict:
    """The run.json content; raises :class:`core.errors.OutputError` when unreadable."""
    from ..core.errors import OutputError

    try:
        with open(run_json, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise OutputError(f"Cannot read the run manifest {run_json} ({exc})",
                          "Choose a folder written by URDM unmixing (it holds run.json)") from None


def write_manifest(run_json: str, manifest: dict) -> None:
    """Rewrite run.json atomically (a reader never sees a half-written file)."""
    folder = os.path.dirname(os.path.abspath(run_json))
    fd, tmp = tempfile.mkstemp(prefix=".run.json.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, run_json)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _percentile_of_raster(path: str, q: float = 98.0, max_values: int = 1_000_000) -> Optional[float]:
    """``q``-th percentile of a single-band float raster's valid values (strided sample)."""
    from osgeo import gdal

    ds = gdal.Open(path)
    if ds is None:
        return None
    band = ds.GetRasterBand(1)
    nd = band.GetNoDataValue()
    step = max(1, int(np.sqrt(ds.RasterXSize * ds.RasterYSize / max_values)))
    vals = []
    rows = max(1, 4_000_000 // max(1, ds.RasterXSize))
    for r0 in range(0, ds.RasterYSize, rows):
        arr = band.ReadAsArray(0, r0, ds.RasterXSize, min(rows, ds.RasterYSize - r0))
        if arr is None:
            return None
        arr = arr[(-r0) % step::step, ::step].ravel()
        ok = np.isfinite(arr)
        if nd is not None:
            ok &= arr != nd
        vals.append(arr[ok])
    v = np.concatenate(vals) if vals else np.empty(0)
    if v.size == 0:
        return None
    return float(np.percentile(v, q))


def write_dominant(run_dir: str, manifest: dict, cancel=None) -> str:
    """Write ``dominant.tif`` (uint8: index of the largest abundance, 255 = nodata).

    Read block by block from the abundance files; written to a temporary file in the run
    folder and renamed into place, so a failure leaves nothing half-written. Returns the
    path. Raises :class:`core.errors.OutputError` when the abundance files are unreadable.
    """
    from osgeo import gdal

    from ..core.errors import Cancelled, OutputError

    ems = manifest.get("endmembers") or []
    if not ems:
        raise OutputError(f"The run in {run_dir} lists no endmembers", "Run the unmixing again")
    if len(ems) >= DOMINANT_NODATA:
        raise OutputError(f"{len(ems)} endmembers are too many for a dominant-material map",
                          "Use fewer than 255 endmembers")
    srcs = []
    for em in ems:
        ds = gdal.Open(os.path.join(run_dir, em["file"]))
        if ds is None:
            raise OutputError(f"Cannot open the abundance raster {em['file']} in {run_dir}",
                              "Check that the run folder is complete")
        srcs.append(ds)
    W, H = srcs[0].RasterXSize, srcs[0].RasterYSize
    final = os.path.join(run_dir, DOMINANT_FILE)
    fd, tmp = tempfile.mkstemp(prefix=".dominant.", suffix=".tif", dir=run_dir)
    os.close(fd)
    out = None
    try:
        out = gdal.GetDriverByName("GTiff").Create(tmp, W, H, 1, gdal.GDT_Byte,
                                                  ["COMPRESS=DEFLATE", "TILED=YES"])
        if out is None:
            raise OutputError(f"Cannot write {final} ({gdal.GetLastErrorMsg()})",
                              "Check that the output folder is writable and has free space")
        out.SetGeoTransform(srcs[0].GetGeoTransform())
        out.SetProjection(srcs[0].GetProjection())
        ob = out.GetRasterBand(1)
        ob.SetNoDataValue(DOMINANT_NODATA)
        ob.SetDescription("dominant material")
        rat = gdal.RasterAttributeTable()
        rat.CreateColumn("value", gdal.GFT_Integer, gdal.GFU_MinMax)
        rat.CreateColumn("name", gdal.GFT_String, gdal.GFU_Name)
        for i, em in enumerate(ems):
            rat.SetValueAsInt(i, 0, i)
            rat.SetValueAsString(i, 1, str(em["name"]))
        ob.SetDefaultRAT(rat)
        rows = max(1, 2_000_000 // max(1, W * len(ems)))
        for r0 in range(0, H, rows):
            if cancel is not None and cancel():
                raise Cancelled()
            n = min(rows, H - r0)
            stack = []
            valid = np.ones((n, W), bool)
            for ds in srcs:
                b = ds.GetRasterBand(1)
                a = b.ReadAsArray(0, r0, W, n)
                if a is None:
                    raise OutputError(f"Reading {ds.GetDescription()} failed", "Check the run folder")
                nd = b.GetNoDataValue()
                valid &= np.isfinite(a)
                if nd is not None:
                    valid &= a != nd
                stack.append(a)
            idx = np.argmax(np.stack(stack), axis=0).astype(np.uint8)
            idx[~valid] = DOMINANT_NODATA
            if ob.WriteArray(idx, 0, r0) != 0:
                raise OutputError(f"Writing {final} failed ({gdal.GetLastErrorMsg()})",
                                  "Check free disk space")
        ob.FlushCache()
        ob = None
        out = None  # close before renaming
        if os.path.exists(tmp + ".aux.xml"):  # the attribute table (names) lives in the .aux.xml
            os.replace(tmp + ".aux.xml", final + ".aux.xml")
        os.replace(tmp, final)
    except BaseException:
        out = None
        for p in (tmp, tmp + ".aux.xml"):
            try:
                os.unlink(p)
            except OSError:
                pass
        raise
    return final


def prepare_run(run_json: str, dominant: bool = True, cancel=None) -> dict:
    """Background-safe preparation before :func:`add_run_to_map`; returns the manifest.

    Writes the dominant-material raster (if missing and ``dominant``), computes the display
    maxima of the residual and uncertainty maps (their 98th percentiles) and records both in
    run.json (``extra_files.dominant``, ``display``).
    """
    run_json = os.path.abspath(run_json)
    run_dir = os.path.dirname(run_json)
    manifest = read_manifest(run_json)
    extra = manifest.setdefault("extra_files", {})
    changed = False
    if dominant and not (extra.get("dominant") and os.path.isfile(os.path.join(run_dir, extra["dominant"]))):
        write_dominant(run_dir, manifest, cancel=cancel)
        extra["dominant"] = DOMINANT_FILE
        changed = True
    display = manifest.setdefault("display", {})
    if "residual_max" not in display and manifest.get("residual_file"):
        p = _percentile_of_raster(os.path.join(run_dir, manifest["residual_file"]))
        display["residual_max"] = p if p is not None and p > 0 else 1.0
        changed = True
    stds = extra.get("std") or []
    if stds and "std_max" not in display:
        vals = [_percentile_of_raster(os.path.join(run_dir, s["file"])) for s in stds]
        vals = [v for v in vals if v is not None and v > 0]
        display["std_max"] = max(vals) if vals else 1.0
        changed = True
    if changed:
        write_manifest(run_json, manifest)
    return manifest


# ======================================================================================
# Part 2: layers (qgis, main thread)
# ======================================================================================


def _ramp_items(stops, vmin: float, vmax: float):
    from qgis.core import QgsColorRampShader
    from qgis.PyQt.QtGui import QColor

    n = len(stops)
    items = []
    for i, c in enumerate(stops):
        v = vmin + (vmax - vmin) * i / (n - 1)
        items.append(QgsColorRampShader.ColorRampItem(v, QColor(c), f"{v:.3g}"))
    return items


def _gradient(stops):
    from qgis.core import QgsGradientColorRamp, QgsGradientStop
    from qgis.PyQt.QtGui import QColor

    inner = [QgsGradientStop(i / (len(stops) - 1), QColor(c)) for i, c in enumerate(stops[1:-1], start=1)]
    return QgsGradientColorRamp(QColor(stops[0]), QColor(stops[-1]), False, inner)


def pseudocolor_renderer(layer, stops, vmin: float, vmax: float):
    """A single-band pseudocolour renderer: continuous interpolated ramp from vmin to vmax."""
    from qgis.core import QgsColorRampShader, QgsRasterShader, QgsSingleBandPseudoColorRenderer

    shader_fn = QgsColorRampShader(vmin, vmax)
    shader_fn.setColorRampType(QgsColorRampShader.Interpolated)
    shader_fn.setClassificationMode(QgsColorRampShader.Continuous)
    shader_fn.setSourceColorRamp(_gradient(stops))
    shader_fn.setColorRampItemList(_ramp_items(stops, vmin, vmax))
    shader_fn.setClip(False)
    shader = QgsRasterShader(vmin, vmax)
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(vmin)
    renderer.setClassificationMax(vmax)
    return renderer


def style_abundance(layer) -> None:
    """The shared abundance style: viridis from 0 to 1 (identical for every endmember)."""
    layer.setRenderer(pseudocolor_renderer(layer, VIRIDIS, 0.0, 1.0))
    layer.triggerRepaint()


def style_residual(layer, vmax: Optional[float] = None) -> None:
    """Residual RMSE: magma from 0 to ``vmax`` (the run's 98th percentile)."""
    vmax = float(vmax) if vmax and vmax > 0 else 1.0
    layer.setRenderer(pseudocolor_renderer(layer, MAGMA, 0.0, vmax))
    layer.triggerRepaint()


def style_uncertainty(layer, vmax: Optional[float] = None) -> None:
    """Posterior standard deviation: plasma from 0 to ``vmax`` (shared across endmembers)."""
    vmax = float(vmax) if vmax and vmax > 0 else 1.0
    layer.setRenderer(pseudocolor_renderer(layer, PLASMA, 0.0, vmax))
    layer.triggerRepaint()


def style_dominant(layer, names) -> None:
    """Paletted renderer: class i in colour i of :data:`CATEGORICAL`, labelled with names."""
    from qgis.core import QgsPalettedRasterRenderer
    from qgis.PyQt.QtGui import QColor

    classes = [QgsPalettedRasterRenderer.Class(i, QColor(CATEGORICAL[i % len(CATEGORICAL)]), str(n))
               for i, n in enumerate(names)]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


def tag_layer(layer, run_json: str, role: str, endmember: Optional[str] = None) -> None:
    layer.setCustomProperty(PROP_RUN_JSON, os.path.abspath(run_json))
    layer.setCustomProperty(PROP_ROLE, role)
    if endmember is not None:
        layer.setCustomProperty(PROP_ENDMEMBER, str(endmember))


def style_by_role(layer, manifest: dict, role: str, endmember: Optional[str] = None) -> None:
    """Apply the style of ``role`` (used by the Processing post-processor too)."""
    display = manifest.get("display") or {}
    if role == ROLE_ABUNDANCE:
        style_abundance(layer)
    elif role == ROLE_RESIDUAL:
        style_residual(layer, display.get("residual_max"))
    elif role == ROLE_UNCERTAINTY:
        style_uncertainty(layer, display.get("std_max"))
    elif role == ROLE_DOMINANT:
        style_dominant(layer, [e["name"] for e in manifest.get("endmembers", [])])


def run_layers(run_json: str, manifest: Optional[dict] = None) -> list:
    """``[(path, layer name, role, endmember or None)]`` for the files of a run, in map order."""
    run_json = os.path.abspath(run_json)
    run_dir = os.path.dirname(run_json)
    m = manifest if manifest is not None else read_manifest(run_json)
    out = []
    for em in m.get("endmembers", []):
        out.append((os.path.join(run_dir, em["file"]), em["name"], ROLE_ABUNDANCE, em["name"]))
    extra = m.get("extra_files") or {}
    if extra.get("dominant"):
        out.append((os.path.join(run_dir, extra["dominant"]), "dominant material", ROLE_DOMINANT, None))
    if m.get("residual_file"):
        out.append((os.path.join(run_dir, m["residual_file"]), "residual RMSE", ROLE_RESIDUAL, None))
    for s in extra.get("std") or []:
        out.append((os.path.join(run_dir, s["file"]), f"{s['name']} uncertainty (std)", ROLE_UNCERTAINTY,
                    s["name"]))
    return out


def _unique_group_name(root, base: str) -> str:
    names = {g.name() for g in root.findGroups()}
    if base not in names:
        return base
    i = 2
    while f"{base} ({i})" in names:
        i += 1
    return f"{base} ({i})"


def group_name_for(input_name: str) -> str:
    return f"{GROUP_PREFIX}{input_name}"


def add_run_to_map(run_json: str, input_name: Optional[str] = None, project=None,
                   manifest: Optional[dict] = None):
    """Load every result layer of a run into a new group at the top of the layer tree.

    Returns ``(group, layers)``. The first abundance map is visible; the others, the
    dominant, residual and uncertainty maps are loaded unchecked (one click to compare).
    Raises :class:`core.errors.OutputError` when a file cannot be loaded.
    """
    from qgis.core import QgsProject, QgsRasterLayer

    from ..core.errors import OutputError

    project = project or QgsProject.instance()
    run_json = os.path.abspath(run_json)
    m = manifest if manifest is not None else read_manifest(run_json)
    if input_name is None:
        input_name = Path(m.get("inputs", {}).get("image", "image")).stem
    root = project.layerTreeRoot()
    group = root.insertGroup(0, _unique_group_name(root, group_name_for(input_name)))
    layers = []
    first = True
    for path, name, role, em in run_layers(run_json, m):
        layer = QgsRasterLayer(path, name, "gdal")
        if not layer.isValid():
            raise OutputError(f"QGIS cannot load the result raster {path}", "Check the run folder")
        style_by_role(layer, m, role, em)
        tag_layer(layer, run_json, role, em)
        project.addMapLayer(layer, False)
        node = group.addLayer(layer)
        node.setItemVisibilityChecked(first and role == ROLE_ABUNDANCE)
        first = False
        if role != ROLE_ABUNDANCE:
            node.setExpanded(False)
        layers.append(layer)
    return group, layers


def move_layer_into_group(layer, project, group_name: str):
    """Move a layer's tree node into the (created if needed) top-level group ``group_name``."""
    root = project.layerTreeRoot()
    group = root.findGroup(group_name)
    if group is None:
        group = root.insertGroup(0, group_name)
    node = root.findLayer(layer.id())
    if node is None:
        group.addLayer(layer)
        return group
    if node.parent() is group:
        return group
    clone = node.clone()
    group.addChildNode(clone)
    node.parent().removeChildNode(node)
    return group
