"""Processing algorithm "Unmix hyperspectral raster" (``urdm:unmix``).

The method enum follows ``core.methods.registry.METHODS`` (append-only: saved models and
scripts store indices); the method and engine parameters are generated from the registry,
each once (one ``LAMBDA`` for every regularised method: empty = automatic).
"""

from __future__ import annotations

import os
import re
import time

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputFile,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
)

from ..core.errors import Cancelled, UrdmError
from ..qgis_layers.extent import extent_to_window
from .base import UrdmAlgorithm

#: Processing names of registry parameters whose names predate the registry-generated ones.
PARAMETER_NAMES = {"lam": "LAMBDA", "quality": "QUALITY", "seed": "SEED", "device": "DEVICE",
                   "memory_mb": "MEMORY_MB", "tile_size": "TILE_SIZE"}


def processing_name(param_name: str) -> str:
    return PARAMETER_NAMES.get(param_name, param_name.upper())


def split_names(text: str) -> list:
    """Endmember names separated by newlines or ';' (blank entries dropped)."""
    return [t.strip() for t in re.split(r"[;\n\r]+", text or "") if t.strip()]


class UnmixAlgorithm(UrdmAlgorithm):
    ID = "unmix"
    LABEL = "Unmix hyperspectral raster"
    INPUT = "INPUT"
    LIBRARY = "LIBRARY"
    ENDMEMBERS = "ENDMEMBERS"
    METHOD = "METHOD"
    MASK = "MASK"
    EXTENT = "EXTENT"
    WORKERS = "WORKERS"
    QUALITY_MASK = "QUALITY_MASK"
    MASK_WATER_BANDS = "MASK_WATER_BANDS"
    SCHEDULER = "SCHEDULER"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    RUN_JSON = "RUN_JSON"
    RESIDUAL = "RESIDUAL"
    DOMINANT = "DOMINANT"

    def shortHelpString(self):  # noqa: N802
        from ..core.methods.registry import METHODS, all_params

        methods = "".join(f"<li><b>{m.label}</b>: {m.description}</li>" for m in METHODS)
        params = "".join(f"<li><b>{processing_name(n)}</b> ({', '.join(ids)}): {spec.help}</li>"
                         for n, (spec, ids) in all_params().items())
        return ("Unmixes a hyperspectral raster into one georeferenced abundance map per endmember of a "
                "spectral library (CSV with a wavelength_nm column, or ENVI .sli), plus a per-pixel "
                "residual RMSE map, a dominant-material map and run.json describing the run.<br>"
                "ENDMEMBERS: names separated by ';' or new lines (empty: all spectra, or an automatic "
                "selection for large libraries). MASK: a raster on the image grid or a polygon file; "
                "WORKERS / SCHEDULER: solve the tiles in local processes or on a Dask cluster (same result); "
                "MAX_ENDMEMBERS: at most this many endmembers when they are chosen automatically; "
                "TILE_OVERLAP: overlap of neighbouring tiles (pixels); MASK_WATER_BANDS: drop the "
                "water-vapour bands; "
                "EXTENT: process only this part of the raster. DOMINANT: the dominant-material map (the run "
                "folder always holds it; a file named here gets a copy); its 'Open output file after running' "
                "(and a batch's 'Load layers on completion') decides whether the run's layers are added to the "
                "project.<br>"
                f"Methods:<ul>{methods}</ul>Method parameters (empty = the method's default):<ul>{params}</ul>"
                "The output folder must be new or empty.")

    def initAlgorithm(self, config=None):  # noqa: N802
        from ..core.methods.registry import (
            ENGINE_OPTIONS,
            METHODS,
            RUN_OPTIONS,
            all_params,
            default_method,
        )

        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterFile(
            self.LIBRARY, "Endmember library (CSV or ENVI .sli)", QgsProcessingParameterFile.Behavior.File,
            fileFilter="Spectral libraries (*.csv *.sli *.hdr *.txt);;All files (*.*)"))
        self.addParameter(QgsProcessingParameterString(
            self.ENDMEMBERS, "Endmembers to use (names separated by ';' or new lines; empty = all/automatic)",
            multiLine=True, optional=True))
        labels = [m.label if m.available()[0] else f"{m.label} (unavailable here)" for m in METHODS]
        self.addParameter(QgsProcessingParameterEnum(
            self.METHOD, "Method", options=labels, defaultValue=[m.id for m in METHODS].index(default_method())))
        method_params = all_params()
        quality, ids = method_params.pop("quality")
        self.addParameter(self.parameter_for(quality, "QUALITY", f"{quality.label} ({', '.join(ids)})"))
        advanced = [self.parameter_for(spec, processing_name(n), f"{spec.label} ({', '.join(ids)}; empty = "
                                       f"{spec.default})", optional=True)
                    for n, (spec, ids) in method_params.items()]
        advanced += [self.parameter_for(spec, processing_name(spec.name)) for spec in ENGINE_OPTIONS]
        advanced += [self.parameter_for(spec, processing_name(spec.name), f"{spec.label} (empty = automatic)",
                                        optional=True) for spec in RUN_OPTIONS]
        advanced.append(QgsProcessingParameterBoolean(self.MASK_WATER_BANDS, "Drop the water-vapour bands",
                                                      defaultValue=True))
        advanced += [QgsProcessingParameterFile(self.MASK, "Mask (raster on the image grid, or polygons)",
                                                QgsProcessingParameterFile.Behavior.File, optional=True),
                     QgsProcessingParameterExtent(self.EXTENT, "Process only this extent", optional=True),
                     QgsProcessingParameterBoolean(self.QUALITY_MASK, "Sensor products (EnMAP, EMIT): leave the "
                                                   "pixels their quality flags mark (clouds, …) as nodata",
                                                   defaultValue=True),
                     QgsProcessingParameterNumber(self.WORKERS, "Local worker processes (0 = solve in this one)",
                                                  QgsProcessingParameterNumber.Type.Integer, 0, minValue=0),
                     QgsProcessingParameterString(self.SCHEDULER, "Dask scheduler address (tcp://host:8786)",
                                                  optional=True)]
        self.add_advanced(*advanced)
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Output folder (new or empty)"))
        self.addOutput(QgsProcessingOutputFile(self.RUN_JSON, "Run manifest (run.json)"))
        self.addOutput(QgsProcessingOutputRasterLayer(self.RESIDUAL, "Residual RMSE"))
        # a layer destination, not only an output: its value carries whether the caller wants
        # the layers loaded (the dialog's "Open output file after running", a batch's "Load
        # layers on completion"), which a folder destination does not
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.DOMINANT, "Dominant material (the run's layers are added when this is opened)", optional=True))

    def options_from(self, parameters, context, layer, feedback):
        """The :class:`UnmixOptions` the parameters ask for (see :meth:`run_from`)."""
        return self.run_from(parameters, context, layer, feedback).options

    def run_from(self, parameters, context, layer, feedback):
        """The :class:`core.engine.options.RunRequest` the parameters ask for (the one options
        builder: the command line's rules and messages, in Processing's names)."""
        from ..core.engine.options import build_run
        from ..core.methods.registry import ENGINE_OPTIONS, METHODS, RUN_OPTIONS, all_params

        spec = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)]
        values = {name: self.value_of(pspec, processing_name(name), parameters, context)
                  for name, (pspec, ids) in all_params().items()
                  if not (name == "quality" and spec.id not in ids)}  # QUALITY always has a value
        values.update({o.name: self.value_of(o, processing_name(o.name), parameters, context)
                       for o in ENGINE_OPTIONS + RUN_OPTIONS})
        values.update(
            method=spec.id, endmembers=split_names(self.parameterAsString(parameters, self.ENDMEMBERS, context)) or None,
            mask_path=self.parameterAsFile(parameters, self.MASK, context) or None,
            window=self.window_from(parameters, context, layer),
            quality_mask=self.parameterAsBool(parameters, self.QUALITY_MASK, context)
            if parameters.get(self.QUALITY_MASK) is not None else True,
            mask_water_bands=self.parameterAsBool(parameters, self.MASK_WATER_BANDS, context)
            if parameters.get(self.MASK_WATER_BANDS) is not None else True,
            workers=self.parameterAsInt(parameters, self.WORKERS, context) or None,  # 0: solve in this process
            scheduler=self.parameterAsString(parameters, self.SCHEDULER, context) or None)
        return build_run(values, processing_name)

    def window_from(self, parameters, context, layer):
        """The pixel window of the EXTENT parameter on the grid the run reads, or None."""
        if not parameters.get(self.EXTENT):
            return None
        from qgis.core import QgsCoordinateReferenceSystem

        from ..core.io.image import open_image

        try:  # the grid the run reads: a sensor product's derived grid is not its QGIS layer's
            info = open_image(layer.source())
        except UrdmError as err:
            raise self.fail(str(err)) from None
        crs = QgsCoordinateReferenceSystem.fromWkt(info.crs_wkt) if info.crs_wkt else layer.crs()
        extent = self.parameterAsExtent(parameters, self.EXTENT, context, crs if crs.isValid() else layer.crs())
        if extent.isNull():
            return None
        window = extent_to_window(extent, info.geotransform, info.width, info.height)
        if window is None:
            raise self.fail("EXTENT does not overlap the input raster. Choose an extent inside the layer, or leave it empty.")
        return window

    def processAlgorithm(self, parameters, context: QgsProcessingContext, feedback):  # noqa: N802
        from ..core.engine.pipeline import unmix_raster
        from ..qgis_layers.dominant import prepare_run
        from ..qgis_layers.groups import run_group_name, unique_group_name
        from ..qgis_layers.runs import run_layers
        from ..qgis_layers.tags import ROLE_ABUNDANCE
        from . import postprocess

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise self.fail("The input raster could not be loaded. Choose a raster layer or file.")
        if layer.providerType() != "gdal":
            raise self.fail(
                f"Layer '{layer.name()}' is not a file GDAL reads (provider '{layer.providerType()}'). "
                "Save it as a GeoTIFF and use that.")
        library = self.parameterAsFile(parameters, self.LIBRARY, context)
        try:
            run = self.run_from(parameters, context, layer, feedback)
        except UrdmError as err:
            raise self.fail(err) from None
        options = run.options
        method = options.method
        out_dir = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        if not out_dir:
            raise self.fail("Give an output folder.")
        dominant_copy = dominant_destination(parameters.get(self.DOMINANT))
        if dominant_copy:  # never onto an input nor a file this tool did not make, refused before the work
            from ..core.io.output_policy import check_output_file

            try:
                check_output_file(dominant_copy, (layer.source(), library, options.mask_path), overwrite=True,
                                  what="dominant-material map")
            except UrdmError as err:
                raise self.fail(err) from None

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
            with run.executor() as executor:
                result = unmix_raster(layer.source(), library, out_dir, options, progress=progress,
                                      cancel=feedback.isCanceled, executor=executor)
            run_json = os.path.join(result.out_dir, "run.json")
            manifest = prepare_run(run_json, cancel=feedback.isCanceled)
        except Cancelled:
            raise self.fail("Unmixing cancelled; no output was written.") from None
        except UrdmError as err:
            raise self.fail(err) from None
        for w in manifest.get("warnings", []) or []:
            feedback.pushWarning(str(w))

        project = load_target(parameters.get(self.DOMINANT), context)
        group = run_group_name(layer.name(), manifest)
        if project is not None:
            group = unique_group_name(project.layerTreeRoot(), group)
        outputs = {self.OUTPUT_FOLDER: result.out_dir, self.RUN_JSON: run_json}
        for rank, (path, name, role, em) in enumerate(run_layers(run_json, manifest)):
            if role == "residual":
                outputs[self.RESIDUAL] = path
            elif role == "dominant":
                outputs[self.DOMINANT] = copy_dominant(path, dominant_copy)
            if role == ROLE_ABUNDANCE:
                outputs[f"ABUNDANCE_{em}"] = path
            if project is None:
                continue  # the caller asked for no layers (batch: "Load layers on completion" off)
            details = QgsProcessingContext.LayerDetails(name, project, name, QgsProcessingUtils.LayerHint.Raster)
            details.forceName = True
            details.setPostProcessor(postprocess.create(path, run_json, role, em, group, name, rank))
            context.addLayerToLoadOnCompletion(path, details)
        outputs["ENDMEMBER_NAMES"] = ";".join(e["name"] for e in manifest.get("endmembers", []))
        return outputs


def load_target(value, context):
    """The project the run's layers go to, None for none: a layer destination's
    ``destinationProject`` (None when the caller unticked loading: the batch dialog's "Load
    layers on completion", the algorithm dialog's "Open output file after running"); for a
    plain value (scripts, qgis_process, models) the context's project, as Processing does."""
    from qgis.core import QgsProcessingOutputLayerDefinition

    if isinstance(value, QgsProcessingOutputLayerDefinition):
        return value.destinationProject
    return context.project()


def dominant_destination(value) -> str:
    """The file the DOMINANT destination names, or "" for none (empty, a temporary output or
    a memory layer: the run folder's dominant.tif is the result then)."""
    from qgis.core import QgsProcessingOutputLayerDefinition, QgsProperty

    if isinstance(value, QgsProcessingOutputLayerDefinition):
        sink = value.sink
        value = sink.staticValue() if isinstance(sink, QgsProperty) else sink
    dest = str(value or "").strip()
    return "" if not dest or dest == "TEMPORARY_OUTPUT" or dest.startswith("memory:") else dest


def copy_dominant(path: str, dest: str) -> str:
    """``path`` (the run's dominant map), or a copy of it at ``dest`` (already cleared by the
    output rule before the run); returns the file the result names."""
    if not dest:
        return path
    from osgeo import gdal

    from ..core.io.gdal_quiet import QuietGdal

    quiet = QuietGdal()
    with quiet:
        ds = gdal.Translate(dest, path)  # keeps the URDM_OUTPUT mark: a later run may replace it
        ok = ds is not None
        ds = None
    if not ok:
        raise UrdmAlgorithm.fail(f"Cannot write the dominant-material map to '{dest}' "
                                 f"({quiet.last or 'GDAL failed'}). Choose another file name.")
    return dest
