"""Without torch the plugin still loads, offers FCLS/TV, marks URDM unavailable and offers to
install torch; importing the plugin never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(r"""
    import importlib.abc, json, sys
    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError("No module named 'torch' (blocked by the test)")
            return None
    sys.meta_path.insert(0, BlockTorch())
    sys.path.insert(0, sys.argv[1])

    from qgis.core import QgsApplication
    app = QgsApplication([], True)
    app.initQgis()
    import urdm_plugin
    plugin = urdm_plugin.classFactory(None)
    plugin.initProcessing()
    from urdm_plugin.core.methods.registry import method_available
    from urdm_plugin.core.methods.registry import method_available
    from urdm_plugin.gui.dialog import UnmixDialog
    from urdm_plugin.gui import torch_support
    dlg = UnmixDialog(None)
    urdm_row = dlg.method_ids().index("urdm")
    out = {
        "urdm_available": method_available("urdm")[0],
        "urdm_reason": method_available("urdm")[1],
        "fcls_ready": method_available("fcls")[0],
        "tv_enabled": dlg.method_enabled("tv"),
        "urdm_enabled": dlg.method_enabled("urdm"),
        "urdm_tooltip": dlg.method_model.item(urdm_row).toolTip(),
        "current": dlg.current_method(),
        "install_button": not dlg.install_torch_button.isHidden(),
        "algs": sorted(a.id() for a in plugin.provider.algorithms()),
        "command": torch_support.install_command(),
        "torch_imported": "torch" in sys.modules,
    }
    plugin.unload()
    print("RESULT" + json.dumps(out))
""")


def test_plugin_without_torch_offers_fcls_and_install(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], capture_output=True, text=True, timeout=120,
                       env=env)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, r.stdout[-2000:] + r.stderr[-2000:]
    out = json.loads(line[len("RESULT"):])
    assert out["urdm_available"] is False and "torch" in out["urdm_reason"].lower()
    assert out["fcls_ready"] and out["tv_enabled"]
    assert out["urdm_enabled"] is False and "torch" in out["urdm_tooltip"].lower()
    assert out["current"] == "fcls"
    assert out["install_button"] is True
    assert {"urdm:unmix", "urdm:vca"} <= set(out["algs"])
    assert "--target" in out["command"] and "torch==2.13.0" in out["command"]
    assert "download.pytorch.org/whl/cpu" in out["command"] and "urdm_deps" in out["command"]
    assert out["torch_imported"] is False


def test_deps_folder_added_to_sys_path(tmp_path, monkeypatch):
    from urdm_plugin.gui.torch_support import add_deps_to_path

    monkeypatch.setattr(sys, "path", list(sys.path))
    missing = tmp_path / "nope"
    assert add_deps_to_path(missing) is False and str(missing) not in sys.path
    deps = tmp_path / "urdm_deps"
    (deps / "fakepkg_urdm_test").mkdir(parents=True)
    (deps / "fakepkg_urdm_test" / "__init__.py").write_text("VALUE = 7\n")
    assert add_deps_to_path(deps) is True
    assert add_deps_to_path(deps) is False  # only once
    import fakepkg_urdm_test

    assert fakepkg_urdm_test.VALUE == 7
    sys.modules.pop("fakepkg_urdm_test", None)
