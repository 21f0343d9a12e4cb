"""Abundance map sheet: a print layout of a finished run, exported to PDF and PNG.

Size note: ~660 lines, one page layout (grid, legends fitted to the panel, scale bar, texts)
and its export; the layer loading it needs is in :mod:`.load`.

:func:`build_map_sheet` lays out, on one landscape page: a title (input, method, date),
one map per endmember (only its abundance layer, over an optional background) in a grid
whose short last row is centred, the dominant-material map (written first if the run lacks
it) and the residual map, one shared colour-ramp legend (0–1, "abundance fraction") plus the
dominant map's classes and the residual's ramp (maximum rounded to two digits), a scale bar
(all maps share one scale), a north arrow beside it, the CRS and a footnote with the method,
the weight it used and where it came from, the date and the software version read from
``run.json``. A poor fit or an automatic selection is stated in red under the title
(:func:`sheet_notes`). The panel's legends take the most compact arrangement that fits above
the scale bar, so nothing overlaps for one to a dozen endmembers.

:func:`export_map_sheet` writes PDF/PNG; :func:`open_map_sheet` builds the sheet, adds it
to the project's layouts and opens the layout designer (for the dialog's button and the
"Map sheet from run…" menu entry). Layers already in the project (``urdm/run_json``) are
reused; missing ones are loaded from the run folder.
"""

from __future__ import annotations

import math
import os
import re
from typing import Optional

from qgis.core import (
    QgsColorRampLegendNode,
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
    QgsLayoutUtils,
    QgsLegendRenderer,
    QgsLegendStyle,
    QgsMapLayerLegendUtils,
    QgsPrintLayout,
    QgsProject,
    QgsScaleBarSettings,
    QgsSymbolLayerUtils,
    QgsTextFormat,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor, QFont

from ..core.errors import OutputError, UrdmError
from ..core.io.run_rasters import check_run_rasters
from .dominant import display_upper, prepare_run, raster_percentile
from .groups import group_of_run
from .load import load_result_layer
from .runs import RunFileError, RunInfo, load_run
from .tags import ROLE_ABUNDANCE, ROLE_DOMINANT, ROLE_RESIDUAL, find_run_layer

#: Landscape paper sizes (width, height) in mm, in the Processing enum's order.
PAPERS = {"A4": (297.0, 210.0), "A3": (420.0, 297.0), "Letter": (279.4, 215.9)}
PAPER_NAMES = list(PAPERS)

ABUNDANCE_LEGEND = "abundance fraction"
RESIDUAL_LEGEND = "residual RMSE (reflectance)"
DOMINANT_LEGEND = "dominant material"
NORTH_ARROW_SVG = "arrows/NorthArrow_02.svg"

def residual_display_max(run: RunInfo) -> float:
    """run.json's ``display.residual_max``, else the residual's 98th percentile."""
    v = (run.manifest.get("display") or {}).get("residual_max")
    if isinstance(v, (int, float)) and v > 0:
        return float(v)
    p = raster_percentile(run.residual) if run.residual else None
    return display_upper(p) if p is not None and p > 0 else 1.0


def _layer(run: RunInfo, path: str, name: str, role: str, endmember, project, owner, add: bool):
    """The project's layer of the run for ``role`` or a new one: added to the run's group
    when ``add``, else owned by the layout (it lives and dies with it)."""
    lyr = find_run_layer(project, run.run_json, role, endmember)
    if lyr is not None:
        return lyr
    manifest = dict(run.manifest, display=dict(run.manifest.get("display") or {},
                                               residual_max=residual_display_max(run)))
    lyr = load_result_layer(path, name, run.run_json, manifest, role, endmember)
    if add:
        project.addMapLayer(lyr, False)
        group_of_run(project, run.run_json, run.input_name).addLayer(lyr).setItemVisibilityChecked(False)
    else:
        lyr.setParent(owner)
    return lyr


def _run_layers(run: RunInfo, project, owner, add: bool):
    """[(name, abundance layer)], the dominant-material layer and the residual layer (each
    None when the run has none)."""
    out = [(name, _layer(run, path, name, ROLE_ABUNDANCE, name, project, owner, add))
           for name, path in run.endmembers]
    dom = res = None
    if run.dominant:
        dom = _layer(run, run.dominant, "dominant material", ROLE_DOMINANT, None, project, owner, add)
    if run.residual:
        res = _layer(run, run.residual, "residual RMSE", ROLE_RESIDUAL, None, project, owner, add)
    return out, dom, res


def _with_dominant(run: RunInfo) -> RunInfo:
    """The run with its dominant-material map, written now (as loading the results does) if
    it is missing; a run folder that cannot be written keeps the sheet without it."""
    if run.dominant or len(run.endmembers) < 2:
        return run
    try:
        prepare_run(run.run_json)
    except (UrdmError, OSError):
        return run
    return load_run(run.run_json)


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


#: Parameters the footnote states in words (the weight) or that only the log needs.
_WEIGHT_KEYS = ("lam", "lam_chosen", "lam_chosen_per_tile")


def parameters_text(params: dict, limit: int = 12) -> str:
    """``k=v`` pairs of the run's own parameters, without the weight (see :func:`weight_text`),
    per-tile lists and nested reports."""
    items = [(k, v) for k, v in (params or {}).items()
             if k != "options" and k not in _WEIGHT_KEYS and not isinstance(v, (dict, list))]
    text = ", ".join(f"{k}={_fmt_value(v)}" for k, v in items[:limit])
    if len(items) > limit:
        text += f", … ({len(items) - limit} more)"
    return text


def weight_text(params: dict) -> str:
    """The regularisation weight as a reader needs it: the value the run used and whether the
    user gave it or the scene's own data chose it ("" for methods without one)."""
    params = params or {}
    asked, used = params.get("lam"), params.get("lam_chosen")
    if used is None and isinstance(asked, (int, float)):
        used = asked
    if not isinstance(used, (int, float)):
        return ""
    if isinstance(asked, str) and asked.strip().lower() == "auto":
        return f"weight λ = {used:.3g}, chosen from the image itself"
    return f"weight λ = {used:.3g}, as given"


def title_text(run: RunInfo) -> str:
    parts = [run.input_name, f"{run.method_short} abundance maps"]
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
    method = f"Method: {run.method_label}"
    extras = [t for t in (weight_text(run.parameters), parameters_text(run.parameters)) if t]
    if isinstance(opts, dict) and "seed" in opts:
        extras.append(f"seed {opts['seed']}")
    when = run.created[:16].replace("T", " ") if run.created else "date unknown"
    secs = run.manifest.get("seconds")
    took = ""
    if isinstance(secs, (int, float)):
        took = f" in {float(secs):.2g} s" if secs < 10 else f" in {float(secs):.0f} s"
    lines = [
        method + (f"; {'; '.join(extras)}" if extras else "") + ".",
        f"Input: {os.path.basename(run.image) or '?'}, {bands}; endmember library: {lib}; "
        f"endmembers: {', '.join(run.names)}.",
        f"Made with URDM Unmixing for QGIS {run.version or '(unknown version)'} on {when}"
        + f"{took}; run folder {run.folder}.",
    ]
    return "\n".join(lines)


def sheet_notes(run: RunInfo) -> list:
    """What a reader of the sheet must know before trusting the maps, one line each: a poor
    fit (the maps may be meaningless) and endmembers the run selected itself from a library
    (with their shares and any flagged as implausible). Empty for a run of given endmembers
    that fits."""
    out = []
    fit = run.manifest.get("fit") or {}
    if fit.get("poor"):
        out.append(f"Poor fit: the endmembers leave on average {100 * float(fit['relative_residual']):.0f} % of a "
                   "pixel's reflectance unexplained (residual map) — a material of the scene is missing and "
                   "these maps may be meaningless.")
    sel = run.manifest.get("selection") or {}
    if sel.get("mode") == "automatic":
        shares = ", ".join(f"{n} {100 * float(sc):.0f} %" for n, sc in zip(sel.get("names") or run.names,
                                                                              sel.get("scores") or []))
        held = "ticked" if sel.get("subset") else "library"
        line = (f"Endmembers selected automatically from {sel.get('from', '?')} {held} spectra"
                + (f": {shares}" if shares else "") + ".")
        flags = sel.get("flags") or []
        if flags:
            line += f" Flagged as implausible: {'; '.join(str(f) for f in flags[:3])}" + (" …" if len(flags) > 3
                                                                                           else "") + "."
        out.append(line)
    return out


# ---------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------


def _font(size: float, bold: bool = False, italic: bool = False) -> QFont:
    """A QFont of ``size`` points."""
    f = QFont()
    f.setPointSizeF(size)
    f.setBold(bold)
    f.setItalic(italic)
    return f


def _text_format(font: QFont, color: Optional[QColor] = None) -> QgsTextFormat:
    """``font`` (its point size) as a text format, in ``color`` when given."""
    fmt = QgsTextFormat.fromQFont(font)
    if color is not None:
        fmt.setColor(color)
    return fmt


def _label(layout, text: str, x, y, w, h, size: float, bold=False, align=Qt.AlignmentFlag.AlignLeft, italic=False,
           color: Optional[QColor] = None):
    lab = QgsLayoutItemLabel(layout)
    lab.setText(text)
    f = _font(size, bold, italic)
    if hasattr(lab, "setTextFormat"):  # QGIS >= 3.24; setFont/setFontColor are deprecated there
        lab.setTextFormat(_text_format(f, color))
    else:  # QGIS 3.22
        lab.setFont(f)
        if color is not None:
            lab.setFontColor(color)
    lab.setHAlign(align)
    lab.setVAlign(Qt.AlignmentFlag.AlignVCenter if h < 10 else Qt.AlignmentFlag.AlignTop)
    layout.addLayoutItem(lab)
    lab.attemptMove(QgsLayoutPoint(x, y, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    lab.attemptResize(QgsLayoutSize(w, h, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    return lab


def _fitting_size(text: str, width: float, size: float, bold: bool = False, smallest: float = 6.0) -> float:
    """The point size, at most ``size`` (and at least ``smallest``), at which ``text`` fits
    on one line ``width`` mm wide: a map's title must not wrap into the map below it."""
    w = QgsLayoutUtils.textWidthMM(_font(size, bold), text)
    return size if w <= width - 1 else max(smallest, size * (width - 1) / w)


def _wrapped_height(lines: list, font: QFont, width: float) -> float:
    """Height (mm) of ``lines`` set in ``font`` and wrapped at word boundaries to ``width`` mm."""
    n = 0
    for text in lines:
        row = ""
        n += 1
        for word in text.split():
            trial = f"{row} {word}".strip()
            if row and QgsLayoutUtils.textWidthMM(font, trial) > width:
                n += 1
                row = word
            else:
                row = trial
    return n * QgsLayoutUtils.fontHeightMM(font) * 1.25 + 1.0


def _drop_band_name_node(legend, node) -> None:
    """Keep a raster legend's colour ramp or classes, not its "Band 1: … (Gray)" line."""
    model = legend.model()
    nodes = model.layerLegendNodes(node, True)
    ramps = [i for i, n in enumerate(nodes) if isinstance(n, QgsColorRampLegendNode)]
    keep = ramps or [i for i, n in enumerate(nodes)
                     if not re.match(r"Band \d+", str(n.data(Qt.ItemDataRole.DisplayRole) or ""))]
    if keep and len(keep) < len(nodes):
        QgsMapLayerLegendUtils.setLegendNodeOrder(node, keep)
        model.refreshLayerLegend(node)


def _legend(layout, item_id: str, layers, linked_map, symbol_h: float, scale_f: float, x: float, y: float,
            columns: int = 1) -> QgsLayoutItemLegend:
    """A legend of ``layers`` [(layer, title)] at (x, y) mm: each layer's title and its ramp or
    classes (no "Band 1" line), symbols ``symbol_h`` mm high."""
    legend = QgsLayoutItemLegend(layout)
    legend.setId(item_id)
    legend.setTitle("")
    legend.setAutoUpdateModel(False)
    legend.setLinkedMap(linked_map)
    root = legend.model().rootGroup()
    root.clear()
    for lyr, text in layers:
        node = root.addLayer(lyr)
        node.setCustomProperty("legend/title-label", text)
        _drop_band_name_node(legend, node)
    for style, size, bold in ((QgsLegendStyle.Style.Subgroup, 9.0, True), (QgsLegendStyle.Style.SymbolLabel, 8.0, False)):
        f = _font(size * scale_f, bold)
        if hasattr(QgsLegendStyle, "setTextFormat"):  # QGIS >= 3.30; setStyleFont is deprecated there
            st = legend.style(style)
            st.setTextFormat(_text_format(f))
            legend.setStyle(style, st)
        else:  # QGIS 3.22
            legend.setStyleFont(style, f)
    legend.setSymbolWidth(6.0)
    legend.setSymbolHeight(symbol_h)
    legend.setColumnCount(columns)
    legend.setResizeToContents(True)
    layout.addLayoutItem(legend)
    legend.attemptMove(QgsLayoutPoint(x, y, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    legend.updateLegend()
    # the item sizes itself only when first drawn; the sheet needs its height now
    ctx = QgsLayoutUtils.createRenderContextForLayout(layout, None)
    size = QgsLegendRenderer(legend.model(), legend.legendSettings()).minimumSize(ctx)
    legend.attemptResize(QgsLayoutSize(size.width(), size.height(), QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    return legend


def _panel_legends(layout, linked_map, first, dominant, residual, scale_f: float, x: float, top: float,
                   width: float, bottom: float) -> None:
    """The ramps' legend (abundance, residual) and the dominant map's classes stacked in the
    panel from ``top`` to ``bottom`` mm, ``width`` wide: the first of ever more compact
    arrangements (shorter ramps, classes in more columns, smaller type) that fits, so that
    nothing overlaps the scale bar and north arrow below, for one to a dozen endmembers."""
    # ramps (long patches) and the dominant map's classes (small ones) in two legends: a
    # legend has one symbol size and QGIS 3.22's raster legend nodes ignore patch sizes
    ramps = [(first, ABUNDANCE_LEGEND)] + ([(residual, RESIDUAL_LEGEND)] if residual is not None else [])
    tries = [(ramp, cols, type_f) for type_f in (1.0, 0.85, 0.7) for ramp in (24.0, 16.0, 10.0)
             for cols in ((1, 2, 3) if dominant is not None else (1,))]
    for i, (ramp, cols, type_f) in enumerate(tries):
        last = i == len(tries) - 1
        legend = _legend(layout, "legend", ramps, linked_map, ramp * scale_f, scale_f * type_f, x, top)
        below = top + legend.sizeWithUnits().height() + 2
        classes = None
        if dominant is not None:
            classes = _legend(layout, "legend dominant", [(dominant, DOMINANT_LEGEND)], linked_map, 4.0 * type_f,
                              scale_f * type_f, x, below, columns=cols)
        end = classes.sizeWithUnits() if classes is not None else None
        fits = below - 2 <= bottom and (end is None or (below + end.height() <= bottom and end.width() <= width))
        if fits or last:
            return
        layout.removeLayoutItem(legend)
        if classes is not None:
            layout.removeLayoutItem(classes)


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
    run = _checked_run(run_json_path)
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.setName(_unique_layout_name(project, f"URDM map sheet – {run.input_name}"))
    W, H = PAPERS[paper]
    layout.pageCollection().page(0).setPageSize(QgsLayoutSize(W, H, QgsUnitTypes.LayoutUnit.LayoutMillimeters))

    abundance, dominant, residual = _run_layers(run, project, layout, add_missing_layers)
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
    gy0 += _notes_height(layout, sheet_notes(run), margin, gy0, W - 2 * margin, scale_f)
    gw = W - 2 * margin - panel_w - gap
    gh = H - gy0 - margin - foot_h - gap
    entries = [(f"{name}", lyr) for name, lyr in abundance]
    if dominant is not None:
        entries.append(("dominant material", dominant))
    if residual is not None:
        entries.append(("residual RMSE", residual))
    grid = _grid(len(entries), gw, gh, extent.width() / extent.height(), gap, label_h)
    maps = _map_grid(layout, entries, grid, crs, extent, background, gx0, gy0, gap, label_h)

    # -- right panel: legends (top); scale bar with the north arrow beside it, CRS (bottom up)
    px = W - margin - panel_w
    py = H - margin - foot_h - gap
    crs_text = (f"CRS: {crs.authid() or 'custom'} – {crs.description()}" if crs.isValid()
                else "CRS: none (pixel coordinates)")
    py -= 9
    _label(layout, crs_text, px, py, panel_w, 9, 7.5)

    arrow_size = 14.0
    bar_w = panel_w - arrow_size - 4  # the arrow sits right of the bar, not above it
    py = _scale_bar(layout, maps[0], crs, px, py, bar_w, arrow_size)

    ax = px + panel_w - arrow_size
    _north_arrow(layout, project, maps[0], ax, py, arrow_size)

    _panel_legends(layout, maps[0], first, dominant, residual, scale_f, px, gy0, panel_w, py - 2)

    _label(layout, footnote_text(run), margin, H - margin - foot_h, W - 2 * margin, foot_h, 6.5 * scale_f)
    layout.refresh()
    return layout


def _checked_run(run_json_path) -> RunInfo:
    """The run at ``run_json_path`` with its rasters checked and its dominant map written
    when it lacks one; RunFileError when a raster is not the run's own."""
    run = load_run(run_json_path)
    try:  # one map re-projected, or a PNG named as a map: refused, not drawn on a wrong CRS
        check_run_rasters(run.folder, run.manifest)
    except OutputError as exc:
        raise RunFileError(exc.problem, exc.fix) from None
    return _with_dominant(run)


def _notes_height(layout, notes: list, x: float, y: float, width: float, scale_f: float) -> float:
    """Put ``notes`` under the title at (x, y - 1) mm, in red: what the reader must know before
    trusting the maps. Returns the height (mm) they take, 0 without notes."""
    if not notes:
        return 0.0
    lab = _label(layout, "\n".join(notes), x, y - 1, width, 10, 7.5 * scale_f, bold=True, color=QColor(176, 0, 32))
    note_h = _wrapped_height(notes, _font(7.5 * scale_f, bold=True), width - 2)
    lab.attemptResize(QgsLayoutSize(width, note_h, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    lab.setId("notes")
    lab.setVAlign(Qt.AlignmentFlag.AlignTop)
    return note_h + 1


def _map_grid(layout, entries: list, grid: tuple, crs, extent, background: list, gx0: float, gy0: float,
              gap: float, label_h: float) -> list:
    """One labelled map per (name, layer) of ``entries`` on the grid ``(cols, rows, map w, map h,
    cell w, cell h)`` (mm) from (gx0, gy0), all on ``extent``; returns the map items."""
    cols, rows, mw, mh, cw, ch = grid
    maps = []
    for i, (name, lyr) in enumerate(entries):
        r, c = divmod(i, cols)
        # a short last row is centred: no hole at its end
        shift = (cols - (len(entries) - r * cols)) * (cw + gap) / 2 if r == rows - 1 else 0.0
        x = gx0 + shift + c * (cw + gap) + (cw - mw) / 2
        y = gy0 + r * (ch + label_h + gap)
        _label(layout, name, x, y, mw, label_h, _fitting_size(name, mw, 9.0, bold=True), bold=True)
        m = QgsLayoutItemMap(layout)
        m.setId(f"map {name}")
        if crs.isValid():  # before sizing: a map sized without a CRS asks PROJ about an empty one
            m.setCrs(crs)
        layout.addLayoutItem(m)
        # size first: moving or zooming a map of zero size leaves a NaN extent
        m.attemptResize(QgsLayoutSize(mw, mh, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
        m.attemptMove(QgsLayoutPoint(x, y + label_h, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
        m.setLayers([lyr] + background)
        m.setKeepLayerSet(True)
        m.setKeepLayerStyles(False)
        m.zoomToExtent(extent)
        m.setFrameEnabled(True)
        m.setFrameStrokeWidth(QgsLayoutMeasurement(0.2, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
        m.setBackgroundColor(QColor(245, 245, 245))
        maps.append(m)
    return maps


def _scale_bar(layout, map0, crs, px: float, py: float, bar_w: float, arrow_size: float) -> float:
    """The scale bar of every map (linked to ``map0``), ``bar_w`` mm wide, with its caption,
    placed above ``py`` (mm); returns the top of the block it takes."""
    bar = QgsLayoutItemScaleBar(layout)
    bar.setId("scale bar")
    bar.setStyle("Single Box")
    bar.setLinkedMap(map0)
    layout.addLayoutItem(bar)
    bar.applyDefaultSize()
    bar.setTextFormat(_text_format(_font(7)))
    if not crs.isGeographic():
        # two segments filling at most the bar's width, in m or km (QGIS converts from the
        # map units; the "label unit multiplier" stays 1)
        ground_m = (bar_w - 12.0) / 1000.0 * map0.scale()
        seg_m = _nice(ground_m / 2.0)
        km = 2 * seg_m >= 1000  # "0 0.5 1 km", narrower than "0 500 1,000 m"
        bar.setUnits(QgsUnitTypes.DistanceUnit.DistanceKilometers if km else QgsUnitTypes.DistanceUnit.DistanceMeters)
        bar.setUnitLabel("km" if km else "m")
        bar.setMapUnitsPerScaleBarUnit(1.0)
        bar.setUnitsPerSegment(seg_m / 1000.0 if km else seg_m)
        bar.setNumberOfSegments(2)
        bar.setNumberOfSegmentsLeft(0)
        bar.setSegmentSizeMode(QgsScaleBarSettings.SegmentSizeMode.SegmentSizeFixed)
    bar.update()
    block_h = max(arrow_size, 5 + bar.sizeWithUnits().height() + 1)
    py -= block_h + 1
    _label(layout, "Scale of every map", px, py, bar_w, 4, 7, italic=True)
    bar.attemptMove(QgsLayoutPoint(px, py + 5, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    return py


def _north_arrow(layout, project, map0, ax: float, py: float, arrow_size: float) -> None:
    """The north arrow (QGIS's SVG, grid north of ``map0``; a plain "N ↑" without the SVG
    library) at (ax, py) mm, ``arrow_size`` mm square."""
    svg = QgsSymbolLayerUtils.svgSymbolNameToPath(NORTH_ARROW_SVG, project.pathResolver())
    if svg and os.path.isfile(svg):
        arrow = QgsLayoutItemPicture(layout)
        arrow.setId("north arrow")
        arrow.setPicturePath(svg)
        layout.addLayoutItem(arrow)
        arrow.attemptResize(QgsLayoutSize(arrow_size, arrow_size, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
        arrow.attemptMove(QgsLayoutPoint(ax, py, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
        arrow.setLinkedMap(map0)
        arrow.setNorthMode(QgsLayoutItemPicture.NorthMode.GridNorth)
    else:  # no SVG library: a plain "N ↑"
        arrow = _label(layout, "N\n↑", ax, py, arrow_size, arrow_size, 14, bold=True, align=Qt.AlignmentFlag.AlignHCenter)
        arrow.setId("north arrow")


# ---------------------------------------------------------------------------------------
# export, designer
# ---------------------------------------------------------------------------------------


def _check_target(path: str, what: str) -> str:
    from ..core.io.output_policy import check_output_file

    path = str(check_output_file(path, (), overwrite=True, what=f"map sheet {what}"))  # only a sheet of ours
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


def _export_failure(exporter, result, path: str, fix: str) -> OutputError:
    """The export error of ``result`` in words. QGIS 3.22's QgsLayoutExporter has no
    errorMessage() (added later), so the result code is named here."""
    names = {getattr(QgsLayoutExporter, k): k for k in ("Canceled", "MemoryError", "FileError", "PrintError",
                                                         "SvgLayerError", "IteratorError") if hasattr(QgsLayoutExporter, k)}
    detail = exporter.errorMessage() if hasattr(exporter, "errorMessage") else ""
    why = detail or {"MemoryError": "not enough memory", "FileError": "the file cannot be written"}.get(
        names.get(result, ""), names.get(result, f"result code {result}"))
    return OutputError(f"Exporting the map sheet to '{path}' failed ({why})", fix)


def _export(exporter, pdf_path, png_path, dpi, done) -> None:
    from ..core.io.output_policy import mark_map_sheet

    if pdf_path:
        pdf_path = _check_target(pdf_path, "PDF")
        s = QgsLayoutExporter.PdfExportSettings()
        s.dpi = float(dpi)
        s.rasterizeWholeImage = False
        s.forceVectorOutput = False
        r = exporter.exportToPdf(pdf_path, s)
        if r != QgsLayoutExporter.ExportResult.Success:
            raise _export_failure(exporter, r, pdf_path, "Check that the file is not open in another program "
                                                         "and the folder is writable")
        mark_map_sheet(pdf_path)
        done["pdf"] = pdf_path
    if png_path:
        png_path = _check_target(png_path, "PNG")
        s = QgsLayoutExporter.ImageExportSettings()
        s.dpi = float(dpi)
        s.generateWorldFile = False
        r = exporter.exportToImage(png_path, s)
        if r != QgsLayoutExporter.ExportResult.Success:
            raise _export_failure(exporter, r, png_path, "Check that the folder is writable and the DPI is not "
                                                         "too high for memory")
        mark_map_sheet(png_path)
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
