"""Fault injection: signals, a killed run's leftovers, crafted run folders.

Each case asserts what a user relies on: the exit code, one line on stderr, and that
nothing was written or deleted that the run did not own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from urdm_plugin.core.errors import OutputError
from urdm_plugin.core.io.manifest import RunManifest, run_file_path
from urdm_plugin.core.io.writer import PARTIAL_MARKER, remove_stale_partials

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def slow_scene(tmp_path_factory):
    """A scene TV needs a few seconds for, so a signal can arrive mid-run."""
    from test_pipeline import write_scene

    return write_scene(tmp_path_factory.mktemp("faults"), H=96, W=96)[:2]


def _partials(folder: Path) -> list:
    return [p for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hung up")])
def test_sigterm_and_sighup_mid_run_leave_nothing(slow_scene, tmp_path, sig, code, word):
    tif, csv = slow_scene
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(csv), str(out),
                             "--method", "tv", "--lam", "0.01", "--max-iter", "3000", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=str(ROOT))
    deadline = time.time() + 60
    while not _partials(tmp_path) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert _partials(tmp_path), "the run never started writing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.count("\n") == 1 and word in err and "no output was written" in err
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _leftover(parent: Path, name: str, pid=None) -> Path:
    d = parent / name
    d.mkdir()
    (d / "Tree.tif").write_bytes(b"half a raster")
    if pid is not None:
        import socket

        (d / PARTIAL_MARKER).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    return d


def test_a_killed_runs_leftovers_are_removed_by_the_next_run_and_nothing_else(tmp_path):
    from test_cli import _scene

    tif, csv, _ = _scene(tmp_path)
    dead_tmp = _leftover(tmp_path, ".out.tmp-k1ll3d", _dead_pid())
    dead_old = _leftover(tmp_path, ".out.old-0badf00d", _dead_pid())
    live = _leftover(tmp_path, ".other.tmp-l1ve", os.getpid())  # a run still going
    unmarked = _leftover(tmp_path, ".mine.tmp-n0mark")  # not this tool's
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(csv), str(tmp_path / "out"),
                        "--method", "fcls", "--quiet"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not dead_tmp.exists() and not dead_old.exists()
    assert live.exists() and unmarked.exists()
    assert not (tmp_path / "out" / PARTIAL_MARKER).exists()  # the committed run carries no marker
    assert remove_stale_partials(tmp_path) == []


def test_outputs_follow_the_umask(tmp_path):
    from test_cli import _scene

    tif, csv, _ = _scene(tmp_path)
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(tif), str(csv), str(tmp_path / "out"),
                        "--method", "fcls", "--quiet"], capture_output=True, text=True, env=ENV, timeout=120,
                       preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


# ----------------------------------------------------------------------------- crafted run.json
def _crafted(folder: Path, **changes) -> Path:
    from run_fixture import make_run

    run = Path(make_run(folder).folder)
    m = json.loads((run / "run.json").read_text())
    for key, val in changes.items():
        if key == "endmember_file":
            m["endmembers"][0]["file"] = val
        elif key == "image":
            m["inputs"]["image"] = val
        else:
            m[key] = val
    (run / "run.json").write_text(json.dumps(m))
    return run


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret.tif", "sub/../../x.tif", "/vsicurl/http://example.com/a.tif",
                                  "C:\\Windows\\x.tif", "http://example.com/a.tif", ".."])
def test_a_run_json_naming_files_outside_its_folder_is_refused(tmp_path, name):
    run = _crafted(tmp_path, endmember_file=name)
    with pytest.raises(OutputError, match="only ever refers to files inside itself"):
        RunManifest.read(run)


@pytest.mark.parametrize("image", ["/vsicurl/http://example.com/scene.tif", "https://example.com/scene.tif",
                                   "/vsizip//tmp/a.zip/scene.tif"])
def test_a_run_json_with_a_remote_input_image_is_refused(tmp_path, image):
    run = _crafted(tmp_path, image=image)
    with pytest.raises(OutputError, match="network, virtual or remote"):
        RunManifest.read(run)


def test_a_run_file_linked_outside_the_folder_is_not_opened(tmp_path):
    run = _crafted(tmp_path)
    m = json.loads((run / "run.json").read_text())
    first = run / m["endmembers"][0]["file"]
    outside = tmp_path / "elsewhere.tif"
    shutil.move(first, outside)
    first.symlink_to(outside)
    with pytest.raises(OutputError, match="link to a file outside"):
        run_file_path(run, first.name)
    assert run_file_path(run, m["endmembers"][1]["file"]).startswith(str(run))
