"""Processing algorithm "Extract endmembers (VCA)" (``urdm:vca``)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .base import UrdmAlgorithm


class VcaAlgorithm(UrdmAlgorithm):
    ID = "vca"
    LABEL = "Extract endmembers (VCA)"
    INPUT = "INPUT"
    N = "N"
    SEED = "SEED"
    MAX_PIXELS = "MAX_PIXELS"
    MASK_WATER = "MASK_WATER"
    OUTPUT = "OUTPUT"

    def shortHelpString(self):  # noqa: N802
        return ("Extracts N endmember spectra from the image's pixels with vertex component analysis and "
                "writes them as a CSV library (wavelength_nm,endmember_1,…) that 'Unmix hyperspectral raster' "
                "reads. Rename the columns to name the materials.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterNumber(self.N, "Number of endmembers",
                                                       QgsProcessingParameterNumber.Integer, 4, minValue=1,
                                                       maxValue=100))
        adv = [
            QgsProcessingParameterNumber(self.SEED, "Random seed", QgsProcessingParameterNumber.Integer, 0,
                                         minValue=0),
            QgsProcessingParameterNumber(self.MAX_PIXELS, "Pixels sampled at most",
                                         QgsProcessingParameterNumber.Integer, 200000, minValue=100),
            QgsProcessingParameterBoolean(self.MASK_WATER, "Drop water-vapour bands", True),
        ]
        self.add_advanced(*adv)
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Endmember library",
                                                                "CSV files (*.csv)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.engine.extraction import extract_endmembers
        from ..core.errors import UrdmError
        from ..core.io.library import write_library_csv

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None or layer.providerType() != "gdal":
            raise QgsProcessingException("Choose a raster layer backed by a file GDAL reads.")
        n = self.parameterAsInt(parameters, self.N, context)
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        feedback.pushInfo(f"Extracting {n} endmembers from {layer.source()} with VCA…")
        try:
            lib = extract_endmembers(layer.source(), n, seed=self.parameterAsInt(parameters, self.SEED, context),
                                     max_pixels=self.parameterAsInt(parameters, self.MAX_PIXELS, context),
                                     mask_water_bands=self.parameterAsBool(parameters, self.MASK_WATER, context))
            if feedback.isCanceled():
                raise QgsProcessingException("Cancelled; no library was written.")
            write_library_csv(out, lib)
        except UrdmError as err:
            raise self.fail(err) from None
        feedback.setProgress(100)
        feedback.pushInfo(f"Wrote {len(lib)} endmembers on {lib.spectra.shape[0]} bands to {out}")
        return {self.OUTPUT: out}
