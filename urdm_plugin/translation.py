"""The plugin's translations: ``i18n/urdm_plugin_<locale>.qm`` loaded for QGIS's locale.

``make translations`` writes the template ``i18n/urdm_plugin.ts`` (pylupdate5 over the
plugin's sources); a translator fills it in with Qt Linguist and ``lrelease`` makes the
``.qm`` shipped beside it. None ships yet; without one every string stays English.
Strings reach the translator through :func:`tr` (context :data:`CONTEXT`) or Qt's own
``tr()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.PyQt.QtCore import QCoreApplication, QTranslator

I18N_DIR = Path(__file__).resolve().parent / "i18n"
CONTEXT = "@default"  # the context pylupdate5 gives a plain tr("…") call


def tr(text: str) -> str:
    """``text`` in the user's language when a translation holds it, else as given."""
    return QCoreApplication.translate(CONTEXT, text)


def user_locale() -> str:
    """QGIS's interface language (``de``, ``pt_BR`` …; its settings' override included)."""
    from qgis.core import QgsApplication

    return QgsApplication.locale() or "en"


def qm_file(locale: str, folder: Optional[Path] = None) -> Optional[Path]:
    """The ``.qm`` for ``locale`` in ``folder`` (default :data:`I18N_DIR`):
    ``urdm_plugin_pt_BR.qm``, else ``urdm_plugin_pt.qm``; None when neither exists."""
    for name in dict.fromkeys((locale, locale.split("_")[0])):
        path = Path(folder or I18N_DIR) / f"urdm_plugin_{name}.qm"
        if path.is_file():
            return path
    return None


def install_translator(locale: Optional[str] = None, folder: Optional[Path] = None) -> Optional[QTranslator]:
    """Install the translation for ``locale`` (default: QGIS's) into the application and
    return the translator (keep it: Qt holds no reference), or None when there is none."""
    path = qm_file(locale or user_locale(), folder)
    if path is None:
        return None
    translator = QTranslator()
    if not translator.load(str(path)):
        return None
    QCoreApplication.installTranslator(translator)
    return translator


def remove_translator(translator: Optional[QTranslator]) -> None:
    if translator is not None:
        QCoreApplication.removeTranslator(translator)
