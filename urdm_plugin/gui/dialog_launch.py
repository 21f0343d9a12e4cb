"""Starting, cancelling and finishing runs and previews (a :class:`gui.task.UnmixTask` each)."""

from __future__ import annotations

import os
import tempfile
from typing import Optional

from qgis.core import Qgis, QgsApplication

from ..core.errors import UrdmError
from ..core.window import Window
from .dialog_extent import EXTENT_MASK, EXTENT_VIEW, center_crop
from .dialog_layout import PREVIEW_MAX_PIXELS


class DialogLaunch:
    """Mixed into :class:`gui.dialog.UnmixDialog`; works on its widgets."""

    def build_options(self, window=None, mask_path=None):
        """The :class:`UnmixOptions` the dialog describes, through the one options builder
        (method parameters from the registry-generated widgets; all spectra ticked = the
        whole library)."""
        from ..core.engine.options import build_run

        m = self.current_spec()
        names = self.checked_names()
        all_ticked = self.library is not None and len(names) == len(self.library)
        values = dict(self.parameters.params_for(m.id), **self.parameters.engine_values())
        values.update(method=m.id, endmembers=None if all_ticked else names, window=window, mask_path=mask_path)
        return build_run(values).options

    def _start(self, preview: bool) -> Optional[object]:
        from .task import UnmixTask, make_run_dir

        self._validate()
        layer = self.current_layer()
        if layer is None or self.info is None:
            return None
        cleanup = []
        window = None
        mask = None
        try:
            mode = self.extent_mode()
            if preview:
                base = self._view_window() or Window.whole(self.info.height, self.info.width)
                window = center_crop(base, PREVIEW_MAX_PIXELS)
            elif mode == EXTENT_VIEW:
                window = self._view_window()
            if mode == EXTENT_MASK:
                folder = self._export_mask(layer)
                cleanup.append(folder)
                mask = os.path.join(folder, "mask.gpkg")
            options = self.build_options(window, mask)
        except UrdmError as err:
            self._push(str(err), Qgis.MessageLevel.Critical, 0)
            return None
        if preview:
            from .task import PREVIEW_DIR_PREFIX

            tmp = tempfile.mkdtemp(prefix=PREVIEW_DIR_PREFIX)
            self._preview_dirs.add(tmp)
            out_dir = os.path.join(tmp, "preview")
        else:
            base_dir = self.output_widget.filePath().strip()
            try:
                os.makedirs(base_dir, exist_ok=True)
            except OSError as err:
                self._push(f"Cannot create the output folder {base_dir} ({err.strerror}). "
                           "Choose another folder.", Qgis.MessageLevel.Critical, 0)
                return None
            out_dir = make_run_dir(base_dir, layer.name(), options.method)
        self.save_settings()
        task = UnmixTask(layer.source(), self.library_widget.filePath(), out_dir, options, layer.name(),
                         add_to_map=self.add_to_map.isChecked() or preview, iface=self.iface,
                         cleanup=cleanup, preview=preview,
                         description=("URDM preview: " if preview else "URDM unmixing: ") + layer.name())
        task.progressChanged.connect(lambda v: self.progress.setValue(int(v)))
        task.message.connect(self.status.setText)
        task.on_finished = self._task_finished
        if preview:
            self.preview_task = task
        else:
            self.task = task
        self.progress.setValue(0)
        self.status.setText("Starting…")
        self.cancel_button.setEnabled(True)
        self._validate()
        QgsApplication.taskManager().addTask(task)
        return task

    def run(self):
        """Start the unmixing run in the background; returns the task (None if not started)."""
        self._output_folder_problem(self.output_widget.filePath().strip(), fresh=True)  # may have changed
        self._validate()
        if self.problems or self.task is not None:
            return None
        return self._start(preview=False)

    def preview(self):
        """Run the chosen method on the current view (a small window) as temporary layers."""
        if self.preview_task is not None:
            return None
        return self._start(preview=True)

    def cancel_run(self) -> None:
        for t in (self.task, self.preview_task):
            if t is not None:
                t.cancel()
        self.status.setText("Cancelling…")

    def _task_finished(self, task) -> None:
        if task is self.task:
            self.task = None
        if task is self.preview_task:
            self.preview_task = None
        if self.task is None and self.preview_task is None:
            self.cancel_button.setEnabled(False)
        if task.result is not None:
            self.progress.setValue(100)
            what = "Preview" if task.preview else "Run"
            self.status.setText(f"{what} finished in {task.result.seconds:.1f} s: {task.result.out_dir}")
        elif task.was_cancelled:
            self.progress.setValue(0)
            self.status.setText("Cancelled; no output was written.")
        else:
            self.progress.setValue(0)
            self.status.setText("")
            self._push(task.error, Qgis.MessageLevel.Critical, 0)
        self._validate()
