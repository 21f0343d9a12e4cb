#!/usr/bin/env bash
# Idempotent project set-up for Debian 12: system packages (QGIS, GDAL, scipy, Xvfb),
# then .venv (system site packages visible) with the pinned Python packages.
# Safe to run twice; the second run only checks stamps and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

# pyqt5-dev-tools/qttools5-dev-tools: pylupdate5 and lrelease (make translations);
# mmdebstrap: the QGIS 3.40 root of `make test` (scripts/qgis340_root.sh).
APT_PACKAGES=(qgis python3-qgis python3-gdal python3-scipy xvfb pyqt5-dev-tools qttools5-dev-tools zip
              python3-venv mmdebstrap)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV from /usr/bin/python3 (--system-site-packages)"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

# Reinstall only when the pins change.
stamp="$VENV/.requirements.sha256"
want=$(cat requirements.txt requirements-train.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing pinned Python packages into $VENV"
  # PIP_CONSTRAINT keeps Debian's numpy even when a package asks for a newer one.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
      -c constraints.txt -r requirements.txt
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements-train.txt
  "$VENV/bin/python" - <<'PY'
import numpy, osgeo.gdal, qgis.core, torch
assert numpy.__version__.startswith("1.24"), f"numpy {numpy.__version__} replaced Debian's 1.24"
print(f"setup: numpy {numpy.__version__}, GDAL {osgeo.gdal.__version__}, torch {torch.__version__}")
PY
  echo "$want" > "$stamp"
fi

# --- optional: Orfeo ToolBox, the peer of benchmarks/bench_peers.py (issue #25) --------------
# Installed when apt offers otb-bin (Debian 12: 8.1.1); the benchmark leaves OTB's rows out
# without it, and nothing else uses it. URDM_NO_OTB=1 skips it. A failure here is not fatal.
if [ -z "${URDM_NO_OTB:-}" ] && ! command -v otbcli_HyperspectralUnmixing >/dev/null 2>&1 \
    && apt-cache policy otb-bin 2>/dev/null | grep -q "Candidate: [0-9]"; then
  echo "setup: installing Orfeo ToolBox (otb-bin libotb-apps, optional) for the peer benchmark"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends otb-bin libotb-apps \
    || echo "setup: Orfeo ToolBox not installed (optional: bench_peers leaves OTB's rows out)"
fi
