"""Command line: ``python -m urdm_plugin <command> ...`` (also installed as ``urdm-unmix``).

Commands
- ``unmix IMAGE LIBRARY OUTDIR``: abundance rasters from a hyperspectral image.
- ``methods``: the registered methods and whether each can run here.
- ``vca IMAGE N|auto OUT.csv [--identify LIBRARY]``: extract N endmember spectra from an
  image (VCA); ``auto`` estimates N (HySime); --identify names them from a library.
- ``scheduler ...`` / ``worker ADDRESS ...``: Dask's scheduler and worker with this plugin on
  their path (for ``unmix --scheduler``; :mod:`urdm_plugin.cli_cluster`).

Exit codes: 0 success; 2 bad input (one line ``error: <message>``); 130 cancelled with
Ctrl-C, 143 terminated (SIGTERM: ``timeout``, ``kill``, systemd, SLURM, ``docker stop``),
129 hung up (SIGHUP: the terminal closed) — no output left behind in each case; 1 unexpected
failure (one line, details with ``URDM_DEBUG=1``).

Adding a command: write ``_add_<name>(subparsers)`` that builds its parser and sets
``func`` (a callable ``args -> int`` exit code) with ``parser.set_defaults(func=...)``,
then append it to :data:`COMMANDS`. Importing this module must not import torch or qgis
(the heavy modules are imported inside the command functions).

Size note: one module for the one front end a terminal sees: four commands' parsers, the
signal and Ctrl-C handling they share, and the one-line error discipline of :func:`main`;
option checking is not here (``core.options`` builds and validates every run option).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Callable, List, Optional

from . import startup
from .core.errors import (
    Cancelled,
    InputImageError,
    LibraryError,
    OptionError,
    OutputError,
    OutputExistsError,
    UrdmError,
    for_front_end,
)

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130

PROG = "python -m urdm_plugin"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line ``error: ...`` messages and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse hook
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def _method_help() -> str:
    from .core.methods.registry import METHODS

    return ", ".join(m.id for m in METHODS)


def _default_method() -> str:
    from .core.methods.registry import default_method

    return default_method()


# ------------------------------------------------------------------ progress
class _CliProgress:
    """tqdm bar on stderr when it is a terminal; nothing with --quiet. Warnings are shown
    as ``warning: ...`` lines (unless --quiet)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self._last_warning = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=1000, file=sys.stderr, unit="‰", leave=False,
                            bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        if self.quiet:
            return
        if message.startswith("warning: ") and message != self._last_warning:
            self._last_warning = message
            self._write(message)
        if self.bar is not None:
            n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
            if n > self.bar.n:
                self.bar.update(n - self.bar.n)
            self.bar.set_postfix_str(_printable(message[:60]), refresh=False)

    def _write(self, text: str) -> None:
        text = _printable(text)
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            _say(text, sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


#: Raised by SIGTERM / SIGHUP for the command's duration; :func:`main` exits with 128 + the
#: signal number (defined in the leaf module :mod:`urdm_plugin.startup`, which records them).
Terminated = startup.Terminated


#: Signals received (from the first instruction, see :mod:`urdm_plugin.startup`, and by
#: the handler below): raised inside an extension module's import, the exception reaches
#: main() as ImportError("initialization failed") or is swallowed by an optional import, so
#: main(), every cancel poll and the last check before writing ask here.
_received: list = startup.received


def _check_signals() -> None:
    """Raise :class:`Terminated` for a signal that was recorded but not acted on."""
    if _received:
        raise Terminated(_received[-1])


def _in_import(frame) -> bool:
    """Whether ``frame`` runs inside an import (a frame of importlib's bootstrap below it)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _termination_signals():
    """SIGTERM and SIGHUP raise :class:`Terminated` for the command's duration."""
    def handler(signum, frame):
        _received.append(signum)
        if _in_import(frame):  # a library may catch it there and print (decorator's "Error in generated code")
            return  # recorded: the next cancel poll, or main(), ends the run
        raise Terminated(signum)

    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:  # Windows has no SIGHUP
            continue
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (the tests call main() from one)
            pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


class _CtrlC:
    """First Ctrl-C asks the run to stop at its next check (clean cancel); a second one
    interrupts at once. Either way no output is left behind."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self) -> bool:
        return self.requested or bool(_received)  # a SIGTERM swallowed on its way counts too

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


# ------------------------------------------------------------------ unmix
def _add_unmix(sub) -> None:
    p = sub.add_parser(
        "unmix",
        help="unmix a hyperspectral image into one abundance raster per endmember",
        description=(
            "Unmix a georeferenced hyperspectral image (GeoTIFF, ENVI, any GDAL raster with "
            "wavelengths) with an endmember library (CSV 'wavelength_nm,<name>,...' or ENVI .sli). "
            "Writes one float32 GeoTIFF per endmember (abundance fractions, nodata -9999), "
            "residual_rmse.tif, endmembers_used.csv and run.json into OUTDIR; a failed or "
            "cancelled run leaves nothing behind."),
        epilog=(
            "examples:\n"
            f"  {PROG} unmix scene.tif library.csv out/ --method fcls\n"
            f"  {PROG} unmix scene.tif usgs.sli out/ --endmember Alunite --endmember Kaolinite "
            "--method tv --lam auto --overwrite\n"
            f"  {PROG} unmix scene.tif lib.csv out/ --method urdm --quality best --samples 8 --seed 1\n"
            "\nexit codes: 0 success, 2 bad input, 130 cancelled (Ctrl-C), 143 terminated, 129 hung up, 1 unexpected error"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", metavar="IMAGE", help="hyperspectral raster (band wavelengths in its metadata)")
    p.add_argument("library", metavar="LIBRARY", help="endmember library: CSV or ENVI spectral library (.sli/.hdr)")
    p.add_argument("outdir", metavar="OUTDIR", help="output folder (must not exist unless --overwrite)")
    p.add_argument("--method", default=None, metavar="ID",
                   help=f"unmixing method: {_method_help()} (default: urdm when available, else fcls; "
                        f"see '{PROG} methods')")
    p.add_argument("--endmember", action="append", default=None, metavar="NAME",
                   help="library spectrum to use (repeat for several; default: the whole library, "
                        "automatically reduced when it is larger than the bands support or 20)")
    _add_registry_options(p)
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="solve tiles / row blocks in N local worker processes (same result as one)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="solve tiles / row blocks on a Dask cluster (e.g. tcp://host:8786; needs dask.distributed)")
    p.add_argument("--window", type=int, nargs=4, default=None, metavar=("COL0", "ROW0", "W", "H"),
                   help="process only this pixel window (outputs get the window's georeferencing)")
    p.add_argument("--mask", default=None, metavar="PATH",
                   help="process only pixels inside this mask (raster on the image grid, non-zero = "
                        "inside; or a polygon vector file)")
    p.add_argument("--no-water-mask", action="store_true",
                   help="keep the atmospheric water-vapour bands (dropped by default)")
    p.add_argument("--no-quality-mask", action="store_true",
                   help="sensor products (EnMAP): also unmix the pixels their quality layers flag as "
                        "cloud, shadow, haze, snow or cirrus (left as nodata by default)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTDIR when it holds a previous run (only files that run wrote; never the current folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no messages, only errors")
    p.set_defaults(func=_run_unmix)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_registry_options(p) -> None:
    """The engine and run options and every method parameter, generated from the registry (one
    ``--lam`` for all regularised methods; a method's option given to another is an error)."""
    from .core.methods.registry import ENGINE_OPTIONS, RUN_OPTIONS, all_params

    def add(spec, default, methods=None):
        kw = {"default": default, "help": spec.help}
        if spec.kind == "choice":
            kw["choices"] = spec.choices
        elif not spec.auto:
            kw.update(type=float if spec.kind == "float" else int, metavar="N")
        else:
            kw["metavar"] = "X"
        if methods:
            kw["help"] += f" [{', '.join(methods)}; default {spec.default}]"
        elif spec.default is not None:  # a None default is described in the help itself
            kw["help"] += f" (default {spec.default})"
        p.add_argument(_flag(spec.name), **kw)

    for spec in ENGINE_OPTIONS + RUN_OPTIONS:
        add(spec, spec.default)
    for spec, methods in all_params().values():
        add(spec, None, methods)  # None: not given, the method's default applies


def _build_run(args):
    """The run the arguments ask for, through the one options builder (a parameter of another
    method, or a bad value, is refused before any file is opened)."""
    from .core.engine.options import build_run
    from .core.methods.registry import ENGINE_OPTIONS, RUN_OPTIONS, all_params

    values = {name: getattr(args, name) for name in all_params()}
    values.update({o.name: getattr(args, o.name) for o in ENGINE_OPTIONS + RUN_OPTIONS})
    values.update(method=args.method, endmembers=args.endmember, workers=args.workers, scheduler=args.scheduler,
                  overwrite=args.overwrite, mask_water_bands=not args.no_water_mask,
                  window=tuple(args.window) if args.window else None, mask_path=args.mask,
                  quality_mask=not args.no_quality_mask)
    return build_run(values, _flag)


def _run_unmix(args) -> int:
    from .core.engine.pipeline import unmix_raster
    from .core.io.image import is_plain_path

    if is_plain_path(args.image) and not Path(args.image).exists():  # /vsizip/, NETCDF:"…":var are opened
        raise InputImageError(f"Image not found: {args.image}", "Check the path")
    if not Path(args.library).exists():
        raise LibraryError(f"Library not found: {args.library}", "Check the path")
    run = _build_run(args)
    bar = _CliProgress(args.quiet)
    try:
        with _CtrlC() as ctrl_c, run.executor() as executor:
            result = unmix_raster(args.image, args.library, args.outdir, run.options,
                                  progress=bar, cancel=ctrl_c, executor=executor)
    finally:
        bar.close()
    if not args.quiet:
        m = result.manifest
        lam = m.get("parameters", {}).get("lam_chosen")
        extra = f", λ={lam:.3g}" if isinstance(lam, float) else ""
        _say(_printable(f"{m['method']}: {len(m['endmembers'])} endmembers "
                         f"({', '.join(e['name'] for e in m['endmembers'])}){extra} -> {result.out_dir} "
                         f"in {result.seconds:.1f} s"))
    return EXIT_OK


# ------------------------------------------------------------------ methods
def _add_methods(sub) -> None:
    p = sub.add_parser("methods", help="list the unmixing methods and whether each can run here",
                       description="List the registered unmixing methods, their options and availability.")
    p.set_defaults(func=_run_methods)


def _run_methods(args) -> int:
    from .core.methods.registry import METHODS

    default = _default_method()
    for m in METHODS:
        ok, reason = m.available()
        mark = "available" if ok else f"NOT AVAILABLE: {reason}"
        star = " (default)" if m.id == default else ""
        _say(f"{m.id:<6} {m.label}{star} -- {mark}")
        for prm in m.params:
            rng = ""
            if prm.choices:
                rng = " {" + ",".join(prm.choices) + "}"
            _say(f"         {prm.name}={prm.default}{rng}: {prm.help}")
    return EXIT_OK


# ------------------------------------------------------------------ vca
def _add_vca(sub) -> None:
    from .core.methods.registry import SEED, VCA_MAX_ANGLE, VCA_MAX_PIXELS

    p = sub.add_parser(
        "vca", help="extract N endmember spectra from an image (vertex component analysis)",
        description="Extract N endmember spectra from the image's pixels with VCA and write them "
                    "as a CSV library (wavelength_nm,endmember_1,...) usable by 'unmix'. N 'auto' "
                    "estimates the number of endmembers (HySime) and prints it with the noise level. "
                    "--identify names each endmember after its closest spectrum of a reference library "
                    "(spectral angle and feature fit; unidentified_k when none is close) and writes "
                    "the matches and runners-up to OUT.report.txt next to OUT.csv.",
        epilog=f"examples:\n  {PROG} vca scene.tif 4 endmembers.csv\n"
               f"  {PROG} vca scene.tif auto endmembers.csv --identify usgs.csv\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="hyperspectral raster")
    p.add_argument("n", metavar="N", help="number of endmembers to extract, or 'auto' (HySime estimate)")
    p.add_argument("out", metavar="OUT.csv", help="CSV library to write")
    p.add_argument("--identify", metavar="LIBRARY", default=None,
                   help="reference spectral library (CSV or ENVI .sli) to name the endmembers from")
    p.add_argument("--max-angle", type=float, default=None, metavar="RAD",
                   help=f"largest spectral angle (radians) of an identification (default {VCA_MAX_ANGLE.default})")
    p.add_argument("--seed", type=int, default=None, help=f"random seed (default {SEED.default})")
    p.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                   help=f"random subset of valid pixels VCA looks at (default {VCA_MAX_PIXELS.default})")
    p.add_argument("--no-water-mask", action="store_true", help="keep the water-vapour bands")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.csv if it exists")
    p.add_argument("--quiet", action="store_true", help="no messages, only errors")
    p.set_defaults(func=_run_vca)


def _positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (refused by the parser in one line)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {v})")
    return v


def _vca_report_path(out: Path) -> Path:
    return out.with_name(out.stem + ".report.txt")


def _run_vca(args) -> int:
    from .core.engine.extraction import extract_endmembers
    from .core.engine.options import build_vca
    from .core.io.output_policy import check_output_file

    inputs = (args.image, args.identify)
    out = check_output_file(args.out, inputs, args.overwrite, "output library")
    report_path = _vca_report_path(out) if args.identify else None
    if report_path is not None:
        check_output_file(report_path, inputs, args.overwrite, "identification report")
    vca = build_vca({"n": args.n, "seed": args.seed, "max_pixels": args.max_pixels, "max_angle": args.max_angle,
                     "mask_water_bands": not args.no_water_mask})
    reference = None
    if args.identify:
        from .core.io.library import read_library

        reference = read_library(args.identify)
    lib = extract_endmembers(args.image, vca.n, reference=reference, **vca.as_kwargs())
    from .core.io.library import write_library_csv
    from .core.io.output_policy import TEXT_MARK

    _check_signals()  # nothing is written after a termination request, even a swallowed one
    if lib.hysime is not None and not args.quiet:
        _say(f"estimated {lib.hysime.n_endmembers} endmembers (HySime); noise sigma "
              f"{lib.noise_sigma:.3g} reflectance")
    write_library_csv(out, lib)
    if report_path is not None:
        try:
            report_path.write_text(lib.report + "\n" + TEXT_MARK + "\n", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"Cannot write '{report_path}' ({exc.strerror or exc})",
                              "Choose a folder you can write to") from None
    if not args.quiet:
        _say(lib.extraction)
        if lib.identification is not None:
            _say(lib.identification.report)
        _say(f"wrote {len(lib)} endmembers on {lib.spectra.shape[0]} bands to {out}"
              + (f" (report: {report_path})" if report_path is not None else ""))
    return EXIT_OK


#: Subcommands in --help order: each adds its parser to the subparsers object.
def _add_scheduler(sub) -> None:
    from .cli_cluster import add_scheduler

    add_scheduler(sub, PROG)


def _add_worker(sub) -> None:
    from .cli_cluster import add_worker

    add_worker(sub, PROG)


COMMANDS: List[Callable] = [_add_unmix, _add_methods, _add_vca, _add_scheduler, _add_worker]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="URDM hyperspectral unmixing from the command line (the engine of the QGIS plugin).",
        epilog=(f"example:\n  {PROG} unmix scene.tif library.csv out/ --method fcls\n"
                f"  {PROG} <command> --help   shows each command's options\n\n"
                "exit codes: 0 success, 2 bad input, 130 cancelled, 143 terminated, 129 hung up, 1 unexpected error; "
                "set URDM_DEBUG=1 for tracebacks"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


#: The core's option spellings in messages -> this command line's switches.
CLI_SWITCHES = {"mask_water_bands=False": "--no-water-mask", "quality_mask=False": "--no-quality-mask"}


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    from .core.io.gdal_quiet import capture_native_stderr, declare_exceptions_mode

    _tolerant_streams()
    if _received:
        return _terminated(_received[-1])
    declare_exceptions_mode()  # this process is ours: silences GDAL ≥ 3.9's FutureWarning
    capture_native_stderr()  # and libtiff's own lines on a failed write (folded into ours)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "passthrough", None) is None:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:  # scheduler / worker: the rest is Dask's own command line
        args.passthrough = extra
    debug = os.environ.get("URDM_DEBUG", "") not in ("", "0")
    try:
        with _termination_signals(), warnings.catch_warnings():
            _check_signals()  # one that came while the modules loaded
            if not debug:  # numpy's RuntimeWarnings (0/0 on an empty tile …) would break the one line
                warnings.simplefilter("ignore", RuntimeWarning)
            _check_paths(args)
            return int(args.func(args) or 0)
    except Terminated as exc:
        return _terminated(exc.signum)
    except UrdmError as exc:
        exc = for_front_end(exc, CLI_SWITCHES)
        if isinstance(exc, OutputExistsError):
            exc = OutputExistsError(exc.problem, f"{exc.fix.rstrip('.')}, or add --overwrite to replace what an "
                                    "earlier run wrote there")
        _say(f"error: {_one_line(str(exc))}", sys.stderr)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        if _received:  # the cancel poll saw a termination signal
            return _terminated(_received[-1])
        _say("cancelled: no output was written", sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        if _received:  # the signal surfaced as another exception (e.g. during an import)
            return _terminated(_received[-1])
        if debug:
            import traceback

            traceback.print_exc()
        _say(f"error: unexpected {type(exc).__name__}: {_one_line(str(exc))} "
             "(run with URDM_DEBUG=1 for details)", sys.stderr)
        return EXIT_FAILURE


def _terminated(signum: int) -> int:
    name = signal.Signals(signum).name
    _say(f"{'terminated' if name == 'SIGTERM' else 'hung up'} ({name}): no output was written", sys.stderr)
    return 128 + signum


def _tolerant_streams() -> None:
    """stdout/stderr that write any text: a character the terminal's encoding lacks ('λ' under
    PYTHONIOENCODING=ascii or cp1252) comes out as an escape instead of failing the run."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass


def _say(text: str, stream=None) -> None:
    """Print one message. A closed reader (``| head -c 0``: EPIPE) or a closed stream does not
    change the outcome of the run: the stream is pointed at /dev/null and the run goes on."""
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (BrokenPipeError, ValueError, OSError):
        _to_devnull(stream)


def _to_devnull(stream) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())  # Python's own flush at exit finds nothing to fail on
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _check_paths(args) -> None:
    """A path given on the command line that is not text in the file system's encoding (a
    stray non-UTF-8 byte) cannot be handed to GDAL: refused in one line naming it."""
    for key in ("image", "library", "outdir", "out", "mask", "identify"):
        value = getattr(args, key, None)
        if isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value):
            shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise OptionError(f"The path '{shown}' holds a byte that is not UTF-8 text (shown as '\ufffd')",
                              "Rename the file or folder with plain UTF-8 characters")


def _one_line(text: str) -> str:
    return _printable(" ".join(text.split()))


def _printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes in a spectrum's name …) shown as '?',
    so nothing a file contains can move the cursor or recolour the terminal."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in str(text))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
