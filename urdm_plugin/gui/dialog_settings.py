"""Remembering the dialog's choices between sessions (QgsSettings, group ``urdm/``)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer, QgsSettings

from .dialog_extent import EXTENT_WHOLE

#: QgsSettings group of the dialog's choices.
SETTINGS_PREFIX = "urdm/"


def settings() -> QgsSettings:
    return QgsSettings()


class DialogSettings:
    """Mixed into :class:`gui.dialog.UnmixDialog`; works on its widgets."""

    def _restore(self) -> None:
        s = settings()
        p = SETTINGS_PREFIX
        lib = s.value(p + "library", "", type=str)
        if lib:
            self.library_widget.blockSignals(True)
            self.library_widget.setFilePath(lib)
            self.library_widget.blockSignals(False)
        if not self.set_method(s.value(p + "method", "", type=str)):
            self.set_method(self.default_method())
        self.parameters.restore(s, p)
        self.set_extent_mode(s.value(p + "extent", EXTENT_WHOLE, type=str))
        self.mask_selected.setChecked(s.value(p + "mask_selected", False, type=bool))
        out = s.value(p + "output_dir", "", type=str) or str(Path.home() / "urdm_results")
        self.output_widget.setFilePath(out)
        self.add_to_map.setChecked(s.value(p + "add_to_map", True, type=bool))
        # input: the active layer if it fits, else the last one used
        layer = None
        if self.iface is not None:
            try:
                active = self.iface.activeLayer()
            except Exception:  # noqa: BLE001 - a partial iface
                active = None
            if isinstance(active, QgsRasterLayer) and active.bandCount() >= 2:
                layer = active
        if layer is None:
            last = s.value(p + "layer_source", "", type=str)
            for ly in QgsProject.instance().mapLayers().values():
                if isinstance(ly, QgsRasterLayer) and ly.source() == last and ly.bandCount() >= 2:
                    layer = ly
                    break
        if layer is None:
            for ly in QgsProject.instance().mapLayers().values():
                if isinstance(ly, QgsRasterLayer) and ly.bandCount() >= 2:
                    layer = ly
                    break
        self.layer_combo.setLayer(layer)
        self._library_changed()
        self._method_changed()

    def save_settings(self) -> None:
        s = settings()
        p = SETTINGS_PREFIX
        s.setValue(p + "library", self.library_widget.filePath())
        s.setValue(p + "method", self.current_method())
        self.parameters.save(s, p)
        s.setValue(p + "extent", self.extent_mode())
        s.setValue(p + "mask_selected", self.mask_selected.isChecked())
        s.setValue(p + "output_dir", self.output_widget.filePath())
        s.setValue(p + "add_to_map", self.add_to_map.isChecked())
        layer = self.current_layer()
        if layer is not None:
            s.setValue(p + "layer_source", layer.source())
        if self.library is not None:
            checked = set(self.checked_names())
            s.setValue(p + "excluded", [n for n in self.library.names if n not in checked])
