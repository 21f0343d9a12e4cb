"""What the dialog shows before Run: problems (Run disabled) and warnings.

The run's rules (bands, endmembers, selection, parameters, method availability) come
from :func:`core.engine.plan.plan_run`; only what concerns the dialog's own widgets
(layer chosen, output folder, mask layer, map view) is checked here.
"""

from __future__ import annotations

import os

from .dialog_extent import EXTENT_MASK, EXTENT_VIEW


class DialogChecks:
    """Mixed into :class:`gui.dialog.UnmixDialog`; works on its widgets."""

    def _plan(self):
        """The run the current choices describe (core.engine.plan.plan_run on metadata only:
        no pixel is read), or None while the layer or the library is missing."""
        from ..core.engine.plan import plan_run

        if self.info is None or self.library is None or not self.checked_names():
            return None
        options = self.build_options()
        c = self._plan_cache  # (info, library, options repr, plan)
        # _rematch and _validate ask for the same plan; the cache holds info and library,
        # so identity compares them safely
        if c is None or c[0] is not self.info or c[1] is not self.library or c[2] != repr(options):
            self._plan_cache = c = (self.info, self.library, repr(options),
                                    plan_run(self.info, self.library, options, strict=False, read_pixels=False))
        return c[3]

    def _rematch(self) -> None:
        """Match the library to the layer's bands; show the match once above the table, and the plot."""
        plan = self._plan()
        self.matched = plan.matched if plan is not None else None
        self.library_summary.setText("" if self.matched is None else
                                     "Bands: " + self.matched.report.summary())
        self._scale_warnings = self._check_scale()
        self._update_plot()
        self._validate()

    def _check_scale(self) -> list:
        """core.bands.check_reflectance_scale on a few rows of the image (metadata already read)
        and, when the ticked spectra are the ones the run will use (no automatic selection
        pending), how well they fit those pixels (core.engine.fit_check)."""
        if self.matched is None or self.info is None:
            return []
        from ..core.bands import check_reflectance_scale
        from ..core.engine.fit_check import assess_fit, poor_fit_message
        from ..core.engine.plan import read_sample
        from ..core.errors import UrdmError

        try:
            bands = list(self.matched.band_indices)
            key = (self.info.path, tuple(bands))
            cached = self._sample_cache  # ticking re-checks: read the pixels once
            if cached is None or cached[0] != key:
                self._sample_cache = cached = (key, read_sample(self.info, bands, (0, 0, self.info.width,
                                                                                   self.info.height)))
            Y = cached[1]
            if not Y.size:
                return []
            out = check_reflectance_scale(Y, self.matched.E)
            plan = self._plan()
            mode = (plan.selection or {}).get("mode") if plan is not None else None
            if mode in ("given", "all") and not out:  # a wrong scale explains a bad fit already
                fit = assess_fit(Y, self.matched.E)
                if fit["poor"]:
                    out.append(poor_fit_message(fit, automatic=False))
            return out
        except UrdmError as err:
            return [str(err)]

    def _validate(self) -> None:
        """Collect problems (Run disabled) and warnings (shown, Run allowed)."""
        if self._loading:
            return
        problems, warnings = [], []
        layer = self.current_layer()
        if layer is None:
            problems.append("Choose a hyperspectral raster layer (two or more bands).")
        elif layer.providerType() != "gdal":
            problems.append(f"Layer '{layer.name()}' is not a file GDAL reads (provider '{layer.providerType()}'). "
                            "Save it as a GeoTIFF (Export ▸ Save As…) and use that layer.")
        elif layer.bandCount() < 2:
            problems.append(f"Layer '{layer.name()}' has only {layer.bandCount()} band; unmixing needs a "
                            "multi- or hyperspectral raster.")
        elif self.info is None:
            problems.append(self._layer_error or f"Cannot read layer '{layer.name()}'.")
        if not self.library_widget.filePath().strip():
            problems.append("Choose an endmember library (CSV or ENVI .sli).")
        elif self.library is None:
            problems.append(self._library_error)
        names = self.checked_names() if self.library is not None else []
        if self.library is not None and not names:
            problems.append("Tick at least one endmember in the table.")
        plan = self._plan()  # the run's own rules (core.engine.plan), from metadata only
        if plan is not None:
            problems.extend(plan.problems)
            warnings.extend(plan.warnings)
        if self.info is not None and self.info.wavelengths_nm is None and self.library is not None \
                and self.library.wavelengths_nm is not None and plan is not None and plan.matched is not None:
            warnings.append("The layer has no wavelengths (unit unknown): library rows are matched to bands in "
                            "order. Add wavelengths to the raster's metadata to match by wavelength.")
        if self.info is not None and "inferred" in (self.info.wavelength_unit or ""):
            warnings.append(f"The layer's wavelength unit is not stated; taken as {self.info.wavelength_unit}.")
        lib_unit = self.library.wavelength_unit if self.library is not None else ""
        if "inferred" in lib_unit:
            unit = lib_unit.replace(" (inferred)", "")
            warnings.append(f"The library's wavelength unit is not stated; taken as {unit} from the values. "
                            f"Name its first column wavelength_{'um' if unit == 'µm' else 'nm'} (CSV) or set "
                            "'wavelength units' (ENVI .hdr) to state it.")
        warnings.extend(self._scale_warnings)
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
        if plan is None:
            ok, reason = self.current_spec().available()
            if not ok:
                problems.append(reason)
        mode = self.extent_mode()
        if mode == EXTENT_MASK and self.mask_combo.currentLayer() is None:
            problems.append("Choose a polygon layer for the mask, or another processing extent.")
        if mode == EXTENT_MASK and self.mask_selected.isChecked() and self.mask_combo.currentLayer() is not None \
                and self.mask_combo.currentLayer().selectedFeatureCount() == 0:
            problems.append(f"No feature of '{self.mask_combo.currentLayer().name()}' is selected.")
        if mode == EXTENT_VIEW and self.info is not None and self._view_window() is None:
            problems.append("The current map view does not overlap the layer. Zoom to the layer or choose "
                            "'Whole layer'.")
        out = self.output_widget.filePath().strip()
        if not out:
            problems.append("Choose an output folder (each run writes a new subfolder there).")
        elif not os.path.isabs(os.path.expanduser(out)):  # relative to what? QGIS's start folder
            problems.append(f"Output folder '{out}' is a relative path. Give the full path (use the … button).")
        else:
            problem = self._output_folder_problem(out)
            if problem:
                problems.append(problem)
        self.problems, self.warnings = problems, warnings
        self._show_messages()
        running = self.task is not None
        self.run_button.setEnabled(not problems and not running)
        preview_ok = all("output folder" in p.lower() for p in problems)  # preview writes to a temp folder
        self.preview_button.setEnabled(preview_ok and self.preview_task is None and self.info is not None)

    def _output_folder_problem(self, out: str, fresh: bool = False) -> str:
        """Why a run could not make its subfolder in ``out`` ("" when it can):
        core.io.folders.check_folder_creatable, which writes a probe file. Cached per path while
        the dialog checks (every tick re-validates); ``fresh`` checks again (Run)."""
        from ..core.errors import UrdmError
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
