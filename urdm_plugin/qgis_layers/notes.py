"""The "Selection" note of a run: which endmembers it used, how they were chosen and how well
they fit, attached to each result layer as a QGIS layer note (the note icon in the Layers
panel; QGIS 3.22 has notes on layers, not on groups), so the choice can be checked where the
maps are, not only in run.json.
"""

from __future__ import annotations

import html


def selection_note_html(manifest: dict) -> str:
    """The note's HTML from a run's manifest: the endmembers (with their shares and the
    library size when selected automatically), the fit on the run's pixel sample, and the
    run's warnings."""
    sel = manifest.get("selection") or {}
    names = [e.get("name", "") for e in manifest.get("endmembers") or []]
    mode = sel.get("mode", "")
    parts = ["<h3>Selection</h3>"]
    if mode == "automatic":
        held = "ticked" if sel.get("subset") else "library"
        parts.append(f"<p>Selected automatically: {len(names)} of {sel.get('from', '?')} {held} spectra "
                     f"(at most {sel.get('max', '?')}).</p>")
        scores = sel.get("scores") or []
        rows = "".join(f"<li>{html.escape(str(n))}: {100 * float(s):.0f} % of the abundance</li>"
                       for n, s in zip(sel.get("names") or names, scores))
        parts.append(f"<ul>{rows}</ul>" if rows else "")
        flags = sel.get("flags") or []
        if flags:
            parts.append("<p>Implausible (check before use):</p><ul>"
                         + "".join(f"<li>{html.escape(str(f))}</li>" for f in flags) + "</ul>")
    else:
        how = "as ticked / named" if mode == "given" else "the whole library"
        parts.append(f"<p>{len(names)} endmembers, {how}: {html.escape(', '.join(names))}.</p>")
    fit = manifest.get("fit") or {}
    if fit.get("pixels"):
        verdict = "<b>poor fit</b>" if fit.get("poor") else "fit"
        parts.append(f"<p>{verdict}: on {fit['pixels']} sampled pixels the residual is on average "
                     f"{100 * float(fit['relative_residual']):.0f} % of a pixel's reflectance "
                     f"(mean residual RMSE {float(fit['residual_rmse']):.3g}).</p>")
    shown = set(sel.get("flags") or []) if mode == "automatic" else set()
    warnings = [w for w in manifest.get("warnings") or [] if w not in shown]
    if warnings:
        parts.append("<p>Warnings:</p><ul>" + "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
                     + "</ul>")
    return "".join(parts)


def attach_selection_note(layers, manifest: dict) -> None:
    """Set the Selection note on every layer of a run."""
    from qgis.core import QgsLayerNotesUtils

    note = selection_note_html(manifest)
    for layer in layers:
        QgsLayerNotesUtils.setLayerNotes(layer, note)
