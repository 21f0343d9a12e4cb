"""Processing algorithm "Extract endmembers (VCA)" (``urdm:vca``)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..core.errors import UrdmError
from .base import UrdmAlgorithm


class VcaAlgorithm(UrdmAlgorithm):
    ID = "vca"
    LABEL = "Extract endmembers (VCA)"
    INPUT = "INPUT"
    N = "N"
    SEED = "SEED"
    MAX_PIXELS = "MAX_PIXELS"
    MASK_WATER = "MASK_WATER"
    REFERENCE = "REFERENCE"
    MAX_ANGLE = "MAX_ANGLE"
    OUTPUT = "OUTPUT"

    def shortHelpString(self):  # noqa: N802
        return ("Extracts N endmember spectra from the image's pixels with vertex component analysis and "
                "writes them as a CSV library (wavelength_nm,endmember_1,…) that 'Unmix hyperspectral raster' "
                "reads. Rename the columns to name the materials.\n\n"
                "Number of endmembers 0 = automatic: HySime estimates how many materials the scene holds "
                "from its signal subspace and noise level (both shown in the log).\n\n"
                "Reference library (optional, CSV or ENVI .sli, e.g. the USGS library): each endmember is "
                "named after its closest reference spectrum (spectral angle below the maximum angle and a "
                "matching absorption-feature fit), else unidentified_k; the log lists the best match and "
                "the next candidates with their angles.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterNumber(self.N, "Number of endmembers (0 = automatic, HySime)",
                                                       QgsProcessingParameterNumber.Type.Integer, 4, minValue=0,
                                                       maxValue=100))
        self.addParameter(QgsProcessingParameterFile(self.REFERENCE, "Reference library to name the endmembers",
                                                     QgsProcessingParameterFile.Behavior.File, optional=True,
                                                     fileFilter="Spectral libraries (*.csv *.sli *.hdr);;All files (*)"))
        from ..core.methods.registry import SEED, VCA_MAX_ANGLE, VCA_MAX_PIXELS

        adv = [
            self.parameter_for(SEED, self.SEED, "Random seed"),
            self.parameter_for(VCA_MAX_PIXELS, self.MAX_PIXELS, "Pixels sampled at most"),
            QgsProcessingParameterBoolean(self.MASK_WATER, "Drop water-vapour bands", True),
            self.parameter_for(VCA_MAX_ANGLE, self.MAX_ANGLE, "Largest spectral angle of an identification (radians)"),
        ]
        self.add_advanced(*adv)
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Endmember library",
                                                                "CSV files (*.csv)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.engine.extraction import extract_endmembers
        from ..core.engine.options import build_vca
        from ..core.io.library import read_library, write_library_csv
        from ..core.methods.registry import VCA_OPTIONS

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None or layer.providerType() != "gdal":
            raise self.fail("Choose a raster layer backed by a file GDAL reads.")
        n = self.parameterAsInt(parameters, self.N, context)
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        ref_path = self.parameterAsFile(parameters, self.REFERENCE, context)
        feedback.pushInfo(f"Extracting {n if n > 0 else 'an automatic number of'} endmembers from "
                          f"{layer.source()} with VCA…")
        try:
            from ..core.io.output_policy import check_output_file

            # Processing replaces a chosen file, but only one this tool wrote, never an input
            check_output_file(out, (layer.source(), ref_path), overwrite=True, what="output library")
            values = {o.name: self.value_of(o, o.name.upper(), parameters, context) for o in VCA_OPTIONS}
            vca = build_vca(dict(values, n=n if n > 0 else "auto",  # 0: the widget's automatic
                                 mask_water_bands=self.parameterAsBool(parameters, self.MASK_WATER, context)))
            reference = read_library(ref_path) if ref_path else None
            lib = extract_endmembers(layer.source(), vca.n, reference=reference, **vca.as_kwargs())
            for line in lib.report.splitlines():
                feedback.pushInfo(line)
            if feedback.isCanceled():
                raise self.fail("Cancelled; no library was written.")
            write_library_csv(out, lib)
        except UrdmError as err:
            raise self.fail(err) from None
        feedback.setProgress(100)
        feedback.pushInfo(f"Wrote {len(lib)} endmembers on {lib.spectra.shape[0]} bands to {out}")
        return {self.OUTPUT: out}
