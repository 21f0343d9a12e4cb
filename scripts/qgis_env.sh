# Source this before starting QGIS or qgis_process from the project:
# puts the venv's packages (torch, ...) on QGIS's Python path and picks a headless Qt
# platform when there is no display.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# URDM_VENV: another venv (the QGIS 3.40 root's build/qgis340-venv sets it).
_site="$("${URDM_VENV:-$_root/.venv}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export PYTHONPATH="$_site${PYTHONPATH:+:$PYTHONPATH}"
[ -n "${DISPLAY:-}" ] || export QT_QPA_PLATFORM=offscreen
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
unset _root _site
