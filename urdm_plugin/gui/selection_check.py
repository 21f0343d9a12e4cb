"""The automatic selection's fit, checked before Run.

With more spectra ticked than a run can use, the run selects among them from the image's
pixels; the dialog's metadata-only plan cannot say whether that selection fits. Here the
selection itself runs — ``core.engine.plan.plan_run`` with ``read_pixels=True``, the run's
own sample and rules — in a background :class:`QgsTask` (Jasper Ridge and all 498 USGS
spectra: 1.5 s alone on a quiet two-core machine, 5 s with the load at 8, 11 s inside the
QGIS desktop at that load), so its poor-fit and stand-in warnings show before
Run, as they do for hand-ticked spectra. Results are cached by layer, library, ticked set
and extent; a change of any of them cancels a check still running; Run never waits for it.
"""

from __future__ import annotations

import os
from typing import Optional

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import QTimer, pyqtSignal

from ..core.engine.findings import Kind, warning
from ..core.errors import Cancelled

#: Wait (ms) after the last change before a check starts: ticking ten rows starts one.
START_DELAY_MS = 400


class SelectionCheckTask(QgsTask):
    """``plan_run(image_path, library, options, read_pixels=True)`` in a worker thread (the
    image is opened there). ``plan`` holds the result; ``error`` a problem's text."""

    progressed = pyqtSignal(float, str)

    def __init__(self, image_path: str, library, options):
        super().__init__("URDM: checking the automatic selection", QgsTask.Flag.CanCancel)
        self.image_path = image_path
        self.library = library
        self.options = options
        self.plan = None
        self.error = ""
        self.on_finished = None

    def run(self) -> bool:  # noqa: D401 - QGIS's name
        from ..core.engine.plan import plan_run

        def progress(fraction: float, message: str) -> None:
            if self.isCanceled():
                raise Cancelled()
            self.setProgress(100.0 * max(0.0, min(1.0, float(fraction))))
            self.progressed.emit(float(fraction), message)

        try:
            self.plan = plan_run(self.image_path, self.library, self.options, strict=False, read_pixels=True,
                                 progress=progress)
            return not self.isCanceled()
        except Cancelled:
            return False
        except Exception as err:  # noqa: BLE001 - nothing may escape run(); shown as a warning
            self.error = f"The automatic selection could not be checked before Run: {type(err).__name__}: {err}"
            return False

    def finished(self, ok: bool) -> None:  # noqa: D401 - QGIS's name
        if self.on_finished is not None:
            self.on_finished(self, ok)


def _library_key(library) -> tuple:
    """The library as read: its file and that file's modification time (an id() could be
    reused by the next library read after this one is freed)."""
    path = getattr(library, "path", "") or ""
    try:
        stamp = os.stat(path).st_mtime_ns if path else id(library)
    except OSError:
        stamp = id(library)
    return (path, stamp, library.spectra.shape)


class DialogSelectionCheck:
    """Mixed into :class:`gui.dialog.UnmixDialog`: runs and shows the selection check."""

    def _init_selection_check(self) -> None:
        self._selection_results: dict = {}  # key -> (warnings, hint) of a finished check
        self._selection_task: Optional[SelectionCheckTask] = None
        self._selection_key = None  # the key the running (or next) check is for
        self._selection_options = None  # the options of that check (core.engine.plan.UnmixOptions)
        self._selection_timer = QTimer(self)
        self._selection_timer.setSingleShot(True)
        self._selection_timer.timeout.connect(self._start_selection_check)

    def _selection_check_key(self, options) -> tuple:
        """What the selection depends on: layer, library, ticked set, extent (and seed, cap)."""
        return (self.info.path, _library_key(self.library), tuple(self.checked_names()), options.window,
                options.mask_path, options.seed, options.max_endmembers, options.mask_water_bands)

    def _selection_check(self, plan) -> tuple:
        """(warnings, hint) for a plan whose selection is automatic-pending: the cached check's
        warnings and the names it selected, or a check scheduled / running (no warnings)."""
        window = self._view_window() if self.extent_mode() == "view" else None
        options = self.build_options(window)
        key = self._selection_check_key(options)
        done = self._selection_results.get(key)
        if done is not None:
            if self._selection_key is not None and self._selection_key != key:
                self._cancel_selection_check()  # a check for a choice no longer made
            return done
        if key != self._selection_key:
            self._cancel_selection_check()
            self._selection_key, self._selection_options = key, options
            self._selection_timer.start(START_DELAY_MS)
        return [], "Checking the automatic selection on a sample of the image…"

    def _start_selection_check(self) -> None:
        if self._selection_key is None or self.info is None or self.library is None:
            return
        task = SelectionCheckTask(str(self.info.path), self.library, self._selection_options)
        key = self._selection_key
        task.progressed.connect(lambda f, m: self._show_selection_progress(f, m))
        task.on_finished = lambda t, ok, key=key: self._selection_check_finished(t, ok, key)
        self._selection_task = task
        self.stop_check_button.setVisible(True)
        QgsApplication.taskManager().addTask(task)

    def _show_selection_progress(self, fraction: float, message: str) -> None:
        if self._selection_task is not None:
            self.selection_hint.setText(f"Checking the automatic selection on a sample of the image "
                                        f"({100 * fraction:.0f} %)…")
            self.selection_hint.setToolTip(message)

    def _selection_check_finished(self, task, ok: bool, key) -> None:
        if task is self._selection_task:
            self._selection_task = None
            self.stop_check_button.setVisible(False)
        if ok and task.plan is not None:
            plan = task.plan
            auto = (plan.selection or {}).get("mode") == "automatic"
            hint = (f"Checked on {plan.sample.shape[1]} pixels: it would select {len(plan.names)} (below)."
                    if auto and plan.sample is not None else "")
            # shown as warnings: Run still selects, and says what went wrong
            self._selection_results[key] = ([warning(w, w.kind) for w in plan.warnings + plan.problems], hint)
        elif task.error:
            self._selection_results[key] = ([warning(task.error, Kind.ENDMEMBERS)], "")
        if key == self._selection_key and (ok or task.error):
            self._selection_key = None
            self._validate()

    def _cancel_selection_check(self) -> None:
        """Stop a check still running or about to start (a choice changed, Stop, closing)."""
        self._selection_timer.stop()
        self._selection_key = None
        if self._selection_task is not None:
            self._selection_task.cancel()
            self._selection_task = None
        self.stop_check_button.setVisible(False)

    def _stop_selection_check(self) -> None:
        """The Stop button: no check until a choice changes."""
        key = self._selection_key
        self._cancel_selection_check()
        if key is not None:
            self._selection_results[key] = ([], "Check stopped: the run still selects automatically; how well "
                                                 "its selection fits is shown after the run.")
        self._validate()
