"""Where the plugin's own files are, in the repository and in an installed plugin."""

from __future__ import annotations

import configparser
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
REPO_DIR = PLUGIN_DIR.parent


def _first_existing(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def metadata_path() -> Path:
    """metadata.txt: inside the installed plugin, or at the repository top level."""
    return _first_existing(PLUGIN_DIR / "metadata.txt", REPO_DIR / "metadata.txt")


def icon_path() -> Path:
    return _first_existing(PLUGIN_DIR / "icon.svg", REPO_DIR / "resources" / "icon.svg")


def usage_path() -> Path:
    """The user guide: USAGE.md in the installed plugin, docs/USAGE.md in the repository."""
    return _first_existing(PLUGIN_DIR / "USAGE.md", REPO_DIR / "docs" / "USAGE.md")


def usage_url(section: str = "") -> str:
    """A ``file://`` URL of the user guide (:func:`usage_path`), at ``section`` (the anchor of
    one of its headings, GitHub's spelling) when given."""
    url = usage_path().resolve().as_uri()
    return f"{url}#{section}" if section else url


def plugin_version() -> str:
    """The version in metadata.txt, or "unknown" if it cannot be read."""
    cp = configparser.ConfigParser(interpolation=None)
    try:
        cp.read(metadata_path(), encoding="utf-8")
        return cp.get("general", "version", fallback="unknown")
    except (OSError, configparser.Error):
        return "unknown"
