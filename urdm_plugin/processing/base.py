"""The small base every URDM Processing algorithm stands on (in the spirit of EnMAP-Box's).

A subclass sets ``ID``, ``LABEL``, ``GROUP`` (a key of :data:`GROUPS`) and ``HELP`` and
writes ``initAlgorithm``/``processAlgorithm``; name, group, help and ``createInstance``
come from here, and so do the helpers every algorithm needs: Processing parameters built
from a registry :class:`ParamSpec`, advanced parameters, and a user error turned into one
``QgsProcessingException`` line.
"""

from __future__ import annotations

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
)

from ..core.errors import UrdmError, for_front_end

#: Toolbox groups: id -> display name.
GROUPS = {"unmixing": "Unmixing", "mapproducts": "Map products"}
#: The core's option spellings in messages -> the Processing parameters that set them (the
#: unmix algorithm has no water-band switch: that advice keeps the Python API's spelling).
PROCESSING_SWITCHES = {"quality_mask=False": "QUALITY_MASK=false"}
#: The section of the user guide (docs/USAGE.md) that documents the algorithms.
HELP_SECTION = "processing-toolbox-graphical-modeler-batch"


class UrdmAlgorithm(QgsProcessingAlgorithm):
    ID = ""
    LABEL = ""
    GROUP = "unmixing"
    HELP = ""

    def name(self) -> str:
        return self.ID

    def displayName(self) -> str:  # noqa: N802
        return self.LABEL

    def group(self) -> str:
        return GROUPS[self.GROUP]

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP

    def shortHelpString(self) -> str:  # noqa: N802
        return self.HELP

    def helpUrl(self) -> str:  # noqa: N802
        """The user guide shipped inside the plugin (USAGE.md, the copy of the installed
        version, readable offline) at the toolbox section, not the repository's web page,
        which may describe another version and needs a network."""
        from ..paths import usage_url

        return usage_url(HELP_SECTION)

    def createInstance(self):  # noqa: N802
        return type(self)()

    # ------------------------------------------------------------------ helpers
    def add_advanced(self, *params) -> None:
        for p in params:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(p)

    @staticmethod
    def parameter_for(spec, name: str, label: str = "", optional: bool = False):
        """A Processing parameter for a registry :class:`ParamSpec`: an enum of its choices
        (default = the spec's), or a number with its range. ``optional`` parameters have no
        default: left empty, the method's own default (or "auto") applies."""
        label = label or spec.label or spec.name
        if spec.kind == "choice":
            p = QgsProcessingParameterEnum(name, label, options=list(spec.choices),
                                           defaultValue=list(spec.choices).index(spec.default),
                                           optional=optional)
        else:
            kind = QgsProcessingParameterNumber.Type.Double if spec.kind == "float" else QgsProcessingParameterNumber.Type.Integer
            default = None if optional or spec.default == "auto" else spec.default
            kw = {}
            if spec.minimum is not None:
                kw["minValue"] = spec.minimum
            if spec.maximum is not None and spec.maximum < 2**31:
                kw["maxValue"] = spec.maximum
            p = QgsProcessingParameterNumber(name, label, kind, default, optional=optional or default is None, **kw)
        p.setHelp(spec.help)
        return p

    def value_of(self, spec, name: str, parameters, context):
        """The value of a parameter made by :meth:`parameter_for` (None when left empty)."""
        raw = parameters.get(name)
        if raw is None or raw == "":
            return None
        if spec.kind == "choice":
            return spec.choices[self.parameterAsEnum(parameters, name, context)]
        if isinstance(raw, str):  # qgis_process passes text: 'abc' or '0,3' must not become 0
            try:
                float(raw)
            except ValueError:
                return raw.strip()  # the registry refuses it (or takes 'auto'), as on the command line
        if spec.kind == "float":
            return self.parameterAsDouble(parameters, name, context)
        return self.parameterAsInt(parameters, name, context)

    @staticmethod
    def fail(err) -> QgsProcessingException:
        """A user error (:class:`UrdmError` or its text) as the one-line exception Processing
        shows, its option spellings as Processing's parameters. ``qgis_process`` would print it
        three times (QGIS logs a failed algorithm's exception twice to its message log, which it
        echoes on stderr, and reports it once as ``ERROR:``): there the message log is silenced,
        as the process ends with this error."""
        from qgis.core import QgsApplication

        if isinstance(err, UrdmError):
            err = for_front_end(err, PROCESSING_SWITCHES)
        if QgsApplication.platform() == "qgis_process":
            QgsApplication.messageLog().blockSignals(True)
        return QgsProcessingException(str(err))
