"""The processing extent: whole layer, current map view (a pixel window) or inside polygons (a mask file)."""

from __future__ import annotations

import os
import tempfile
from typing import Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsWkbTypes,
)

from ..core.errors import InputImageError
from ..core.window import Window
from ..qgis_layers.extent import extent_to_window

EXTENT_WHOLE, EXTENT_VIEW, EXTENT_MASK = "whole", "view", "mask"


def center_crop(window: Window, size: int) -> Window:
    """The central ``size``×``size`` part (at most) of a :class:`Window`."""
    nh, nw = min(window.height, size), min(window.width, size)
    return Window(window.row0 + (window.height - nh) // 2, window.col0 + (window.width - nw) // 2, nh, nw)




class DialogExtent:
    """Mixed into :class:`gui.dialog.UnmixDialog`; works on its widgets."""

    def extent_mode(self) -> str:
        if self.extent_view.isChecked():
            return EXTENT_VIEW
        if self.extent_mask.isChecked():
            return EXTENT_MASK
        return EXTENT_WHOLE

    def set_extent_mode(self, mode: str) -> None:
        {EXTENT_VIEW: self.extent_view, EXTENT_MASK: self.extent_mask}.get(mode, self.extent_whole).setChecked(True)

    def _image_crs(self, layer) -> QgsCoordinateReferenceSystem:
        """The CRS of the grid the run reads: the image's own (a sensor product's derived grid,
        which the QGIS layer of, e.g., an EMIT swath does not share), else the layer's."""
        wkt = getattr(self.info, "crs_wkt", "") if self.info is not None else ""
        crs = QgsCoordinateReferenceSystem.fromWkt(wkt) if wkt else QgsCoordinateReferenceSystem()
        return crs if crs.isValid() else layer.crs()

    def _view_window(self) -> Optional[tuple]:
        """Pixel window of the current map view over the layer (None: no overlap / no canvas)."""
        layer = self.current_layer()
        if layer is None or self.info is None or self.iface is None:
            return None
        try:
            canvas = self.iface.mapCanvas()
            rect = canvas.extent()
            dest = canvas.mapSettings().destinationCrs()
        except Exception:  # noqa: BLE001 - no canvas
            return None
        if not isinstance(rect, QgsRectangle):
            return None
        crs = self._image_crs(layer)
        if dest.isValid() and crs.isValid() and dest != crs:
            ct = QgsCoordinateTransform(dest, crs, QgsProject.instance())
            try:
                rect = ct.transformBoundingBox(rect)
            except Exception:  # noqa: BLE001 - QgsCsException
                return None
        return extent_to_window(rect, self.info.geotransform, self.info.width, self.info.height)

    def _export_mask(self, layer: QgsRasterLayer) -> str:
        """The chosen polygons in the raster's CRS as a temporary GeoPackage; returns its path."""
        vl = self.mask_combo.currentLayer()
        if vl is None or QgsWkbTypes.geometryType(vl.wkbType()) != QgsWkbTypes.GeometryType.PolygonGeometry:
            raise InputImageError("The mask layer is not a polygon layer", "Choose a polygon layer")
        folder = tempfile.mkdtemp(prefix="urdm_mask_")
        path = os.path.join(folder, "mask.gpkg")
        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName = "GPKG"
        opts.onlySelectedFeatures = self.mask_selected.isChecked()
        crs = self._image_crs(layer)
        if vl.crs().isValid() and crs.isValid() and vl.crs() != crs:
            opts.ct = QgsCoordinateTransform(vl.crs(), crs, QgsProject.instance())
        res = QgsVectorFileWriter.writeAsVectorFormatV3(vl, path, QgsProject.instance().transformContext(), opts)
        if res[0] != QgsVectorFileWriter.WriterError.NoError:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise InputImageError(f"Cannot write the mask polygons of '{vl.name()}' ({res[1]})",
                                  "Check the layer, or choose another processing extent")
        return folder
