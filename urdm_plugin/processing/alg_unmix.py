"""Processing algorithm "Unmix hyperspectral raster" (``urdm:unmix``).

Parameter indices of the enums follow ``core.methods.registry.METHODS`` and the fixed tuples below;
they are append-only (saved models and scripts store indices).
"""

from __future__ import annotations

import os
import re
import time

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
)

QUALITIES = ("fast", "balanced", "best")  # append-only
DEVICES = ("auto", "cpu", "cuda")  # append-only


def split_names(text: str) -> list:
    """Endmember names separated by newlines or ';' (blank entries dropped)."""
    return [t.strip() for t in re.split(r"[;\n\r]+", text or "") if t.strip()]


class UnmixAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    LIBRARY = "LIBRARY"
    ENDMEMBERS = "ENDMEMBERS"
    METHOD = "METHOD"
    QUALITY = "QUALITY"
    LAMBDA = "LAMBDA"
    SEED = "SEED"
    DEVICE = "DEVICE"
    MEMORY_MB = "MEMORY_MB"
    TILE_SIZE = "TILE_SIZE"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    RUN_JSON = "RUN_JSON"
    RESIDUAL = "RESIDUAL"
    DOMINANT = "DOMINANT"

    def name(self):
        return "unmix"

    def displayName(self):  # noqa: N802
        return "Unmix hyperspectral raster"

    def group(self):
        return "Unmixing"

    def groupId(self):  # noqa: N802
        return "unmixing"

    def shortHelpString(self):  # noqa: N802
        from ..core.methods.registry import METHODS

        methods = "".join(f"<li><b>{m.label}</b>: {m.description}</li>" for m in METHODS)
        return ("Unmixes a hyperspectral raster into one georeferenced abundance map per endmember of a "
                "spectral library (CSV with a wavelength_nm column, or ENVI .sli), plus a per-pixel "
                "residual RMSE map, a dominant-material map and run.json describing the run.<br>"
                "ENDMEMBERS: names separated by ';' or new lines (empty: all spectra, or an automatic "
                "selection for large libraries). LAMBDA 0 = automatic.<br>"
                f"Methods:<ul>{methods}</ul>"
                "The output folder must be new or empty.")

    def createInstance(self):  # noqa: N802
        return UnmixAlgorithm()

    def initAlgorithm(self, config=None):  # noqa: N802
        from ..core.engine.arrays import method_ready
        from ..core.methods.registry import METHODS, default_method

        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterFile(
            self.LIBRARY, "Endmember library (CSV or ENVI .sli)", QgsProcessingParameterFile.File,
            fileFilter="Spectral libraries (*.csv *.sli *.hdr *.txt);;All files (*.*)"))
        self.addParameter(QgsProcessingParameterString(
            self.ENDMEMBERS, "Endmembers to use (names separated by ';' or new lines; empty = all/automatic)",
            multiLine=True, optional=True))
        default = default_method()
        if not method_ready(default)[0]:
            default = "fcls"
        labels = [m.label if method_ready(m.id)[0] else f"{m.label} (unavailable here)" for m in METHODS]
        self.addParameter(QgsProcessingParameterEnum(
            self.METHOD, "Method", options=labels, defaultValue=[m.id for m in METHODS].index(default)))
        self.addParameter(QgsProcessingParameterEnum(self.QUALITY, "Quality (URDM)", options=list(QUALITIES),
                                                     defaultValue=1))
        adv = [
            QgsProcessingParameterNumber(self.LAMBDA, "Regularisation λ (0 = automatic)",
                                         QgsProcessingParameterNumber.Double, 0.0, minValue=0.0, maxValue=1000.0),
            QgsProcessingParameterNumber(self.SEED, "Random seed", QgsProcessingParameterNumber.Integer, 0,
                                         minValue=0),
            QgsProcessingParameterEnum(self.DEVICE, "Device (URDM)", options=list(DEVICES), defaultValue=0),
            QgsProcessingParameterNumber(self.MEMORY_MB, "Memory budget (MiB)",
                                         QgsProcessingParameterNumber.Integer, 512, minValue=16),
            QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size (pixels, spatial methods)",
                                         QgsProcessingParameterNumber.Integer, 256, minValue=32, maxValue=4096),
        ]
        for p in adv:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Output folder (new or empty)"))
        self.addOutput(QgsProcessingOutputFile(self.RUN_JSON, "Run manifest (run.json)"))
        self.addOutput(QgsProcessingOutputRasterLayer(self.RESIDUAL, "Residual RMSE"))
        self.addOutput(QgsProcessingOutputRasterLayer(self.DOMINANT, "Dominant material"))

    def processAlgorithm(self, parameters, context: QgsProcessingContext, feedback):  # noqa: N802
        from ..core.engine.pipeline import UnmixOptions, unmix_raster
        from ..core.errors import Cancelled, UrdmError
        from ..core.methods.registry import METHODS
        from ..qgis_layers.dominant import prepare_run
        from ..qgis_layers.groups import group_name_for
        from ..qgis_layers.runs import run_layers
        from ..qgis_layers.tags import ROLE_ABUNDANCE
        from . import postprocess

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("The input raster could not be loaded. Choose a raster layer or file.")
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"Layer '{layer.name()}' is not a file GDAL reads (provider '{layer.providerType()}'). "
                "Save it as a GeoTIFF and use that.")
        library = self.parameterAsFile(parameters, self.LIBRARY, context)
        names = split_names(self.parameterAsString(parameters, self.ENDMEMBERS, context))
        method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)].id
        quality = QUALITIES[self.parameterAsEnum(parameters, self.QUALITY, context)]
        lam = self.parameterAsDouble(parameters, self.LAMBDA, context)
        params = {}
        if method == "urdm":
            params["lam"] = lam
        elif method == "tv":
            params["lam_tv"] = lam
        elif lam > 0:
            feedback.pushWarning(f"λ = {lam} is ignored: method {method} has no regularisation weight.")
        options = UnmixOptions(
            method=method, endmembers=names or None, quality=quality, params=params,
            seed=self.parameterAsInt(parameters, self.SEED, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            memory_mb=self.parameterAsInt(parameters, self.MEMORY_MB, context),
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context))
        out_dir = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        if not out_dir:
            raise QgsProcessingException("Give an output folder.")

        last = {"msg": "", "t": 0.0}

        def progress(fraction, message):
            feedback.setProgress(100.0 * fraction)
            now = time.monotonic()
            if message and message != last["msg"] and (now - last["t"] > 1.0 or message.startswith(("warning", "Done",
                                                                                                   "Bands", "Opened"))):
                feedback.pushInfo(message)
                last.update(msg=message, t=now)

        try:
            feedback.pushInfo(f"Unmixing {layer.source()} with {method}…")
            result = unmix_raster(layer.source(), library, out_dir, options, progress=progress,
                                  cancel=feedback.isCanceled)
            run_json = os.path.join(result.out_dir, "run.json")
            manifest = prepare_run(run_json, cancel=feedback.isCanceled)
        except Cancelled:
            raise QgsProcessingException("Unmixing cancelled; no output was written.") from None
        except UrdmError as err:
            raise QgsProcessingException(str(err)) from None
        for w in manifest.get("warnings", []) or []:
            feedback.pushWarning(str(w))

        group = group_name_for(layer.name())
        outputs = {self.OUTPUT_FOLDER: result.out_dir, self.RUN_JSON: run_json}
        for path, name, role, em in run_layers(run_json, manifest):
            if role == "residual":
                outputs[self.RESIDUAL] = path
            elif role == "dominant":
                outputs[self.DOMINANT] = path
            if role == ROLE_ABUNDANCE:
                outputs[f"ABUNDANCE_{em}"] = path
            details = QgsProcessingContext.LayerDetails(name, context.project(), name,
                                                        QgsProcessingUtils.LayerHint.Raster)
            details.forceName = True
            details.setPostProcessor(postprocess.create(path, run_json, role, em, group, name))
            context.addLayerToLoadOnCompletion(path, details)
        outputs["ENDMEMBER_NAMES"] = ";".join(e["name"] for e in manifest.get("endmembers", []))
        return outputs


