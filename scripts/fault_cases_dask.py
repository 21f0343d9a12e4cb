"""Fault-audit cases of a Dask cluster that does not fit the run (issue #22): an address that
is not one, a scheduler or a worker started without this plugin on its Python path.

Each cluster case runs in a child (``Case.python``) that starts a real scheduler (and a
worker) on a free local port from the root folder with no PYTHONPATH, so it cannot import
the plugin, runs the command line against it, relays its stderr and exit status, and stops
the cluster again. Without dask.distributed installed the cluster cases are left out.
"""

from __future__ import annotations

import importlib.util

from fault_audit import Case, _unmix

#: The child: argv = image, library, output folder, "worker" or "scheduler" (what lacks the
#: plugin). Started from "/" without PYTHONPATH, a process cannot import urdm_plugin; the
#: wrapper (python -m urdm_plugin scheduler) is started from the plugin's own parent folder.
_CLUSTER = r"""
import os, socket, subprocess, sys, time
img, lib, out, lacking = sys.argv[1:5]
root = os.environ["PYTHONPATH"].split(os.pathsep)[0]
bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def up(p, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", p), 1).close(); return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the test scheduler did not start")

p = port()
addr = f"tcp://127.0.0.1:{p}"
quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if lacking == "scheduler":
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(p), "--no-dashboard"], cwd="/", env=bare, **quiet)]
else:
    procs = [subprocess.Popen([sys.executable, "-m", "urdm_plugin", "scheduler", "--host", "127.0.0.1",
                               "--port", str(p), "--no-dashboard"], cwd=root, env=bare, **quiet)]
try:
    up(p)
    if lacking == "worker":
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nworkers", "1",
                                       "--nthreads", "1", "--no-dashboard", "--local-directory", "/tmp"],
                                      cwd="/", env=bare, **quiet))
        from distributed import Client
        with Client(addr, timeout=30) as c:
            c.wait_for_workers(1, timeout=60)
    r = subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", img, lib, out, "--quiet", "--method", "fcls",
                        "--scheduler", addr], capture_output=True, text=True)
    sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)
    code = r.returncode
finally:
    for q in reversed(procs):
        q.terminate()
        try:
            q.wait(30)
        except subprocess.TimeoutExpired:
            q.kill()
sys.exit(code)
"""


def cases() -> list:
    out = [Case("dask", "--scheduler 'not a url'", _unmix("--scheduler", "not a url"), word="scheduler address"),
           Case("dask", "--scheduler http://host:8786 (not a Dask scheme)",
                _unmix("--scheduler", "http://localhost:8786"), word="scheduler address")]
    if importlib.util.find_spec("distributed") is None:
        return out
    word = "python -m urdm_plugin scheduler"
    return out + [
        Case("dask", "a scheduler started without the plugin on its path",
             ["{img}", "{lib}", "{box}/out", "scheduler"], python=_CLUSTER, word=word),
        Case("dask", "a worker started without the plugin on its path",
             ["{img}", "{lib}", "{box}/out", "worker"], python=_CLUSTER, word=word),
    ]
