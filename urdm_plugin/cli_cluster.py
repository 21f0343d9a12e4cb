"""``python -m urdm_plugin scheduler|worker``: Dask's own scheduler and worker with this
plugin on their Python path.

A cluster's scheduler and workers deserialize the run's tasks, which name this plugin's
functions, so both must be able to import it. These commands put the plugin's parent
folder on ``sys.path`` and on ``PYTHONPATH`` (inherited by the worker processes Dask's nanny
starts) and hand every other argument to distributed's command line unchanged
(``dask scheduler`` / ``dask worker``: see their ``--help``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from .core.errors import OptionError

PLUGIN_PARENT = str(Path(__file__).resolve().parent.parent)


def _add(sub, kind: str, prog: str, example: str, what: str) -> None:
    p = sub.add_parser(
        kind, help=f"start a Dask {kind} that can import this plugin (for unmix --scheduler)",
        description=(f"Run Dask's {kind} ('dask {kind}') with this plugin on its Python path, so that {what} "
                     "can deserialize the unmixing tasks. Every other argument is passed to Dask unchanged."),
        epilog=f"example:\n  {prog} {kind} {example}", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--help-dask", action="store_true", help=f"show the options of 'dask {kind}'")
    # the rest of the command line is Dask's: main() hands it over as ``args.passthrough``
    p.set_defaults(passthrough=[], func=lambda args: run_dask(
        kind, (["--help"] if args.help_dask else []) + list(args.passthrough), f"{prog} {kind}"))


def add_scheduler(sub, prog: str) -> None:
    _add(sub, "scheduler", prog, "--port 8786", "the scheduler")


def add_worker(sub, prog: str) -> None:
    _add(sub, "worker", prog, "tcp://hostA:8786 --nworkers 4 --nthreads 1", "the worker processes")


def plugin_on_path() -> None:
    """This plugin importable here and in every child process."""
    if PLUGIN_PARENT not in sys.path:
        sys.path.insert(0, PLUGIN_PARENT)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if PLUGIN_PARENT not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([PLUGIN_PARENT] + parts)


def run_dask(kind: str, args: list, prog: str) -> int:
    """Run ``dask <kind> <args>`` in this process (its exit code: click exits itself)."""
    try:
        module = importlib.import_module(f"distributed.cli.dask_{kind}")
    except ImportError:
        raise OptionError(f"A Dask {kind} needs dask.distributed, which this Python does not have",
                          "Install it (pip install 'dask[distributed]')") from None
    plugin_on_path()
    return module.main.main(args=list(args), prog_name=prog, standalone_mode=True) or 0
