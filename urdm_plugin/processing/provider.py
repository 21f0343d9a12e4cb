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
        from .algorithms import all_algorithms

        for alg in all_algorithms():
            self.addAlgorithm(alg)
