"""Translation-ready: `make translations` writes a template of the plugin's strings, and the
plugin shows a translation for QGIS's locale when its .qm exists (none ships yet)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = "URDM Unmixing…"  # the plugin's action, passed through tr() in plugin.py


def _template(out: Path) -> Path:
    r = subprocess.run(["bash", str(ROOT / "scripts" / "make_translations.sh"), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def test_the_template_lists_the_plugins_strings(tmp_path):
    ts = _template(tmp_path / "urdm_plugin.ts").read_text(encoding="utf-8")
    assert ts.startswith("<?xml") and "<TS " in ts
    assert f"<source>{TEXT}</source>" in ts
    assert "<source>Unmix a hyperspectral raster into abundance maps (URDM)</source>" in ts


def test_a_qm_for_the_locale_is_loaded_and_removed(qgis_app, tmp_path):
    from urdm_plugin.translation import install_translator, qm_file, remove_translator, tr

    assert qm_file("de_DE", tmp_path) is None and install_translator("de_DE", tmp_path) is None
    lrelease = shutil.which("lrelease")
    assert lrelease, "lrelease (Debian's qttools5-dev-tools) is needed; make setup installs it"
    ts = _template(tmp_path / "urdm_plugin_de.ts")
    text = ts.read_text(encoding="utf-8")
    text = re.sub(rf"(<source>{TEXT}</source>\s*)<translation type=\"unfinished\"></translation>",
                  r"\1<translation>URDM-Entmischung…</translation>", text)
    ts.write_text(text, encoding="utf-8")
    subprocess.run([lrelease, "-silent", str(ts)], check=True, timeout=120)
    assert qm_file("de_DE", tmp_path) == tmp_path / "urdm_plugin_de.qm"  # language fallback
    translator = install_translator("de_DE", tmp_path)
    try:
        assert translator is not None and tr(TEXT) == "URDM-Entmischung…"
    finally:
        remove_translator(translator)
    assert tr(TEXT) == TEXT


def test_the_plugin_loads_the_translation_of_qgis_locale(qgis_app, qgis_iface, tmp_path, monkeypatch):
    """initGui installs the .qm for QgsApplication.locale(); unload removes it."""
    import urdm_plugin
    from urdm_plugin import translation

    lrelease = shutil.which("lrelease")
    assert lrelease, "lrelease (Debian's qttools5-dev-tools) is needed; make setup installs it"
    ts = _template(tmp_path / "urdm_plugin_fr.ts")
    ts.write_text(re.sub(rf"(<source>{TEXT}</source>\s*)<translation type=\"unfinished\"></translation>",
                         r"\1<translation>Démélange URDM…</translation>", ts.read_text(encoding="utf-8")),
                  encoding="utf-8")
    subprocess.run([lrelease, "-silent", str(ts)], check=True, timeout=120)
    monkeypatch.setattr(translation, "I18N_DIR", tmp_path)
    monkeypatch.setattr(translation, "user_locale", lambda: "fr_FR")
    plugin = urdm_plugin.classFactory(qgis_iface)
    # the provider is another test's business (the suite may have registered "urdm" already)
    monkeypatch.setattr(plugin, "initProcessing", lambda: None)
    plugin.initGui()
    try:
        assert plugin.actions[0].text() == "Démélange URDM…"
    finally:
        plugin.unload()
    assert translation.tr(TEXT) == TEXT
