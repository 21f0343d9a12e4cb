"""Abundance map sheet: a print layout of a finished run, exported to PDF and PNG.

:func:`build_map_sheet` lays out, on one landscape page: a title (input, method, date),
one map per endmember (only its abundance layer, over an optional background) in a grid,
the residual map, one shared colour-ramp legend (0–1, "abundance fraction") plus the
residual's, a scale bar (all maps share one scale), a north arrow, the CRS and a footnote
with the method, parameters and software version read from ``run.json``.

:func:`export_map_sheet` writes PDF/PNG; :func:`open_map_sheet` builds the sheet, adds it
to the project's layouts and opens the layout designer (for the dialog's button and the
"Map sheet from run…" menu entry). Layers already in the project (``urdm/run_json``) are
reused; missing ones are loaded from the run folder.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
from qgis.core import (
    QgsColorRampLegendNode,
    QgsColorRampShader,
    QgsCoordinateReferenceSystem,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemPicture,
    QgsLayoutItemScaleBar,
    QgsLayoutMeasurement,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsLegendStyle,
    QgsMapLayerLegendUtils,
    QgsPrintLayout,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsScaleBarSettings,
    QgsSingleBandPseudoColorRenderer,
    QgsSymbolLayerUtils,
    QgsTextFormat,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor, QFont

from ..core.errors import OutputError, UrdmError
from .runs import (
    PROP_ENDMEMBER,
    PROP_ROLE,
    PROP_RUN_JSON,
    ROLE_ABUNDANCE,
    ROLE_RESIDUAL,
    RunFileError,
    RunInfo,
    find_run_layer,
    load_run,
)

#: Landscape paper sizes (width, height) in mm, in the Processing enum's order.
PAPERS = {"A4": (297.0, 210.0), "A3": (420.0, 297.0), "Letter": (279.4, 215.9)}
PAPER_NAMES = list(PAPERS)

ABUNDANCE_LEGEND = "abundance fraction"
RESIDUAL_LEGEND = "residual RMSE (reflectance)"
NORTH_ARROW_SVG = "arrows/NorthArrow_02.svg"

_VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")
_MAGMA = ("#000004", "#1c1044", "#4f127b", "#812581", "#b5367a", "#e55064", "#fb8761", "#fec287", "#fcfdbf")


# ---------------------------------------------------------------------------------------
# styling (the shared style functions of gui/results.py when present)
# ---------------------------------------------------------------------------------------


def _own_ramp(layer, stops, vmin: float, vmax: float) -> None:
    fn = QgsColorRampShader(vmin, vmax)
    fn.setColorRampType(QgsColorRampShader.Interpolated)
    fn.setColorRampItemList([
        QgsColorRampShader.ColorRampItem(vmin + (vmax - vmin) * i / (len(stops) - 1), QColor(c),
                                         f"{vmin + (vmax - vmin) * i / (len(stops) - 1):.3g}")
        for i, c in enumerate(stops)])
    shader = QgsRasterShader(vmin, vmax)
    shader.setRasterShaderFunction(fn)
    r = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    r.setClassificationMin(vmin)
    r.setClassificationMax(vmax)
    layer.setRenderer(r)


def style_abundance_layer(layer) -> None:
    """viridis 0–1, the same for every endmember."""
    try:
        from .results import style_abundance
    except ImportError:
        _own_ramp(layer, _VIRIDIS, 0.0, 1.0)
    else:
        style_abundance(layer)


def style_residual_layer(layer, vmax: float) -> None:
    try:
        from .results import style_residual
    except ImportError:
        _own_ramp(layer, _MAGMA, 0.0, vmax)
    else:
        style_residual(layer, vmax)


def residual_display_max(run: RunInfo) -> float:
    """run.json's ``display.residual_max``, else the residual's 98th percentile."""
    v = (run.manifest.get("display") or {}).get("residual_max")
    if isinstance(v, (int, float)) and v > 0:
        return float(v)
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.Open(run.residual) if run.residual else None
        if ds is None:
            return 1.0
        w, h = ds.RasterXSize, ds.RasterYSize
        f = max(1.0, max(w, h) / 512.0)
        band = ds.GetRasterBand(1)
        a = band.ReadAsArray(0, 0, w, h, buf_xsize=max(1, int(w / f)), buf_ysize=max(1, int(h / f)))
        nd = band.GetNoDataValue()
    finally:
        gdal.PopErrorHandler()
    if a is None:
        return 1.0
    ok = np.isfinite(a)
    if nd is not None:
        ok &= a != nd
    if not ok.any():
        return 1.0
    p = float(np.percentile(a[ok], 98))
    return p if p > 0 else 1.0


# ---------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------


def _group_for(project, run: RunInfo):
    from .runs import layers_with_runs, same_path

    root = project.layerTreeRoot()
    for lyr in layers_with_runs(project):
        if same_path(lyr.customProperty(PROP_RUN_JSON), run.run_json):
            node = root.findLayer(lyr.id())
            if node is not None and node.parent() is not None:
                return node.parent()
    name = f"URDM – {run.input_name}"
    return root.findGroup(name) or root.insertGroup(0, name)


def _load_layer(run: RunInfo, path: str, name: str, role: str, endmember, project, owner, add: bool):
    if not path or not os.path.isfile(path):
        raise RunFileError(f"The result raster '{path}' of the run is missing",
                           "Check the run folder, or run the unmixing again")
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        raise RunFileError(f"QGIS cannot load the result raster '{path}'", "Check the run folder")
    layer.setCustomProperty(PROP_RUN_JSON, run.run_json)
    layer.setCustomProperty(PROP_ROLE, role)
    if endmember is not None:
        layer.setCustomProperty(PROP_ENDMEMBER, endmember)
    if add:
        project.addMapLayer(layer, False)
        group = _group_for(project, run)
        node = group.addLayer(layer)
        node.setItemVisibilityChecked(False)
    else:
        layer.setParent(owner)  # lives (and dies) with the layout
    return layer


def _run_layers(run: RunInfo, project, owner, add: bool):
    """[(name, abundance layer)] and the residual layer (or None)."""
    out = []
    for name, path in run.endmembers:
        lyr = find_run_layer(project, run.run_json, ROLE_ABUNDANCE, name)
        if lyr is None:
            lyr = _load_layer(run, path, name, ROLE_ABUNDANCE, name, project, owner, add)
            style_abundance_layer(lyr)
        out.append((name, lyr))
    res = None
    if run.residual:
        res = find_run_layer(project, run.run_json, ROLE_RESIDUAL)
        if res is None:
            res = _load_layer(run, run.residual, "residual RMSE", ROLE_RESIDUAL, None, project, owner, add)
            style_residual_layer(res, residual_display_max(run))
    return out, res


# ---------------------------------------------------------------------------------------
# texts
# ---------------------------------------------------------------------------------------


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        if len(v) <= 4:
            return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
        return f"[{len(v)} values]"
    if isinstance(v, dict):
        return "{…}"
    return str(v)


def parameters_text(params: dict, limit: int = 12) -> str:
    """``k=v`` pairs of the run's own parameters (the options dict is summarised apart)."""
    items = [(k, v) for k, v in (params or {}).items() if k != "options" and not isinstance(v, dict)]
    text = ", ".join(f"{k}={_fmt_value(v)}" for k, v in items[:limit])
    if len(items) > limit:
        text += f", … ({len(items) - limit} more)"
    return text or "defaults"


def title_text(run: RunInfo) -> str:
    parts = [run.input_name, f"{run.method_label} unmixing"]
    if run.date:
        parts.append(run.date)
    return " — ".join(parts)


def footnote_text(run: RunInfo) -> str:
    inputs = run.manifest.get("inputs") or {}
    lib = os.path.basename(str(inputs.get("library") or "")) or "?"
    wl = run.wavelengths_nm
    bands = f"{len(run.bands_used)} bands"
    if wl:
        bands += f" ({min(wl):.0f}–{max(wl):.0f} nm)"
    opts = (run.parameters or {}).get("options") or {}
    seed = f", seed {opts['seed']}" if isinstance(opts, dict) and "seed" in opts else ""
    lines = [
        f"Method: {run.method_label} [{run.method}]; parameters: {parameters_text(run.parameters)}{seed}.",
        f"Input: {os.path.basename(run.image) or '?'}, {bands}; endmember library: {lib}; "
        f"endmembers: {', '.join(run.names)}.",
        f"URDM Unmixing for QGIS {run.version or 'unknown version'}; run {run.created or 'date unknown'}"
        + (f" ({float(run.manifest['seconds']):.1f} s)" if isinstance(run.manifest.get("seconds"), (int, float)) else "")
        + f"; folder {run.folder}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------


def _label(layout, text: str, x, y, w, h, size: float, bold=False, align=Qt.AlignLeft, italic=False):
    lab = QgsLayoutItemLabel(layout)
    lab.setText(text)
    f = QFont()
    f.setPointSizeF(size)
    f.setBold(bold)
    f.setItalic(italic)
    lab.setFont(f)
    lab.setHAlign(align)
    lab.setVAlign(Qt.AlignVCenter if h < 10 else Qt.AlignTop)
    layout.addLayoutItem(lab)
    lab.attemptMove(QgsLayoutPoint(x, y, QgsUnitTypes.LayoutMillimeters))
    lab.attemptResize(QgsLayoutSize(w, h, QgsUnitTypes.LayoutMillimeters))
    return lab


def _drop_band_name_node(legend, node) -> None:
    """Keep only the colour ramp of a pseudocolour raster's legend (not "Band 1: … (Gray)")."""
    model = legend.model()
    nodes = model.layerLegendNodes(node, True)
    keep = [i for i, n in enumerate(nodes) if isinstance(n, QgsColorRampLegendNode)]
    if keep and len(keep) < len(nodes):
        QgsMapLayerLegendUtils.setLegendNodeOrder(node, keep)
        model.refreshLayerLegend(node)


def _grid(n: int, gw: float, gh: float, aspect: float, gap: float, label_h: float):
    """(cols, rows, map_w, map_h): the grid giving the largest maps of ``aspect`` (w/h)."""
    best = None
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        cw = (gw - (cols - 1) * gap) / cols
        ch = (gh - (rows - 1) * gap) / rows - label_h
        if cw <= 0 or ch <= 0:
            continue
        mw = min(cw, ch * aspect)
        mh = mw / aspect
        if best is None or mw * mh > best[2] * best[3] + 1e-9:
            best = (cols, rows, mw, mh, cw, ch)
    if best is None:
        raise UrdmError(f"{n} maps do not fit on the page", "Choose a larger paper size")
    return best


def _nice(x: float) -> float:
    """The largest 1, 2 or 5 × 10^k not above ``x``."""
    if x <= 0:
        return 1.0
    k = math.floor(math.log10(x))
    for m in (5, 2, 1):
        if m * 10 ** k <= x:
            return m * 10 ** k
    return 10 ** k


def _unique_layout_name(project, base: str) -> str:
    mgr = project.layoutManager()
    name, i = base, 2
    while mgr.layoutByName(name) is not None:
        name = f"{base} ({i})"
        i += 1
    return name


def build_map_sheet(run_json_path, project=None, background_layer=None, title: Optional[str] = None,
                    paper: str = "A4", add_missing_layers: bool = False) -> QgsPrintLayout:
    """A print layout of the run at ``run_json_path`` (run folder or run.json).

    ``project`` (default: the current project) provides existing result layers; the
    layout is *not* added to its layout manager (see :func:`open_map_sheet`). Layers not
    in the project are loaded from the run folder: with ``add_missing_layers`` they are
    added to the project (needed for a layout saved with the project), otherwise they
    belong to the layout. Raises :class:`~urdm_plugin.core.errors.UrdmError` subclasses.
    """
    project = project or QgsProject.instance()
    if paper not in PAPERS:
        raise UrdmError(f"Unknown paper size '{paper}'", f"Use one of: {', '.join(PAPER_NAMES)}")
    run = load_run(run_json_path)
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.setName(_unique_layout_name(project, f"URDM map sheet – {run.input_name}"))
    W, H = PAPERS[paper]
    layout.pageCollection().page(0).setPageSize(QgsLayoutSize(W, H, QgsUnitTypes.LayoutMillimeters))

    abundance, residual = _run_layers(run, project, layout, add_missing_layers)
    first = abundance[0][1]
    crs = first.crs() if first.crs().isValid() else QgsCoordinateReferenceSystem()
    extent = first.extent()
    if extent.isEmpty() or extent.width() <= 0 or extent.height() <= 0:
        raise RunFileError(f"The abundance raster of '{abundance[0][0]}' has an empty extent",
                           "Run the unmixing again")
    background = [background_layer] if background_layer is not None else []

    margin, gap, panel_w = 10.0, 4.0, 58.0 if W < 400 else 70.0
    scale_f = W / 297.0
    title_h, foot_h, label_h = 12.0 * scale_f, 15.0 * scale_f, 5.0
    _label(layout, title or title_text(run), margin, margin - 2, W - 2 * margin, title_h, 16 * scale_f,
           bold=True)

    gx0, gy0 = margin, margin + title_h + 2
    gw = W - 2 * margin - panel_w - gap
    gh = H - gy0 - margin - foot_h - gap
    entries = [(f"{name}", lyr) for name, lyr in abundance]
    if residual is not None:
        entries.append(("residual RMSE", residual))
    cols, rows, mw, mh, cw, ch = _grid(len(entries), gw, gh, extent.width() / extent.height(), gap, label_h)
    maps = []
    for i, (name, lyr) in enumerate(entries):
        r, c = divmod(i, cols)
        x = gx0 + c * (cw + gap) + (cw - mw) / 2
        y = gy0 + r * (ch + label_h + gap)
        _label(layout, name, x, y, mw, label_h, 9, bold=True)
        m = QgsLayoutItemMap(layout)
        m.setId(f"map {name}")
        layout.addLayoutItem(m)
        # size first: moving or zooming a map of zero size leaves a NaN extent
        m.attemptResize(QgsLayoutSize(mw, mh, QgsUnitTypes.LayoutMillimeters))
        m.attemptMove(QgsLayoutPoint(x, y + label_h, QgsUnitTypes.LayoutMillimeters))
        if crs.isValid():
            m.setCrs(crs)
        m.setLayers([lyr] + background)
        m.setKeepLayerSet(True)
        m.setKeepLayerStyles(False)
        m.zoomToExtent(extent)
        m.setFrameEnabled(True)
        m.setFrameStrokeWidth(QgsLayoutMeasurement(0.2, QgsUnitTypes.LayoutMillimeters))
        m.setBackgroundColor(QColor(245, 245, 245))
        maps.append(m)

    # -- right panel: legend (top); north arrow, scale bar, CRS (bottom up) ---------------
    px = W - margin - panel_w
    legend = QgsLayoutItemLegend(layout)
    legend.setId("legend")
    legend.setTitle("")
    legend.setAutoUpdateModel(False)
    legend.setLinkedMap(maps[0])
    root = legend.model().rootGroup()
    root.clear()
    legend_layers = [(first, ABUNDANCE_LEGEND)]
    if residual is not None:
        legend_layers.append((residual, RESIDUAL_LEGEND))
    for lyr, text in legend_layers:
        node = root.addLayer(lyr)
        node.setCustomProperty("legend/title-label", text)
        _drop_band_name_node(legend, node)
    for style, size, bold in ((QgsLegendStyle.Subgroup, 9.0, True), (QgsLegendStyle.SymbolLabel, 8.0, False)):
        f = QFont()
        f.setPointSizeF(size * scale_f)
        f.setBold(bold)
        legend.setStyleFont(style, f)
    legend.setSymbolWidth(6.0)
    legend.setSymbolHeight(24.0 * scale_f)  # the length of the colour ramps
    legend.setResizeToContents(True)
    layout.addLayoutItem(legend)
    legend.attemptMove(QgsLayoutPoint(px, gy0, QgsUnitTypes.LayoutMillimeters))
    legend.updateLegend()

    py = H - margin - foot_h - gap
    crs_text = (f"CRS: {crs.authid() or 'custom'} – {crs.description()}" if crs.isValid()
                else "CRS: none (pixel coordinates)")
    py -= 9
    _label(layout, crs_text, px, py, panel_w, 9, 7.5)

    bar = QgsLayoutItemScaleBar(layout)
    bar.setId("scale bar")
    bar.setStyle("Single Box")
    bar.setLinkedMap(maps[0])
    layout.addLayoutItem(bar)
    bar.applyDefaultSize()
    fmt = QgsTextFormat()
    f = QFont()
    f.setPointSizeF(7)
    fmt.setFont(f)
    fmt.setSize(7)
    fmt.setSizeUnit(QgsUnitTypes.RenderPoints)
    bar.setTextFormat(fmt)
    if not crs.isGeographic():
        # two segments filling at most the panel width, in m or km (QGIS converts from the
        # map units; the "label unit multiplier" stays 1)
        ground_m = (panel_w - 15.0) / 1000.0 * maps[0].scale()
        seg_m = _nice(ground_m / 2.0)
        km = seg_m >= 1000
        bar.setUnits(QgsUnitTypes.DistanceKilometers if km else QgsUnitTypes.DistanceMeters)
        bar.setUnitLabel("km" if km else "m")
        bar.setMapUnitsPerScaleBarUnit(1.0)
        bar.setUnitsPerSegment(seg_m / 1000.0 if km else seg_m)
        bar.setNumberOfSegments(2)
        bar.setNumberOfSegmentsLeft(0)
        bar.setSegmentSizeMode(QgsScaleBarSettings.SegmentSizeFixed)
    bar.update()
    py -= 5
    _label(layout, "Scale of every map", px, py, panel_w, 4, 7, italic=True)
    py -= bar.sizeWithUnits().height() + 1
    bar.attemptMove(QgsLayoutPoint(px, py, QgsUnitTypes.LayoutMillimeters))

    arrow_size = 14.0
    py -= arrow_size + 4
    svg = QgsSymbolLayerUtils.svgSymbolNameToPath(NORTH_ARROW_SVG, project.pathResolver())
    if svg and os.path.isfile(svg):
        arrow = QgsLayoutItemPicture(layout)
        arrow.setId("north arrow")
        arrow.setPicturePath(svg)
        layout.addLayoutItem(arrow)
        arrow.attemptResize(QgsLayoutSize(arrow_size, arrow_size, QgsUnitTypes.LayoutMillimeters))
        arrow.attemptMove(QgsLayoutPoint(px, py, QgsUnitTypes.LayoutMillimeters))
        arrow.setLinkedMap(maps[0])
        arrow.setNorthMode(QgsLayoutItemPicture.GridNorth)
    else:  # no SVG library: a plain "N ↑"
        arrow = _label(layout, "N\n↑", px, py, arrow_size, arrow_size, 14, bold=True, align=Qt.AlignHCenter)
        arrow.setId("north arrow")

    _label(layout, footnote_text(run), margin, H - margin - foot_h, W - 2 * margin, foot_h, 6.5 * scale_f)
    layout.refresh()
    return layout


# ---------------------------------------------------------------------------------------
# export, designer
# ---------------------------------------------------------------------------------------


def _check_target(path: str, what: str) -> str:
    path = os.path.abspath(str(path))
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder for the {what} '{folder}' ({exc.strerror or exc})",
                          "Choose a folder you can write to") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"Cannot write the {what} into '{folder}'", "Choose a folder you can write to")
    return path


def export_map_sheet(layout: QgsPrintLayout, pdf_path: Optional[str] = None, png_path: Optional[str] = None,
                     dpi: float = 150.0) -> dict:
    """Export to PDF and/or PNG; returns ``{"pdf": path, "png": path}`` of what was written.
    Raises :class:`OutputError` when a file cannot be written."""
    from osgeo import gdal

    exporter = QgsLayoutExporter(layout)
    done = {}
    # the exporter tries to georeference the PNG through GDAL, which prints a harmless error
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        _export(exporter, pdf_path, png_path, dpi, done)
    finally:
        gdal.PopErrorHandler()
    return done


def _export(exporter, pdf_path, png_path, dpi, done) -> None:
    if pdf_path:
        pdf_path = _check_target(pdf_path, "PDF")
        s = QgsLayoutExporter.PdfExportSettings()
        s.dpi = float(dpi)
        s.rasterizeWholeImage = False
        s.forceVectorOutput = False
        r = exporter.exportToPdf(pdf_path, s)
        if r != QgsLayoutExporter.Success:
            raise OutputError(f"Exporting the map sheet to '{pdf_path}' failed ({exporter.errorMessage()})",
                              "Check that the file is not open in another program and the folder is writable")
        done["pdf"] = pdf_path
    if png_path:
        png_path = _check_target(png_path, "PNG")
        s = QgsLayoutExporter.ImageExportSettings()
        s.dpi = float(dpi)
        s.generateWorldFile = False
        r = exporter.exportToImage(png_path, s)
        if r != QgsLayoutExporter.Success:
            raise OutputError(f"Exporting the map sheet to '{png_path}' failed ({exporter.errorMessage()})",
                              "Check that the folder is writable and the DPI is not too high for memory")
        done["png"] = png_path


def open_map_sheet(iface, run_json, background_layer=None, project=None):
    """Build the map sheet of ``run_json``, add it to the project's layouts and open the
    layout designer. Errors are shown in the message bar (never a traceback); returns the
    layout or None."""
    project = project or QgsProject.instance()
    try:
        layout = build_map_sheet(run_json, project, background_layer=background_layer,
                                 add_missing_layers=True)
    except UrdmError as err:
        if iface is not None:
            iface.messageBar().pushWarning("URDM map sheet", str(err))
        return None
    project.layoutManager().addLayout(layout)
    if iface is not None:
        iface.openLayoutDesigner(layout)
    return layout
