"""Styles of the result layers, written once: the palettes and a renderer per role.

Abundance: viridis 0–1 (the same for every endmember); residual RMSE: magma 0–run's 98th
percentile; uncertainty: plasma 0–the largest 98th percentile; ELMM scaling: BrBG 0.5–1.5;
dominant material: a
paletted renderer in :data:`CATEGORICAL`. :func:`style_by_role` picks one from a layer's
``urdm/role``; the dialog, the map sheet and the Processing post-processor all use it.
"""

from __future__ import annotations

from typing import Optional

from .tags import ROLE_ABUNDANCE, ROLE_DOMINANT, ROLE_RESIDUAL, ROLE_SCALING, ROLE_UNCERTAINTY

# Colour ramps sampled from matplotlib's perceptually uniform maps (9 stops each).
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")
MAGMA = ("#000004", "#1c1044", "#4f127b", "#812581", "#b5367a", "#e55064", "#fb8761", "#fec287", "#fcfdbf")
PLASMA = ("#0d0887", "#4c02a1", "#7e03a8", "#a92395", "#cc4778", "#e56b5d", "#f89540", "#fdc527", "#f0f921")
# Diverging ramp (ColorBrewer BrBG, 9 stops) for the ELMM scalings: brown darker, teal brighter.
BRBG = ("#8c510a", "#bf812d", "#dfc27d", "#f6e8c3", "#f5f5f5", "#c7eae5", "#80cdc1", "#35978f", "#01665e")
#: Range of the scaling style: 1 (the library's brightness) in the middle, ±50 %.
SCALING_RANGE = (0.5, 1.5)
# Categorical palette for the dominant-material map (tab10, then tab20's light tones).
CATEGORICAL = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
               "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")


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
    shader_fn.setColorRampType(QgsColorRampShader.Type.Interpolated)
    shader_fn.setClassificationMode(QgsColorRampShader.ClassificationMode.Continuous)
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


def style_scaling(layer) -> None:
    """ELMM brightness scaling ψ: BrBG from 0.5 to 1.5, white at 1 (shared across endmembers,
    so shade reads alike on every map)."""
    layer.setRenderer(pseudocolor_renderer(layer, BRBG, *SCALING_RANGE))
    layer.triggerRepaint()


def style_dominant(layer, names) -> None:
    """Paletted renderer: class i in colour i of :data:`CATEGORICAL`, labelled with names."""
    from qgis.core import QgsPalettedRasterRenderer
    from qgis.PyQt.QtGui import QColor

    classes = [QgsPalettedRasterRenderer.Class(i, QColor(CATEGORICAL[i % len(CATEGORICAL)]), str(n))
               for i, n in enumerate(names)]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


def style_by_role(layer, manifest: dict, role: str, endmember: Optional[str] = None) -> None:
    """Apply the style of ``role`` (used by the Processing post-processor too)."""
    display = manifest.get("display") or {}
    if role == ROLE_ABUNDANCE:
        style_abundance(layer)
    elif role == ROLE_RESIDUAL:
        style_residual(layer, display.get("residual_max"))
    elif role == ROLE_UNCERTAINTY:
        style_uncertainty(layer, display.get("std_max"))
    elif role == ROLE_SCALING:
        style_scaling(layer)
    elif role == ROLE_DOMINANT:
        style_dominant(layer, [e["name"] for e in manifest.get("endmembers", [])])
