"""The "URDM" Processing provider (id ``urdm``)."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..paths import icon_path, plugin_version


class UrdmProvider(QgsProcessingProvider):
    def id(self) -> str:  # noqa: A003
        return "urdm"

    def name(self) -> str:
        return "URDM"

    def longName(self) -> str:  # noqa: N802
        return f"URDM hyperspectral unmixing {plugin_version()}"

    def icon(self):
        return QIcon(str(icon_path()))

    def versionInfo(self) -> str:  # noqa: N802
        return plugin_version()

    def loadAlgorithms(self):  # noqa: N802
        _no_side_files_in_qgis_process()
        from .algorithms import all_algorithms

        for alg in all_algorithms():
            self.addAlgorithm(alg)


def _no_side_files_in_qgis_process() -> None:
    """``qgis_process run urdm:…`` only: GDAL's PAM off for the process, so loading the input
    layer (QGIS computes a histogram for its renderer, and opens the dataset lazily, at a moment
    no algorithm code surrounds) writes no ``<input>.aux.xml`` beside the user's file. The run's
    own side files (dominant.tif's attribute table) switch PAM on for their thread
    (``core.io.gdal_quiet.pam_enabled``). Another provider's algorithm is left as it is."""
    from osgeo import gdal
    from qgis.core import QgsApplication

    if QgsApplication.platform() != "qgis_process":
        return
    if any(str(a).startswith("urdm:") for a in QgsApplication.arguments()):
        gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")
