#!/usr/bin/env bash
# The translation template: urdm_plugin/i18n/urdm_plugin.ts, every string of the plugin's
# sources passed through tr()/translate() (Debian's pylupdate5, package pyqt5-dev-tools).
# A translator copies it to urdm_plugin_<locale>.ts, translates it in Qt Linguist and runs
# `lrelease urdm_plugin_<locale>.ts`; the plugin loads the .qm for QGIS's locale.
# Usage: scripts/make_translations.sh [OUT.ts]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-urdm_plugin/i18n/urdm_plugin.ts}"
command -v pylupdate5 >/dev/null || { echo "error: pylupdate5 not found; install Debian's pyqt5-dev-tools (make setup does)" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
mapfile -t sources < <(find urdm_plugin -name '*.py' -not -path '*/__pycache__/*' | sort)
PYTHONWARNINGS=ignore pylupdate5 -noobsolete "${sources[@]}" -ts "$out"
echo "$out: $(grep -c '<source>' "$out") strings"
