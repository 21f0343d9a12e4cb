"""PyTorch for the URDM method: where the plugin installs it, and how.

QGIS ships its own Python, often without torch (and Debian's system Python refuses a plain
``pip install``: it is "externally managed"). The plugin therefore keeps a folder of its
own, ``<QGIS settings dir>/python/urdm_deps``, installs the CPU build of torch there with
``pip install --target`` on request, and puts the folder on ``sys.path`` at start-up when
it exists. Nothing here imports torch.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

TORCH_VERSION = "2.13.0"
CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"


def deps_dir() -> Path:
    """The plugin-managed folder for extra Python packages (may not exist yet)."""
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "python" / "urdm_deps"


def add_deps_to_path(folder: Optional[Path] = None) -> bool:
    """Put the deps folder on ``sys.path`` (at the end) if it exists. True if added now."""
    folder = Path(folder) if folder is not None else deps_dir()
    if not folder.is_dir():
        return False
    s = str(folder)
    if s in sys.path:
        return False
    sys.path.append(s)
    import importlib

    importlib.invalidate_caches()
    return True


def qgis_python() -> str:
    """The Python interpreter that runs QGIS's Python (for pip)."""
    exe = sys.executable or ""
    name = Path(exe).name.lower()
    if name.startswith("python"):
        return exe
    # Inside QGIS sys.executable is the qgis binary. Windows (OSGeo4W) ships python3.exe
    # next to it (or in apps/Python3x); macOS bundles bin/python3; Linux uses the system one.
    base = Path(sys.exec_prefix)
    for cand in (base / "python.exe", base / "python3.exe", base / "bin" / "python3",
                 Path(exe).parent / "python3.exe", Path(exe).parent / "python3"):
        if cand.is_file():
            return str(cand)
    return shutil.which("python3") or "python3"


def install_args(target: Optional[Path] = None) -> list:
    """Arguments (after the interpreter) that install the CPU build of torch into target."""
    target = Path(target) if target is not None else deps_dir()
    return ["-m", "pip", "install", "--upgrade", "--target", str(target),
            f"torch=={TORCH_VERSION}", "--index-url", CPU_INDEX_URL]


def install_command(target: Optional[Path] = None) -> str:
    """The exact shell command for this platform (shown to users who prefer to run it)."""
    py = qgis_python()
    parts = [py, *install_args(target)]
    if os.name == "nt":
        return " ".join(f'"{p}"' if " " in p else p for p in parts)
    import shlex

    return " ".join(shlex.quote(p) for p in parts)


class TorchInstaller:
    """Runs pip in a QProcess with a progress dialog; calls ``on_done(ok, log_text)``.

    Install into a temporary folder beside the target and rename on success, so a failed
    or cancelled install leaves the old state (or nothing) behind.
    """

    def __init__(self, parent=None, on_done=None, target: Optional[Path] = None):
        self.parent = parent
        self.on_done = on_done
        self.target = Path(target) if target is not None else deps_dir()
        self.staging = self.target.with_name(self.target.name + ".installing")
        self.proc = None
        self.dialog = None
        self.log: list = []

    def start(self) -> None:
        from qgis.PyQt.QtCore import QProcess
        from qgis.PyQt.QtWidgets import QProgressDialog

        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.parent.mkdir(parents=True, exist_ok=True)
        self.dialog = QProgressDialog("Installing PyTorch (CPU build, about 200 MB)…", "Cancel", 0, 0,
                                      self.parent)
        self.dialog.setWindowTitle("URDM: installing PyTorch")
        self.dialog.setMinimumDuration(0)
        self.dialog.canceled.connect(self.cancel)
        self.proc = QProcess(self.parent)
        self.proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.proc.readyReadStandardOutput.connect(self._read)
        self.proc.finished.connect(self._finished)
        self.proc.errorOccurred.connect(self._error)
        self.proc.start(qgis_python(), install_args(self.staging))
        self.dialog.show()

    def _read(self) -> None:
        text = bytes(self.proc.readAllStandardOutput()).decode("utf-8", "replace")
        self.log.append(text)
        last = [ln for ln in text.splitlines() if ln.strip()]
        if last and self.dialog is not None:
            self.dialog.setLabelText("Installing PyTorch…\n" + last[-1][:120])

    def cancel(self) -> None:
        if self.proc is not None and self.proc.state() != 0:
            self.proc.kill()

    def _error(self, _err) -> None:
        if self.proc is not None and self.proc.state() == 0:  # failed to start
            self._finished(-1, 0)

    def _finished(self, code, _status=None) -> None:
        if self.dialog is not None:
            self.dialog.reset()
            self.dialog = None
        ok = code == 0 and self.staging.is_dir()
        if ok:
            old = self.target.with_name(self.target.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if self.target.exists():
                os.replace(self.target, old)
            os.replace(self.staging, self.target)
            shutil.rmtree(old, ignore_errors=True)
            add_deps_to_path(self.target)
        else:
            shutil.rmtree(self.staging, ignore_errors=True)
        if self.on_done is not None:
            self.on_done(ok, "".join(self.log))


def offer_install(parent=None, on_done=None):
    """Ask the user; install with pip or show the exact command. Returns the installer or None."""
    from qgis.PyQt.QtWidgets import QMessageBox

    cmd = install_command()
    box = QMessageBox(parent)
    box.setWindowTitle("URDM needs PyTorch")
    box.setIcon(QMessageBox.Icon.Information)
    box.setText("The URDM method needs PyTorch, which QGIS's Python does not have.\n\n"
                "FCLS and the TV baseline work without it.\n\n"
                f"Install the CPU build of PyTorch {TORCH_VERSION} into the plugin's own folder\n"
                f"{deps_dir()}?")
    box.setDetailedText("Or run this command yourself, then restart QGIS:\n\n" + cmd)
    install = box.addButton("Install", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    if box.clickedButton() is not install:
        return None
    inst = TorchInstaller(parent, on_done)
    inst.start()
    return inst
