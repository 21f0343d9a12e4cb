"""What the dialog shows before Run: problems (Run disabled) and warnings.

The run's rules (bands, endmembers, selection, parameters, method availability, the
sample's reflectance scale and fit) come from :func:`core.engine.plan.plan_run`, typed
(:mod:`core.engine.findings`); only what concerns the dialog's own widgets (layer chosen,
output folder, mask layer, map view) is checked here.
"""

from __future__ import annotations

import os

from ..core.engine.findings import Kind, in_order, problem, warning
from ..core.errors import UrdmError
from .dialog_extent import EXTENT_MASK, EXTENT_VIEW


class DialogChecks:
    """Mixed into :class:`gui.dialog.UnmixDialog`; works on its widgets."""

    def _plan(self):
        """The run the current choices describe (core.engine.plan.plan_run on the whole layer,
        its pixel sample read once per layer and bands, the automatic selection left to the
        background check), or None while the layer or the library is missing."""
        from ..core.engine.plan import plan_run

        if self.info is None or self.library is None or not self.checked_names():
            return None
        options = self.build_options()
        c = self._plan_cache  # (info, library, options repr, plan)
        # _rematch and _validate ask for the same plan; the cache holds info and library,
        # so identity compares them safely
        if c is None or c[0] is not self.info or c[1] is not self.library or c[2] != repr(options):
            plan = plan_run(self.info, self.library, options, strict=False, auto_select=False,
                            samples=self._samples)
            self._plan_cache = c = (self.info, self.library, repr(options), plan)
        return c[3]

    def _rematch(self) -> None:
        """Match the library to the layer's bands; show the match once above the table, and the plot."""
        plan = self._plan()
        self.matched = plan.matched if plan is not None else None
        self.library_summary.setText("" if self.matched is None else
                                     "Bands: " + self.matched.report.summary())
        self._update_plot()
        self._validate()

    def _validate(self) -> None:
        """Collect problems (Run disabled) and warnings (shown, Run allowed): the run's own
        (core.engine.plan) and the dialog's widgets', each a core.engine.findings.Finding,
        listed by kind."""
        if self._loading:
            return
        problems, warnings = self._input_problems(), []
        plan = self._plan()  # the run's own rules (core.engine.plan)
        if plan is not None:
            problems.extend(plan.problems)
            warnings.extend(plan.warnings)
        else:
            ok, reason = self.current_spec().available()
            if not ok:
                problems.append(problem(reason, Kind.INPUT))
        warnings.extend(self._unit_warnings(plan))
        sel = plan.selection if plan is not None else None
        if sel and sel.get("mode") == "automatic-pending" and not problems:
            which = f"{sel['from']} ticked" if sel.get("subset") else f"All {sel['from']} ticked"
            # the selection's own fit, checked in the background (gui.selection_check)
            checked, hint = self._selection_check(plan)
            warnings.extend(w for w in checked if w not in warnings)
            self.selection_hint.setText(f"{which}, more than the {sel['max']} a run can use: it selects up to "
                                        f"{sel['max']} from the image. {hint}".strip())
        else:
            self._cancel_selection_check()
            self.selection_hint.setText("")
        problems += self._extent_problems() + self._output_problems()
        self.problems, self.warnings = in_order(problems), in_order(warnings)
        self._show_messages()
        running = self.task is not None
        self.run_button.setEnabled(not problems and not running)
        preview_ok = all(p.kind == Kind.OUTPUT for p in problems)  # preview writes to a temp folder
        self.preview_button.setEnabled(preview_ok and self.preview_task is None and self.info is not None)

    def _input_problems(self) -> list:
        """The layer, the library and the ticked spectra, as the widgets hold them."""
        out = []
        layer = self.current_layer()
        if layer is None:
            out.append("Choose a hyperspectral raster layer (two or more bands).")
        elif layer.providerType() != "gdal":
            out.append(f"Layer '{layer.name()}' is not a file GDAL reads (provider '{layer.providerType()}'). "
                       "Save it as a GeoTIFF (Export ▸ Save As…) and use that layer.")
        elif layer.bandCount() < 2:
            out.append(f"Layer '{layer.name()}' has only {layer.bandCount()} band; unmixing needs a "
                       "multi- or hyperspectral raster.")
        elif self.info is None:
            out.append(self._layer_error or f"Cannot read layer '{layer.name()}'.")
        if not self.library_widget.filePath().strip():
            out.append("Choose an endmember library (CSV or ENVI .sli).")
        elif self.library is None:
            out.append(self._library_error)
        out = [problem(p, Kind.INPUT) for p in out]
        if self.library is not None and not self.checked_names():
            out.append(problem("Tick at least one endmember in the table.", Kind.ENDMEMBERS))
        return out

    def _unit_warnings(self, plan) -> list:
        """Wavelengths missing or their units guessed: how the library was matched to the bands."""
        out = []
        if self.info is not None and self.info.wavelengths_nm is None and self.library is not None \
                and self.library.wavelengths_nm is not None and plan is not None and plan.matched is not None:
            out.append("The layer has no wavelengths (unit unknown): library rows are matched to bands in "
                       "order. Add wavelengths to the raster's metadata to match by wavelength.")
        if self.info is not None and "inferred" in (self.info.wavelength_unit or ""):
            out.append(f"The layer's wavelength unit is not stated; taken as {self.info.wavelength_unit}.")
        lib_unit = self.library.wavelength_unit if self.library is not None else ""
        if "inferred" in lib_unit:
            unit = lib_unit.replace(" (inferred)", "")
            out.append(f"The library's wavelength unit is not stated; taken as {unit} from the values. "
                       f"Name its first column wavelength_{'um' if unit == 'µm' else 'nm'} (CSV) or set "
                       "'wavelength units' (ENVI .hdr) to state it.")
        return [warning(w, Kind.BANDS) for w in out]

    def _extent_problems(self) -> list:
        """The processing extent chosen: a mask layer (and its selection), or a map view on the layer."""
        out = []
        mode = self.extent_mode()
        mask = self.mask_combo.currentLayer()
        if mode == EXTENT_MASK and mask is None:
            out.append("Choose a polygon layer for the mask, or another processing extent.")
        if mode == EXTENT_MASK and self.mask_selected.isChecked() and mask is not None \
                and mask.selectedFeatureCount() == 0:
            out.append(f"No feature of '{mask.name()}' is selected.")
        if mode == EXTENT_VIEW and self.info is not None and self._view_window() is None:
            out.append("The current map view does not overlap the layer. Zoom to the layer or choose "
                       "'Whole layer'.")
        return [problem(p, Kind.EXTENT) for p in out]

    def _output_problems(self) -> list:
        """The output folder: given, absolute, and one a run can make its subfolder in."""
        out = self.output_widget.filePath().strip()
        if not out:
            text = "Choose an output folder (each run writes a new subfolder there)."
        elif not os.path.isabs(os.path.expanduser(out)):  # relative to what? QGIS's start folder
            text = f"Output folder '{out}' is a relative path. Give the full path (use the … button)."
        else:
            text = self._output_folder_problem(out)
        return [problem(text, Kind.OUTPUT)] if text else []

    def _output_folder_problem(self, out: str, fresh: bool = False) -> str:
        """Why a run could not make its subfolder in ``out`` ("" when it can):
        core.io.folders.check_folder_creatable, which writes a probe file. Cached per path while
        the dialog checks (every tick re-validates); ``fresh`` checks again (Run)."""
        from ..core.io.folders import check_folder_creatable

        if fresh or self._folder_check is None or self._folder_check[0] != out:
            try:
                check_folder_creatable(os.path.expanduser(out))
                problem = ""
            except UrdmError as err:
                problem = str(err)
            self._folder_check = (out, problem)
        return self._folder_check[1]

    def _show_messages(self) -> None:
        import html

        parts = [f'<span style="color:#b00020">✖ {html.escape(p)}</span>' for p in self.problems]
        parts += [f'<span style="color:#9a6700">⚠ {html.escape(w)}</span>' for w in self.warnings]
        if not parts and self.matched is not None:
            # the band match is stated once, above the table (library_summary)
            parts.append('<span style="color:#1b7f3b">✔ No problems found: ready to run.</span>')
        self.problem_label.setText("<br>".join(parts))
        self._fit_messages()
