#!/usr/bin/env bash
# `make test`: the whole suite on QGIS 3.22 (the host's Debian 12, the minimum) and then on
# QGIS 3.40 LTR (Debian 13 root, Python 3.13, numpy 2; scripts/qgis340_root.sh), and a
# summary saying which QGIS each result is from. Both run even when the first fails.
#   URDM_SKIP_QGIS340=1 (or `make test-fast`) skips the second for local loops; never in CI.
# Usage: scripts/run_tests.sh [PYTEST ARGS]
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build

last_line() { grep -E '(passed|failed|error|no tests ran)' "$1" | tail -n1 | sed -E 's/=+//g; s/^ +| +$//g'; }

echo "=== QGIS 3.22 (host: Debian 12, Python 3.11, numpy 1.24) ==="
t0=$SECONDS
QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest "$@" 2>&1 | tee build/test-qgis322.log
rc322=${PIPESTATUS[0]}
s322=$((SECONDS - t0))

skip="${URDM_SKIP_QGIS340:-}"
if [ -n "$skip" ] && [ "$skip" != 0 ] && [ -n "${CI:-}" ]; then
  echo "run_tests: URDM_SKIP_QGIS340 is ignored in CI: both QGIS versions are tested"
  skip=""
fi
rc340=0
if [ -n "$skip" ] && [ "$skip" != 0 ]; then
  summary340="skipped (URDM_SKIP_QGIS340=$skip)"
else
  echo "=== QGIS 3.40 LTR (Debian 13 root: Python 3.13, numpy 2, GDAL 3.10) ==="
  t0=$SECONDS
  bash scripts/qgis340_root.sh test "$@" 2>&1 | tee build/test-qgis340.log
  rc340=${PIPESTATUS[0]}
  summary340="$(last_line build/test-qgis340.log) (exit $rc340, $((SECONDS - t0)) s with the root's set-up)"
fi

echo "=== results by QGIS version ==="
echo "QGIS 3.22 (host):         $(last_line build/test-qgis322.log) (exit $rc322, $s322 s)"
echo "QGIS 3.40 (Debian 13):    $summary340"
[ "$rc322" -eq 0 ] && [ "$rc340" -eq 0 ]
