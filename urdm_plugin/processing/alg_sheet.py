"""Processing algorithm ``urdm:mapsheet`` — "Create abundance map sheet".

Builds the map sheet of a finished run (see :mod:`urdm_plugin.qgis_layers.map_sheet`) and exports
it to PDF and PNG. Runs in the main thread (``FlagNoThreading``): layouts and layers are
not thread-safe.
"""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProject,
)

from ..core.errors import UrdmError
from .base import UrdmAlgorithm


class MapSheetAlgorithm(UrdmAlgorithm):
    ID = "mapsheet"
    LABEL = "Create abundance map sheet"
    GROUP = "mapproducts"
    INPUT = "INPUT"
    BACKGROUND = "BACKGROUND"
    PAPER = "PAPER"
    DPI = "DPI"
    TITLE = "TITLE"
    OUTPUT_PDF = "OUTPUT_PDF"
    OUTPUT_PNG = "OUTPUT_PNG"

    def shortHelpString(self) -> str:  # noqa: N802
        return (
            "Lays out a finished unmixing run on one landscape page: one map per endmember "
            "(only its abundance, over an optional background layer), the residual map, a shared "
            "0–1 colour-ramp legend, a scale bar, a north arrow, the CRS and a footnote with the "
            "method, parameters and software version read from run.json. Exports PDF and PNG.\n\n"
            "Run: the run's output folder or its run.json."
        )

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.Flag.FlagNoThreading

    def initAlgorithm(self, config=None):  # noqa: N802
        from ..qgis_layers.map_sheet import PAPER_NAMES

        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, "Run (output folder or run.json)", behavior=QgsProcessingParameterFile.Behavior.File,
            fileFilter="URDM run (run.json);;All files (*)"))
        self.addParameter(QgsProcessingParameterMapLayer(
            self.BACKGROUND, "Background layer", optional=True,
            types=[QgsProcessing.SourceType.TypeRaster, QgsProcessing.SourceType.TypeVectorAnyGeometry]))
        self.addParameter(QgsProcessingParameterEnum(
            self.PAPER, "Paper size (landscape)", options=PAPER_NAMES, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.DPI, "Resolution (DPI)", type=QgsProcessingParameterNumber.Type.Integer, defaultValue=150,
            minValue=50, maxValue=600))
        self.addParameter(QgsProcessingParameterString(
            self.TITLE, "Title (empty: input, method and date)", optional=True, defaultValue=""))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_PDF, "Map sheet (PDF)", fileFilter="PDF files (*.pdf)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_PNG, "Map sheet (PNG)", fileFilter="PNG files (*.png)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..qgis_layers.map_sheet import PAPER_NAMES, build_map_sheet, export_map_sheet

        run = self.parameterAsFile(parameters, self.INPUT, context)
        background = self.parameterAsLayer(parameters, self.BACKGROUND, context)
        paper = PAPER_NAMES[self.parameterAsEnum(parameters, self.PAPER, context)]
        dpi = self.parameterAsInt(parameters, self.DPI, context)
        title = self.parameterAsString(parameters, self.TITLE, context).strip() or None
        pdf = self.parameterAsFileOutput(parameters, self.OUTPUT_PDF, context)
        png = self.parameterAsFileOutput(parameters, self.OUTPUT_PNG, context)
        project = context.project() or QgsProject.instance()
        try:
            _check_outputs(run, background, pdf, png)
            layout = build_map_sheet(run, project, background_layer=background, title=title, paper=paper)
            feedback.setProgress(30)
            feedback.pushInfo(f"Map sheet: {len(layout.items())} items on {paper} landscape")
            done = export_map_sheet(layout, pdf_path=pdf, png_path=png, dpi=dpi)
        except UrdmError as err:
            raise self.fail(err) from None
        finally:
            layout = None
        feedback.setProgress(100)
        return {self.OUTPUT_PDF: done.get("pdf", pdf), self.OUTPUT_PNG: done.get("png", png)}


def _check_outputs(run: str, background, pdf: str, png: str) -> None:
    """Before any work: neither file may be the run's own files (run.json, its rasters), the
    background layer's file or a file this tool did not write (core.io.output_policy)."""
    from ..core.io.output_policy import check_output_file
    from ..qgis_layers.runs import resolve_run_json

    run_json = resolve_run_json(run)
    folder = os.path.dirname(run_json)
    protected = [os.path.join(folder, n) for n in os.listdir(folder)]
    if background is not None:
        protected.append(background.source().split("|")[0])
    for path, what in ((pdf, "map sheet PDF"), (png, "map sheet PNG")):
        if path:
            check_output_file(path, protected, overwrite=True, what=what)
            if pdf and png and os.path.abspath(pdf) == os.path.abspath(png):
                raise UrdmError("The PDF and the PNG are the same file", "Give two different file names")
