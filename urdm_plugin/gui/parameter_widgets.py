"""Dialog widgets generated from the registry's :class:`ParamSpec`s (no parameter is listed here).

A choice becomes a combo box, a number a spin box with the spec's range, a weight that may be
chosen from the data ("auto") a spin box with an "automatic" check box. Rows of parameters a
method does not take are disabled when that method is chosen.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QSpinBox, QWidget

_INT_MAX = 2**31 - 1
_LOG = logging.getLogger(__name__)


class AutoNumber(QWidget):
    """A number that may also be "auto": ``auto`` (QCheckBox) and ``spin`` (QDoubleSpinBox)."""

    def __init__(self, spec, parent=None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.auto = QCheckBox("automatic")
        self.auto.setChecked(True)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(4)
        self.spin.setRange(spec.minimum if spec.minimum is not None else 0.0,
                           spec.maximum if spec.maximum is not None else 1e6)
        self.spin.setValue(0.5)
        self.spin.setEnabled(False)
        self.auto.toggled.connect(lambda on: self.spin.setEnabled(not on and self.isEnabled()))
        row.addWidget(self.auto)
        row.addWidget(self.spin, 1)

    def value(self):
        return "auto" if self.auto.isChecked() else float(self.spin.value())

    def set_value(self, v) -> None:
        if v == "auto" or v is None:
            self.auto.setChecked(True)
        else:
            self.auto.setChecked(False)
            self.spin.setValue(float(v))

    def changeEvent(self, event):  # noqa: N802 - keep the spin box off while "automatic"
        super().changeEvent(event)
        self.spin.setEnabled(self.isEnabled() and not self.auto.isChecked())


def editor_for(spec) -> QWidget:
    """The editor widget of one parameter, set to its default, with its help as tooltip."""
    if spec.kind == "choice":
        w = QComboBox()
        w.addItems(list(spec.choices))
        w.setCurrentText(str(spec.default))
    elif spec.auto:
        w = AutoNumber(spec)
    elif spec.kind == "float":
        w = QDoubleSpinBox()
        w.setDecimals(4)
        w.setRange(spec.minimum if spec.minimum is not None else -1e9, spec.maximum if spec.maximum is not None else 1e9)
        w.setValue(float(spec.default))
    else:
        w = QSpinBox()
        w.setRange(int(spec.minimum) if spec.minimum is not None else 0,
                   min(int(spec.maximum), _INT_MAX) if spec.maximum is not None else _INT_MAX)
        w.setValue(int(spec.default))
    w.setToolTip(spec.help)
    return w


def value_of(w: QWidget) -> Any:
    if isinstance(w, AutoNumber):
        return w.value()
    if isinstance(w, QComboBox):
        return w.currentText()
    return w.value()


def set_value_of(w: QWidget, v) -> None:
    if isinstance(w, AutoNumber):
        w.set_value(v)
    elif isinstance(w, QComboBox):
        w.setCurrentText(str(v))
    elif isinstance(w, QSpinBox):
        w.setValue(int(v))
    else:
        w.setValue(float(v))


class ParameterWidgets:
    """Editors for every method parameter (``registry.all_params``) and engine option
    (``registry.ENGINE_OPTIONS``), keyed by parameter name."""

    def __init__(self):
        from ..core.methods.registry import ENGINE_OPTIONS, all_params

        self.method_params: dict = {name: (spec, ids) for name, (spec, ids) in all_params().items()}
        self.engine_options: dict = {spec.name: spec for spec in ENGINE_OPTIONS}
        self.editors: dict = {}
        for name, (spec, _ids) in self.method_params.items():
            self.editors[name] = editor_for(spec)
        for name, spec in self.engine_options.items():
            self.editors[name] = editor_for(spec)

    def widget(self, name: str) -> QWidget:
        return self.editors[name]

    def spec(self, name: str):
        """The registry :class:`ParamSpec` behind the editor ``name``."""
        return self.method_params[name][0] if name in self.method_params else self.engine_options[name]

    def label(self, name: str) -> str:
        spec = self.spec(name)
        return spec.label or spec.name

    def value(self, name: str) -> Any:
        return value_of(self.editors[name])

    def set_value(self, name: str, v) -> None:
        set_value_of(self.editors[name], v)

    def params_for(self, method_id: str) -> dict:
        """The method's parameters that differ from its defaults (the rest stay the registry's)."""
        out = {}
        for name, (spec, ids) in self.method_params.items():
            v = self.value(name)
            if method_id in ids and v != spec.default:
                out[name] = v
        return out

    def engine_values(self) -> dict:
        return {name: self.value(name) for name in self.engine_options}

    def enable_for(self, spec) -> None:
        """Enable the parameters of method ``spec``; device only for torch methods, tile size
        only for spatial ones."""
        for name, (_p, ids) in self.method_params.items():
            self.editors[name].setEnabled(spec.id in ids)
        self.editors["device"].setEnabled(spec.needs_torch)
        self.editors["tile_size"].setEnabled(spec.spatial)

    def save(self, settings, prefix: str) -> None:
        for name in self.editors:
            settings.setValue(f"{prefix}param/{name}", str(self.value(name)))

    def restore(self, settings, prefix: str) -> None:
        for name, w in self.editors.items():
            raw: Optional[str] = settings.value(f"{prefix}param/{name}", None, type=str)
            if not raw:
                continue
            try:
                set_value_of(w, self.spec(name).validate(raw))
            except Exception as exc:  # noqa: BLE001 - a stale or hand-edited setting keeps the default
                _LOG.info("Saved %s=%r not restored (%s); the default is kept", name, raw, exc)
