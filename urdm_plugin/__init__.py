"""URDM Unmixing — a QGIS plugin for hyperspectral unmixing.

QGIS calls :func:`classFactory` (``qgis_process`` too, with ``iface=None``). Importing this
package must stay cheap: no torch, no GDAL work, no qgis import at module level (so
``python -m urdm_plugin`` and ``urdm_plugin.core`` run without QGIS).
"""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """Plugin entry point called by QGIS with its ``QgisInterface`` (None in qgis_process)."""
    from .plugin import UrdmPlugin

    return UrdmPlugin(iface)
