#!/usr/bin/env bash
# qgis_process for this project. Debian 12's /usr/bin/qgis_process wrapper always adds
# --noversioncheck, which qgis_process.bin rejects; so call the binary directly.
# Usage: scripts/qgis_process.sh [--profile DIR] ARGS...   (DIR: a QGIS_CUSTOM_CONFIG_PATH)
set -euo pipefail
source "$(dirname "$0")/qgis_env.sh"
if [ "${1:-}" = "--profile" ]; then export QGIS_CUSTOM_CONFIG_PATH="$2"; shift 2; fi
exec qgis_process.bin "$@"
