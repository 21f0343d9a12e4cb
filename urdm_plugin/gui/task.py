"""Running ``core.engine.pipeline.unmix_raster`` as a QgsTask in QGIS's task manager.

``run()`` executes in a worker thread: it opens the image from its path there (GDAL
datasets are never shared across threads), reports progress, and polls
``isCanceled()`` at every block/tile/step (the pipeline raises ``Cancelled``). Nothing
escapes ``run()``: every exception is caught and kept, and ``finished()`` (main thread)
adds the result layers, or reports the problem to the message bar (``str(err)``) and the
full details to the message log (tag ``URDM``).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import traceback
from pathlib import Path
from typing import Callable, Optional

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..core.errors import Cancelled, UrdmError

LOG_TAG = "URDM"


def safe_part(text: str, max_len: int = 60) -> str:
    """A file-name-safe piece of a folder name (letters, digits, - and _)."""
    s = re.sub(r"[^\w\-]+", "_", str(text), flags=re.UNICODE).strip("_.")
    return (s or "image")[:max_len]


def make_run_dir(base_dir: str, layer_name: str, method: str, now: Optional[_dt.datetime] = None) -> str:
    """``<base>/<layer>_<method>_<YYYYmmdd-HHMMSS>`` that does not exist yet (``-2``, ``-3``…
    appended when two runs start in the same second). The folder is not created."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    stem = f"{safe_part(layer_name)}_{safe_part(method)}_{stamp}"
    path = Path(base_dir) / stem
    i = 2
    while path.exists() or Path(str(path) + ".lock").exists():
        path = Path(base_dir) / f"{stem}-{i}"
        i += 1
    return str(path)


def log(message: str, level=Qgis.MessageLevel.Info) -> None:
    QgsMessageLog.logMessage(message, LOG_TAG, level)


class UnmixTask(QgsTask):
    """Unmix one image in the background.

    Args:
        image_path: GDAL source of the input layer (``layer.source()``).
        library: library path or a ``SpectralLibrary``.
        out_dir: the (new) run folder.
        options: ``core.engine.pipeline.UnmixOptions``.
        input_name: the input layer's name (result group name).
        add_to_map: load the results into the project when done.
        iface: QgisInterface for messages (None: only the log).
        project: QgsProject to add layers to (None: the current project).
        cleanup: extra paths (temporary mask files) removed when the task ends.
        preview: a preview run (layers go to a "URDM preview" group that replaces the last).

    Signals: ``message(str)`` (progress text), ``done(object)`` with the RunResult,
    ``failed(str)`` with the user-facing message ("" when cancelled).
    """

    message = pyqtSignal(str)
    done = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, image_path: str, library, out_dir: str, options, input_name: str = "",
                 add_to_map: bool = True, iface=None, project=None, cleanup=(), preview: bool = False,
                 description: Optional[str] = None):
        super().__init__(description or f"URDM unmixing: {input_name or Path(image_path).name}",
                         QgsTask.Flag.CanCancel)
        self.image_path = image_path
        self.library = library
        self.out_dir = out_dir
        self.options = options
        self.input_name = input_name or Path(image_path).stem
        self.add_to_map = add_to_map
        self.iface = iface
        self.project = project
        self.cleanup = list(cleanup)
        self.preview = preview
        self.result = None
        self.error: str = ""
        self.details: str = ""
        self.was_cancelled = False
        self._folder_existed = False  # the output folder was there before the run (set by run())
        self.layers: list = []
        self.group = None
        self.last_message = ""
        self.on_finished: Optional[Callable] = None

    # ---------------------------------------------------------------- worker thread
    def _progress(self, fraction: float, msg: str) -> None:
        self.setProgress(max(0.0, min(100.0, 100.0 * float(fraction))))
        if msg and msg != self.last_message:
            self.last_message = msg
            self.message.emit(msg)

    def run(self) -> bool:  # noqa: D401 - QGIS's name

        try:
            from ..core.engine.pipeline import unmix_raster
            from ..qgis_layers.dominant import prepare_run

            self._folder_existed = os.path.isdir(self.out_dir)  # an empty folder is filled in place
            self.result = unmix_raster(self.image_path, self.library, self.out_dir, self.options,
                                       progress=self._progress, cancel=self.isCanceled)
            if self.isCanceled():
                raise Cancelled()
            self.message.emit("Preparing the result layers…")
            prepare_run(os.path.join(self.result.out_dir, "run.json"), cancel=self.isCanceled)
            if self.isCanceled():
                raise Cancelled()
            return True
        except Cancelled:
            self.was_cancelled = True
            self._remove_outputs()
            return False
        except UrdmError as err:
            self.error = str(err)
            self.details = traceback.format_exc()
            self._remove_outputs()
            return False
        except MemoryError:
            self.error = ("Out of memory while unmixing. Lower the memory budget or the tile size "
                          "in Advanced, or process a smaller extent.")
            self.details = traceback.format_exc()
            self._remove_outputs()
            return False
        except BaseException as err:  # noqa: BLE001 - nothing may escape run() (it would abort QGIS)
            self.error = f"Unmixing failed unexpectedly: {type(err).__name__}: {err}. Details are in the URDM log."
            self.details = traceback.format_exc()
            self._remove_outputs()
            return False
        finally:
            self._remove_cleanup()

    def _remove_outputs(self) -> None:
        """A cancelled/failed run leaves nothing: the writer removes its temporary folder;
        a folder already committed by this run (cancel during post-processing) goes too."""
        if self.result is not None and os.path.isdir(self.result.out_dir):
            if self._folder_existed:  # the user's folder stays, emptied of the run
                from ..core.io.output_policy import is_tool_file

                for entry in os.scandir(self.result.out_dir):
                    if is_tool_file(entry.path):
                        os.unlink(entry.path)
            else:
                shutil.rmtree(self.result.out_dir, ignore_errors=True)
        self.result = None

    def _remove_cleanup(self) -> None:
        for p in self.cleanup:
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.exists(p):
                try:
                    os.unlink(p)
                except OSError:
                    pass

    # ---------------------------------------------------------------- main thread
    def finished(self, ok: bool) -> None:  # noqa: D401 - QGIS's name
        try:
            self._finished(ok)
        except Exception as err:  # noqa: BLE001 - reported, never raised into QGIS
            self.error = f"The results could not be added to the map: {err}"
            self.details = traceback.format_exc()
            self._report_error()
            self.failed.emit(self.error)
        if self.on_finished is not None:
            self.on_finished(self)

    def _finished(self, ok: bool) -> None:
        if ok and self.result is not None:
            run_json = os.path.join(self.result.out_dir, "run.json")
            if self.add_to_map:
                from ..qgis_layers.load import add_run_to_map
                from ..qgis_layers.runs import read_manifest

                manifest = read_manifest(run_json)
                from ..qgis_layers.groups import PREVIEW_PREFIX

                group_name = PREVIEW_PREFIX + self.input_name if self.preview else None
                if self.preview:
                    self._remove_previous_preview(group_name)
                self.group, self.layers = add_run_to_map(run_json, self.input_name, self.project, manifest,
                                                         group_name=group_name)
            log(f"Run finished in {self.result.seconds:.1f} s: {self.result.out_dir}")
            for w in self.result.manifest.get("warnings", []) or []:
                log("warning: " + str(w), Qgis.MessageLevel.Warning)
            if not self.preview:
                self._report_success()
            self.done.emit(self.result)
            return
        if self.was_cancelled or (self.isCanceled() and not self.error):
            self.was_cancelled = True
            log("Run cancelled; no output was written.")
            if self.iface is not None and not self.preview:
                self.iface.messageBar().pushMessage("URDM", "Unmixing cancelled; no output was written.",
                                                    Qgis.MessageLevel.Info, 5)
            self.failed.emit("")
            return
        if not self.error:
            self.error = "Unmixing stopped without a result. Details are in the URDM log."
        self._report_error()
        self.failed.emit(self.error)

    def _remove_previous_preview(self, group_name: str) -> None:
        from qgis.core import QgsProject

        project = self.project or QgsProject.instance()
        remove_preview_group(project, group_name)

    def _report_error(self) -> None:
        log(self.error + ("\n" + self.details if self.details else ""), Qgis.MessageLevel.Critical)
        if self.iface is not None:
            from .messages import push_message

            push_message(self.iface.messageBar(), self.error, Qgis.MessageLevel.Critical, 0)

    def _report_success(self) -> None:
        if self.iface is None or self.result is None:
            return
        from qgis.PyQt.QtCore import QUrl
        from qgis.PyQt.QtGui import QDesktopServices
        from qgis.PyQt.QtWidgets import QPushButton

        folder = self.result.out_dir
        text = success_text(self.result.manifest, self.result.seconds, folder)
        # a poor fit stays until dismissed: the maps may be meaningless
        level = Qgis.MessageLevel.Warning if (self.result.manifest.get("fit") or {}).get("poor") else Qgis.MessageLevel.Success
        self._zoom_to_first_map()
        bar = self.iface.messageBar()
        try:
            from .messages import push_message

            button = QPushButton("Open output folder")
            button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(folder)))
            push_message(bar, text, level, 10 if level == Qgis.MessageLevel.Success else 0, buttons=[button])
        except (AttributeError, TypeError):  # a minimal iface (tests): plain message
            bar.pushMessage("URDM", text + f": {folder}", level, 10)

    def _zoom_to_first_map(self) -> None:
        """Bring the results into view when the map shows none of them."""
        layers = self.layers
        canvas = getattr(self.iface, "mapCanvas", lambda: None)()
        if not layers or canvas is None:
            return
        try:
            from qgis.core import QgsCoordinateTransform, QgsProject

            extent = QgsCoordinateTransform(layers[0].crs(), canvas.mapSettings().destinationCrs(),
                                            QgsProject.instance()).transformBoundingBox(layers[0].extent())
            if not canvas.extent().intersects(extent):
                canvas.setExtent(extent)
                canvas.refresh()
        except Exception as exc:  # noqa: BLE001 - a view nicety must never hide the result message
            log(f"Could not zoom to the results: {exc}", Qgis.MessageLevel.Warning)


def success_text(manifest: dict, seconds: float, folder: str) -> str:
    """The success message: maps, method, time, the mean residual and — when the endmembers
    were chosen automatically — the chosen spectra with their shares, so a poor or odd
    selection is seen at once, not only in run.json — and a poor fit (core.engine.fit_check)."""
    from osgeo import gdal

    n = len(manifest.get("endmembers", []))
    text = f"{n} abundance maps ({manifest.get('method', '')}) in {seconds:.1f} s"
    res = manifest.get("residual_file")
    if res:
        ds = gdal.OpenEx(os.path.join(folder, res), gdal.OF_RASTER | gdal.OF_READONLY)
        mean = ds.GetRasterBand(1).GetMetadataItem("STATISTICS_MEAN") if ds is not None else None
        if mean is not None:
            text += f"; mean residual RMSE {float(mean):.4g}"
    sel = manifest.get("selection") or {}
    if sel.get("mode") == "automatic":
        shares = ", ".join(f"{name} {100 * score:.0f} %" for name, score in
                           zip(sel.get("names", []), sel.get("scores", [])))
        text += f"; selected automatically from {sel.get('from')}: {shares}"
    fit = manifest.get("fit") or {}
    if fit.get("poor"):
        text += (f". Poor fit: the residual is on average {100 * float(fit['relative_residual']):.0f} % of a "
                 "pixel's reflectance; see the layers' Selection note (use endmembers from the image, vca, or a "
                 "smaller library)")
    return text


#: Prefix of the temporary folders previews write into.
PREVIEW_DIR_PREFIX = "urdm_preview_"


def remove_preview_group(project, group_name: str) -> None:
    """Remove the preview group ``group_name``, its layers and their temporary folders
    (only folders named :data:`PREVIEW_DIR_PREFIX`…, never anything else)."""
    from ..qgis_layers.tags import PROP_RUN_JSON

    root = project.layerTreeRoot()
    for g in list(root.findGroups()):
        if g.name() != group_name:
            continue
        layers = [n.layer() for n in g.findLayers() if n.layer() is not None]
        folders = {os.path.dirname(os.path.dirname(str(ly.customProperty(PROP_RUN_JSON) or "")))
                   for ly in layers}
        root.removeChildNode(g)
        project.removeMapLayers([ly.id() for ly in layers])
        for f in folders:
            if f and os.path.basename(f).startswith(PREVIEW_DIR_PREFIX):
                shutil.rmtree(f, ignore_errors=True)
