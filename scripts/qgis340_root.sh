#!/usr/bin/env bash
# The second QGIS of `make test`: QGIS 3.40 LTR, Python 3.13, numpy 2, GDAL 3.10, from
# Debian 13 (trixie) in a root filesystem under build/, entered with chroot.
#
#   scripts/qgis340_root.sh build          build the root and its venv (skipped when stamps match)
#   scripts/qgis340_root.sh run CMD...     run CMD inside, in the repository, with the venv active
#   scripts/qgis340_root.sh test [ARGS]    build, then run pytest ARGS inside
#
# The root is build/qgis340-root (made by mmdebstrap from the mirror apt uses here), its
# venv build/qgis340-venv (--system-site-packages: QGIS, GDAL, numpy, scipy and torch are
# Debian's; the rest are requirements.txt's pins from PyPI, plus requirements-qgis340.txt).
# Each is rebuilt only when its stamp (a hash of the package list, resp. of the pins) changes.
# Inside, the repository is bind-mounted at its own path (read-write: tests write under it)
# and ../shared read-only; /proc, /dev, /sys (read-only) too. A trap unmounts everything,
# also when the command fails or is interrupted. Needs root (as CI and the set-up are).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="$(cd "$REPO/.." && pwd)/shared"
BUILD="$REPO/build"
ROOT="$BUILD/qgis340-root"
VENV="$BUILD/qgis340-venv"
SUITE=trixie
# Debian's packages for QGIS 3.40 and what the suite needs from the system. torch is
# Debian's CPU build (python3-torch): PyPI's cp313 torch pulls several GB of CUDA libraries.
# pyqt5-dev-tools/qttools5-dev-tools: pylupdate5 and lrelease for the translation tests.
PACKAGES=(qgis python3-qgis qgis-providers python3-gdal python3-numpy python3-scipy
          python3-torch python3-venv python3-pip ca-certificates fonts-dejavu-core xauth
          pyqt5-dev-tools qttools5-dev-tools)

# The mirror apt uses here (deb822 or one-line sources); Debian's redirector otherwise.
mirror() {
  local m
  m=$(grep -hs -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  [ -n "$m" ] || m=$(grep -hs -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

need_root() {
  [ "$(id -u)" -eq 0 ] || { echo "qgis340: building and entering the QGIS 3.40 root needs root (chroot, mount); run as root or set URDM_SKIP_QGIS340=1" >&2; exit 2; }
}

build_root() {
  local want stamp="$ROOT/.urdm-stamp"
  want=$( { echo "$SUITE"; printf '%s\n' "${PACKAGES[@]}"; } | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  assert_unmounted
  if ! command -v mmdebstrap >/dev/null; then
    echo "qgis340: installing mmdebstrap"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap
  fi
  local t0=$SECONDS tmp="$ROOT.partial"
  rm -rf "$tmp" "$ROOT" "$VENV"
  mkdir -p "$BUILD"
  echo "qgis340: building the Debian $SUITE root (QGIS 3.40) in $ROOT from $(mirror) ..."
  mmdebstrap --variant=apt --mode=root --components=main \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    "$SUITE" "$tmp" "$(mirror)"
  mv "$tmp" "$ROOT"
  echo "$want" > "$stamp"
  echo "qgis340: root built in $((SECONDS - t0)) s ($(du -sh "$ROOT" | cut -f1))"
}

MOUNTED=()
unmount_all() {
  local i
  for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do
    umount -R "${MOUNTED[$i]}" 2>/dev/null || umount -R -l "${MOUNTED[$i]}" || true
  done
  MOUNTED=()
}

# A root left mounted (a killed run) must not be deleted or rebuilt through its mounts.
assert_unmounted() {
  if [ -d "$ROOT" ] && findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
    echo "qgis340: $ROOT still has mounts; unmount them first: findmnt -rn -o TARGET | grep '^$ROOT/' | sort -r | xargs -n1 umount -l" >&2
    exit 2
  fi
}

bind() {  # bind SRC DEST [ro]
  mkdir -p "$2"
  mount --rbind "$1" "$2"
  MOUNTED+=("$2")
  mount --make-rslave "$2"
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

# enter CMD: run CMD (a bash command line) inside the root, in the repository.
enter() {
  trap unmount_all EXIT
  trap 'unmount_all; exit 130' INT TERM
  mkdir -p "$ROOT/proc"
  mount -t proc proc "$ROOT/proc"; MOUNTED+=("$ROOT/proc")
  bind /dev "$ROOT/dev"
  bind /sys "$ROOT/sys" ro
  bind "$REPO" "$ROOT$REPO"
  if [ -d "$SHARED" ]; then bind "$SHARED" "$ROOT$SHARED" ro; fi
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  # pip inside trusts what the host trusts (a site's proxy CA included).
  cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/urdm-host-ca.crt" 2>/dev/null || true
  local status=0
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
      PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
      URDM_SKIP_QGIS340=1 CI="${CI:-}" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
      /bin/bash -c "cd '$REPO' && $1" || status=$?
  unmount_all
  trap - EXIT INT TERM
  return $status
}

build_venv() {
  local want stamp="$VENV/.urdm-stamp"
  want=$(cat "$ROOT/.urdm-stamp" requirements.txt requirements-qgis340.txt | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  local t0=$SECONDS
  rm -rf "$VENV"
  echo "qgis340: creating $VENV (Python 3.13, --system-site-packages) with requirements.txt's pins"
  # Debian's numpy/scipy/torch stay (the constraints file pins what Debian has); torch's
  # pin is the host's cp311 wheel, so it is left out here.
  enter "set -e
    python3 -m venv --system-site-packages '$VENV'
    python3 -c 'import numpy, scipy, torch; print(f\"numpy=={numpy.__version__}\\nscipy=={scipy.__version__}\\ntorch=={torch.__version__}\")' > '$VENV/debian-pins.txt'
    grep -v -E '^torch==' requirements.txt > '$VENV/requirements-pinned.txt'
    '$VENV/bin/python' -m pip install -q --isolated --cert /etc/urdm-host-ca.crt -c '$VENV/debian-pins.txt' \
        -r '$VENV/requirements-pinned.txt' -r requirements-qgis340.txt
    '$VENV/bin/python' -c 'import numpy, osgeo.gdal, qgis.core, torch, sys; from qgis.core import Qgis
print(f\"qgis340: QGIS {Qgis.version()}, Python {sys.version.split()[0]}, numpy {numpy.__version__}, GDAL {osgeo.gdal.__version__}, torch {torch.__version__}\")'"
  echo "$want" > "$stamp"
  echo "qgis340: venv ready in $((SECONDS - t0)) s"
}

cmd="${1:-test}"; shift || true
args=$(printf '%q ' "$@")  # the arguments, quoted for the bash inside
need_root
case "$cmd" in
  build) build_root; build_venv ;;
  run)   build_root; build_venv; enter "source '$VENV/bin/activate' && $args" ;;
  test)  build_root; build_venv
         enter "source '$VENV/bin/activate' && QT_QPA_PLATFORM=offscreen URDM_VENV='$VENV' python -m pytest $args" ;;
  *) echo "usage: $0 build | run CMD... | test [PYTEST ARGS]" >&2; exit 2 ;;
esac
