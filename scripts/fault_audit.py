"""Fault audit: the bad inputs and faults of issue #13, run against the command line.

Every case runs ``python -m urdm_plugin …`` (or, for run folders, the Python API in a child
process) in a fresh sandbox folder that holds a small scene, its library and a user's own
file (``thesis.docx``). A case is *clean* when

* the exit code is the expected one: 2 for bad input, 130 / 143 / 129 for SIGINT / SIGTERM /
  SIGHUP, 0 where the tool has to succeed (a previous run replaced, a linked output folder);
* a failing case prints exactly one line on stderr (no traceback, no GDAL or numpy lines)
  and no terminal control characters;
* the sandbox afterwards holds what it held before — nothing deleted, nothing changed, no
  temporary folder — plus, for a success, the output folder.

Prints one table row per case and a summary per category, and writes
``bench_results/fault_audit.json``. Exit status 0 when every case is clean.

    .venv/bin/python scripts/fault_audit.py [-k SUBSTRING] [--list]

(``make audit``). ``tests/test_fault_audit.py`` runs it in CI.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
#: The children's environment: this checkout importable, no URDM_DEBUG (tracebacks are failures here).
ENV = {**{k: v for k, v in os.environ.items() if k != "URDM_DEBUG"}, "PYTHONPATH": str(ROOT)}
NAMES = ("Tree", "Soil", "Water")
BANDS = 50
USER_FILE = "thesis.docx"


# ----------------------------------------------------------------------------- fixtures
def write_cube(path: Path, Y: np.ndarray, wl, *, nodata: Optional[float] = -9999.0, dtype=None,
               wl_text: Optional[list] = None) -> Path:
    """A georeferenced GeoTIFF of ``Y`` (B, H, W) with a wavelength (nm) per band."""
    from osgeo import gdal, osr

    B, H, W = Y.shape
    gtype = gdal.GDT_Float32 if dtype is None else dtype
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, B, gtype)
    ds.SetGeoTransform((500000.0, 30.0, 0.0, 4100000.0, 0.0, -30.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32610)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(B):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(Y[b])
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if wl is not None:
            band.SetMetadataItem("wavelength", wl_text[b] if wl_text else f"{wl[b]:.3f}")
            band.SetMetadataItem("wavelength_units", "nm")
    ds = None
    return path


def write_library(path: Path, wl, E, names=NAMES) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("wavelength_nm," + ",".join(names) + "\n")
        for b in range(len(wl)):
            fh.write(f"{wl[b]:.3f}," + ",".join(f"{v:.8f}" for v in E[b]) + "\n")
    return path


class Scene:
    """The sandbox's inputs: a 20 × 24 scene of 3 materials (and a slower 96 × 96 one)."""

    def __init__(self, folder: Path):
        from urdm_plugin.core.synthetic import make_scene

        sc = make_scene(height=20, width=24, n_endmembers=3, snr_db=40.0, seed=1_000_200, n_bands=BANDS)
        self.wl, self.E, self.Y = sc.wavelengths_nm, sc.E, sc.Y.astype(np.float32)
        self.folder = folder
        self.image = write_cube(folder / "scene.tif", self.Y, self.wl)
        self.library = write_library(folder / "library.csv", self.wl, self.E)
        slow = make_scene(height=96, width=96, n_endmembers=3, snr_db=40.0, seed=1_000_201, n_bands=BANDS)
        self.slow = write_cube(folder / "slow.tif", slow.Y.astype(np.float32), self.wl)

    def big_library(self, path: Path, n: int = 5000) -> Path:
        """``n`` spectra: the scene's three and smooth random others."""
        rng = np.random.default_rng(0)
        x = np.linspace(0, 1, BANDS)[:, None]
        extra = np.clip(0.3 + 0.2 * np.sin(6 * x * rng.uniform(0.5, 3, n - 3) + rng.uniform(0, 6, n - 3)), 0.01, 1)
        E = np.concatenate([self.E, extra], axis=1)
        return write_library(path, self.wl, E, list(NAMES) + [f"Spectrum {i}" for i in range(n - 3)])


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One fault. ``argv`` after ``python -m urdm_plugin``; ``{img}``, ``{lib}``, ``{box}``
    (the sandbox) and names set by ``setup`` are filled in. ``code`` the expected exit
    status; ``word`` a phrase the one line must hold; ``out`` the folder a success writes
    (relative to the sandbox); ``changes`` paths the case may change or remove."""

    category: str
    name: str
    argv: list
    code: int = 2
    word: str = ""
    setup: Optional[Callable] = None
    out: Optional[str] = None
    changes: tuple = ()
    cwd: Optional[str] = None
    fsize: Optional[int] = None
    signal_after_start: Optional[int] = None
    python: Optional[str] = None  # run this code instead of the CLI (argv are its arguments)
    check: Optional[Callable] = None  # (box) -> problem text or None, after the run
    note: str = ""


def _unmix(*extra, img="{img}", lib="{lib}", out="{box}/out") -> list:
    return ["unmix", img, lib, out, "--quiet", *extra]


def _prev_run(name: str = "prev"):
    """A folder holding a previous, real run of the tool."""
    def setup(box: Path, sc: Scene) -> dict:
        subprocess.run([sys.executable, "-m", "urdm_plugin", "unmix", str(sc.image), str(sc.library), str(box / name),
                        "--quiet"],
                       env=ENV, check=True, capture_output=True, cwd=str(box))
        return {}
    return setup


def _make(files: dict):
    def setup(box: Path, sc: Scene) -> dict:
        for rel, content in files.items():
            p = box / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content, encoding="utf-8")
        return {}
    return setup


def _cube(name: str, transform, **kw):
    def setup(box: Path, sc: Scene) -> dict:
        Y = transform(sc.Y.copy())
        write_cube(box / name, Y, kw.pop("wl", sc.wl) if "wl" in kw else sc.wl, **kw)
        return {}
    return setup


def _library_text(text: str, name="bad.csv"):
    return _make({name: text})


def _corrupt(name: str, how: str):
    def setup(box: Path, sc: Scene) -> dict:
        data = bytearray((box / "scene.tif").read_bytes())
        if how == "truncate":
            data = data[: len(data) // 3]
        elif how == "random":
            rng = np.random.default_rng(7)
            start = len(data) // 4
            for i in rng.integers(start, len(data), 4000):
                data[i] = int(rng.integers(0, 256))
        elif how == "empty":
            data = bytearray()
        (box / name).write_bytes(bytes(data))
        return {}
    return setup


def _seq(*setups):
    def setup(box: Path, sc: Scene) -> dict:
        out = {}
        for s in setups:
            out.update(s(box, sc) or {})
        return out
    return setup


def _stale(kind: str):
    """Leftovers of a killed run beside the output folder: ours (marker of a dead process),
    a live process's, and a look-alike without marker."""
    def setup(box: Path, sc: Scene) -> dict:
        import socket

        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        host = socket.gethostname()
        for tag, pid in (("dead", dead.pid), ("live", 1)):
            d = box / f".out.{kind}-{tag}"
            d.mkdir()
            (d / "part.tif").write_bytes(b"x" * 100)
            (d / ".urdm-partial").write_text(json.dumps({"pid": pid, "host": host}))
        (box / f".out.{kind}-nomarker").mkdir()
        return {}
    return setup


def _no_tmp_left(box: Path) -> Optional[str]:
    left = [p.name for p in box.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    return f"left behind {left}" if left else None


def _mode_ok(box: Path) -> Optional[str]:
    out = box / "out"
    bad = [p.name for p in [out, *out.iterdir()] if p.stat().st_mode & 0o777 not in (0o644, 0o755)]
    return f"modes not from the umask: {bad}" if bad else None


def _names_ok(expect_bytes: int):
    def check(box: Path) -> Optional[str]:
        long = [p.name for p in (box / "out").iterdir() if len(p.name.encode()) > expect_bytes]
        return f"file names over {expect_bytes} bytes: {long}" if long else None
    return check


def _inf_pixels(Y: np.ndarray) -> np.ndarray:
    Y[10, 3:5, 3:5] = np.inf
    return Y


def _nodata_at(*pixels):
    def check(box: Path) -> Optional[str]:
        from urdm_plugin.core.io.image import read_image

        v = read_image(str(box / "out" / "Tree.tif"))[1]
        bad = [p for p in pixels if v[p]]
        return f"pixels {bad} are not nodata" if bad else (None if v.sum() == v.size - 4 else "other pixels lost")
    return check


def _warned(word: str):
    """The run's warnings (run.json) mention ``word``."""
    def check(box: Path) -> Optional[str]:
        m = json.loads((box / "out" / "run.json").read_text(encoding="utf-8"))
        said = " ".join(m.get("warnings", []) + m.get("match", {}).get("warnings", []))
        return None if word.lower() in said.lower() and said else f"no warning about '{word}': {said[:200]}"
    return check


def _stale_check(box: Path) -> Optional[str]:
    names = {p.name for p in box.iterdir()}
    want_gone = {n for n in names if n.endswith("-dead")}
    want_kept = {".out.tmp-live", ".out.tmp-nomarker", ".out.old-live", ".out.old-nomarker"} & names
    if want_gone:
        return f"a dead run's leftovers stayed: {sorted(want_gone)}"
    return None if len(want_kept) == 2 else f"a live or unmarked folder was removed ({sorted(names)})"


#: What the inspector and the map sheet do first with a run folder: read its run.json.
MANIFEST_API = ("import sys\n"
                "from urdm_plugin.core.io.manifest import RunManifest\n"
                "from urdm_plugin.core.errors import UrdmError\n"
                "try:\n    RunManifest.read(sys.argv[1])\nexcept UrdmError as e:\n"
                "    print(e.message, file=sys.stderr); sys.exit(2)\n")


def _crafted_run(**changes):
    def setup(box: Path, sc: Scene) -> dict:
        _prev_run("run")(box, sc)
        m = json.loads((box / "run" / "run.json").read_text())
        for key, val in changes.items():
            if key == "file":
                m["endmembers"][0]["file"] = val
            elif key == "image":
                m["inputs"]["image"] = val
            else:
                m[key] = val
        (box / "run" / "run.json").write_text(json.dumps(m))
        return {}
    return setup


def cases() -> list:
    C = []
    ow = "--overwrite"
    # 1. --overwrite never deletes what the run did not write
    C += [Case("overwrite", "the inputs' own folder", _unmix(ow, out="{box}"), word="", cwd="/"),
          Case("overwrite", "'.' (the current folder holds the inputs)", _unmix(ow, out="."), cwd="."),
          Case("overwrite", "'' (empty OUTDIR)", _unmix(ow, out=""), cwd="."),
          Case("overwrite", "an ancestor of the inputs ('..' from data/)",
               _unmix(ow, img="{box}/data/scene.tif", lib="{box}/data/library.csv", out=".."), cwd="data",
               setup=_make({"data/scene.tif": b"", "data/library.csv": b""}), word=""),
          Case("overwrite", "a folder of the user's files", _unmix(ow, out="{box}/docs"),
               setup=_make({"docs/notes.txt": "mine", "docs/a/b.txt": "mine too"})),
          Case("overwrite", "a previous run plus a user's file", _unmix(ow, out="{box}/prev"),
               setup=_seq(_prev_run(), _make({"prev/my_notes.txt": "keep me"}))),
          Case("overwrite", "a run.json of another schema", _unmix(ow, out="{box}/other"),
               setup=_make({"other/run.json": json.dumps({"schema": "someone-else/1"}), "other/a.tif": b"x"})),
          Case("overwrite", "a folder holding the input image", _unmix(ow, img="{box}/prev/scene.tif", out="{box}/prev"),
               setup=_seq(_prev_run(), lambda box, sc: shutil.copy(sc.image, box / "prev" / "scene.tif") and {})),
          Case("overwrite", "OUTDIR is the image file", _unmix(ow, out="{img}")),
          Case("overwrite", "OUTDIR is the library file", _unmix(ow, out="{lib}")),
          Case("overwrite", "a link to the inputs' folder", _unmix(ow, out="{box}/link"),
               setup=lambda box, sc: (box / "link").symlink_to(box) and {}),
          Case("overwrite", "a non-empty folder without --overwrite", _unmix(out="{box}/docs"),
               setup=_make({"docs/notes.txt": "mine"}), word="--overwrite"),
          Case("overwrite", "a previous run is replaced", _unmix(ow, out="{box}/prev"), code=0, out="prev",
               setup=_prev_run(), changes=("prev",), check=_no_tmp_left),
          Case("overwrite", "the home folder's stand-in: a folder with an ENVI scene", _unmix(ow, out="{box}/home"),
               setup=_make({"home/flight.bsq": b"\0" * 64, "home/flight.hdr": "ENVI\n"}))]
    # 2. every write checked
    big = dict(img="{box}/slow.tif")  # 96 × 96: maps of 36 KiB
    C += [Case("writes", "file-size limit 16 KiB", _unmix("--method", "fcls", **big), fsize=16 * 1024,
               word="file-size limit"),
          Case("writes", "file-size limit 1 KiB", _unmix("--method", "fcls", **big), fsize=1024, word="file-size limit"),
          Case("writes", "file-size limit 4 KiB, URDM", _unmix("--quality", "fast", "--lam", "0.3", **big),
               fsize=4 * 1024, word="file-size limit"),
          Case("writes", "OUTDIR below a file", _unmix(out="{img}/out")),
          Case("writes", "OUTDIR name of 300 bytes", _unmix(out="{box}/" + "x" * 300)),
          Case("writes", "OUTDIR below a missing drive-like path", _unmix(out="/proc/urdm-audit/out"))]
    # 3. signals
    slow = _unmix("--method", "tv", "--lam", "0.01", "--max-iter", "5000", img="{box}/slow.tif")
    C += [Case("signals", "SIGTERM mid-run", slow, code=143, signal_after_start=signal.SIGTERM, word="terminated"),
          Case("signals", "SIGHUP mid-run", slow, code=129, signal_after_start=signal.SIGHUP, word="hung up"),
          Case("signals", "SIGINT mid-run", slow, code=130, signal_after_start=signal.SIGINT),
          Case("signals", "SIGHUP mid-run, URDM (Debian's torch links UCX, which took SIGHUP)",
               _unmix("--quality", "fast", "--lam", "0.3", **big), code=129, signal_after_start=signal.SIGHUP,
               word="hung up"),
          Case("signals", "SIGTERM during automatic selection (5,000 spectra)", _unmix(lib="{box}/big.csv"),
               code=143, signal_after_start=signal.SIGTERM, setup=lambda box, sc: sc.big_library(box / "big.csv") and {}),
          Case("signals", "SIGINT during automatic selection (5,000 spectra)", _unmix(lib="{box}/big.csv"),
               code=130, signal_after_start=signal.SIGINT, setup=lambda box, sc: sc.big_library(box / "big.csv") and {}),
          Case("signals", "a killed run's .tmp leftovers", _unmix(), code=0, out="out", setup=_stale("tmp"),
               changes=(".out.tmp-dead",), check=_stale_check),
          Case("signals", "a killed run's .old leftovers", _unmix(), code=0, out="out", setup=_stale("old"),
               changes=(".out.old-dead",), check=_stale_check)]
    # 4. run folders are self-contained
    for label, kw in [("an absolute path", {"file": "/etc/passwd"}), ("'..'", {"file": "../scene.tif"}),
                      ("'sub/../../x'", {"file": "sub/../../x.tif"}), ("/vsicurl/", {"file": "/vsicurl/http://127.0.0.1:9/a.tif"}),
                      ("a URL", {"file": "http://127.0.0.1:9/a.tif"}), ("a Windows path", {"file": "C:\\Windows\\x.tif"}),
                      ("a remote input image", {"image": "/vsicurl/http://127.0.0.1:9/scene.tif"}),
                      ("a zip input image", {"image": "/vsizip//tmp/a.zip/scene.tif"})]:
        C.append(Case("run folders", f"run.json naming {label}", ["{box}/run"], python=MANIFEST_API,
                      setup=_crafted_run(**kw)))
    C.append(Case("run folders", "run.json is not JSON", ["{box}/run"], python=MANIFEST_API,
                  setup=_seq(_prev_run("run"), _make({"run/run.json": "{not json"}))))
    # 5. messages: options
    for opt in [("--lam", "nan"), ("--lam", "inf"), ("--lam", "-1"), ("--lam", "abc"), ("--lam", "1e400"),
                ("--seed", str(2 ** 64)), ("--seed", str(2 ** 70)), ("--seed", "-1"), ("--seed", "abc"),
                ("--memory-mb", "0"), ("--memory-mb", "-5"), ("--memory-mb", "nan"), ("--tile-size", "0"),
                ("--tile-size", "8"), ("--method", "bogus"), ("--endmember", "Unobtainium"), ("--max-endmembers", "0"),
                ("--max-endmembers", "-3"), ("--window", "0", "0", "0", "5"), ("--window", "20", "0", "10", "5"),
                ("--window", "-1", "0", "5", "5"), ("--workers", "0"), ("--workers", "-2"),
                ("--samples", "0"), ("--quality", "bogus"), ("--zeta", "2"), ("--max-iter", "0"),
                ("--mask", "{box}/missing_mask.tif"), ("--scheduler", "tcp://127.0.0.1:9")]:
        method = ["--method", "urdm"] if opt[0] in ("--samples", "--zeta", "--quality") else \
            (["--method", "tv"] if opt[0] == "--max-iter" else [])
        C.append(Case("options", " ".join(opt), _unmix(*method, *opt)))
    C += [Case("options", "--lam for a method without a weight", _unmix("--method", "fcls", "--lam", "0.3")),
          Case("options", "a smaller mask on the same georeferenced grid (placed by georeference)",
               _unmix("--mask", "{box}/mask.tif"), code=0, out="out",
               setup=lambda box, sc: write_cube(box / "mask.tif", np.ones((1, 7, 9), np.float32), None, nodata=None) and {})]
    # 5. messages: the image
    C += [Case("image", "missing", _unmix(img="{box}/nope.tif")),
          Case("image", "a folder", _unmix(img="{box}/adir"), setup=_make({"adir/x.txt": "x"})),
          Case("image", "a text file", _unmix(img="{box}/fake.tif"), setup=_make({"fake.tif": "hello"})),
          Case("image", "zero bytes", _unmix(img="{box}/empty.tif"), setup=_corrupt("empty.tif", "empty")),
          Case("image", "truncated", _unmix(img="{box}/trunc.tif"), setup=_corrupt("trunc.tif", "truncate")),
          Case("image", "random bytes overwritten", _unmix(img="{box}/rand.tif"), setup=_corrupt("rand.tif", "random"),
               code=None, note="exit 0 with feasible maps or exit 2: never abundances out of [0, 1]"),
          Case("image", "no wavelengths (matched by band order, said so)", _unmix(img="{box}/nowl.tif"), code=0,
               out="out", setup=_cube("nowl.tif", lambda Y: Y, wl=None), check=_warned("order")),
          Case("image", "unreadable wavelengths", _unmix(img="{box}/badwl.tif"),
               setup=lambda box, sc: write_cube(box / "badwl.tif", sc.Y, sc.wl,
                                                wl_text=["abc"] * BANDS) and {}, word="wavelength"),
          Case("image", "one band", _unmix(img="{box}/one.tif"), setup=_cube("one.tif", lambda Y: Y[:1])),
          Case("image", "all nodata", _unmix(img="{box}/allnd.tif"),
               setup=_cube("allnd.tif", lambda Y: np.full_like(Y, -9999.0)), word="nodata"),
          Case("image", "all NaN", _unmix(img="{box}/nan.tif"), setup=_cube("nan.tif", lambda Y: np.full_like(Y, np.nan))),
          Case("image", "values of 1e13", _unmix(img="{box}/e13.tif"), setup=_cube("e13.tif", lambda Y: Y * 1e13)),
          Case("image", "values of 1e15", _unmix(img="{box}/e15.tif"), setup=_cube("e15.tif", lambda Y: Y * 1e15)),
          Case("image", "values of 1e30, URDM", _unmix("--method", "urdm", "--quality", "fast", img="{box}/e30.tif"),
               setup=_cube("e30.tif", lambda Y: Y * 1e30)),
          Case("image", "values of -1e7", _unmix(img="{box}/neg.tif"), setup=_cube("neg.tif", lambda Y: Y - 1e7)),
          Case("image", "a band of inf (left out, named)", _unmix(img="{box}/inf.tif"), code=0, out="out",
               check=_warned("band 11"),
               setup=_cube("inf.tif", lambda Y: np.concatenate([Y[:10], np.full_like(Y[10:11], np.inf), Y[11:]]))),
          Case("image", "a few inf pixels (left as nodata)", _unmix("--method", "fcls", img="{box}/infpx.tif"), code=0,
               out="out", setup=_cube("infpx.tif", _inf_pixels), check=_nodata_at((3, 3), (4, 4))),
          Case("image", "library and image share no wavelengths", _unmix(img="{box}/far.tif"),
               setup=lambda box, sc: write_cube(box / "far.tif", sc.Y, sc.wl + 5000.0) and {})]
    # 5. messages: the library
    head = "wavelength_nm,Tree,Soil\n"
    C += [Case("library", "missing", _unmix(lib="{box}/nope.csv")),
          Case("library", "empty file", _unmix(lib="{box}/bad.csv"), setup=_library_text("")),
          Case("library", "header only", _unmix(lib="{box}/bad.csv"), setup=_library_text(head)),
          Case("library", "a word among the numbers", _unmix(lib="{box}/bad.csv"),
               setup=_library_text(head + "500,0.1,0.2\n600,zero,0.3\n700,0.2,0.3\n")),
          Case("library", "NaN reflectance", _unmix(lib="{box}/bad.csv"),
               setup=_library_text(head + "500,0.1,0.2\n600,nan,0.3\n700,0.2,0.3\n")),
          Case("library", "negative wavelengths", _unmix(lib="{box}/bad.csv"),
               setup=_library_text(head + "-500,0.1,0.2\n-400,0.1,0.3\n-300,0.2,0.3\n")),
          Case("library", "wavelengths not increasing", _unmix(lib="{box}/bad.csv"),
               setup=_library_text(head + "700,0.1,0.2\n600,0.1,0.3\n600,0.2,0.3\n")),
          Case("library", "duplicate names", _unmix(lib="{box}/bad.csv"),
               setup=_library_text("wavelength_nm,Tree,Tree\n500,0.1,0.2\n600,0.1,0.3\n700,0.2,0.3\n")),
          Case("library", "one column", _unmix(lib="{box}/bad.csv"), setup=_library_text("wavelength_nm\n500\n600\n")),
          Case("library", "ragged rows", _unmix(lib="{box}/bad.csv"),
               setup=_library_text(head + "500,0.1\n600,0.1,0.3,0.5\n")),
          Case("library", "binary junk", _unmix(lib="{box}/bad.csv"), setup=_make({"bad.csv": bytes(range(256)) * 8})),
          Case("library", "an ENVI .sli without header", _unmix(lib="{box}/lib.sli"), setup=_make({"lib.sli": b"\0" * 400})),
          Case("library", "a spectrum of all zeros", _unmix(lib="{box}/zero.csv"),
               setup=lambda box, sc: write_library(box / "zero.csv", sc.wl, np.c_[sc.E[:, :2], np.zeros(BANDS)]) and {},
               code=None, note="a run (exit 0) or a refusal naming the spectrum"),
          Case("library", "5,000 spectra and a non-empty OUTDIR (refused before selection)",
               _unmix(lib="{box}/big.csv", out="{box}/docs"),
               setup=_seq(lambda box, sc: sc.big_library(box / "big.csv") and {}, _make({"docs/notes.txt": "mine"})))]
    # 5. names
    for label, name in [("300-byte", "M" * 300), ("84 CJK characters", "樹" * 84), ("ANSI escapes", "\x1b[31mRed\x1b[0m"),
                        ("slashes and '..'", "../../etc/passwd"), ("a NUL-free control character", "Tab\tName\x07")]:
        def setup(box, sc, name=name):
            write_library(box / "names.csv", sc.wl, sc.E, [name.replace(",", " "), "Soil", "Water"])
            return {}
        C.append(Case("names", f"a spectrum name with {label}", _unmix(lib="{box}/names.csv"), code=0, out="out",
                      setup=setup, check=_names_ok(255)))
    # 8. minor
    C += [Case("minor", "outputs follow the umask (022)", _unmix(), code=0, out="out", check=_mode_ok),
          Case("minor", "a failed run removes the parent folders it made",
               _unmix(img="{box}/nope.tif", out="{box}/new/a/b/out")),
          Case("minor", "a linked OUTDIR gets the results", _unmix(out="{box}/link"), code=0, out="target",
               setup=lambda box, sc: ((box / "target").mkdir(), (box / "link").symlink_to(box / "target")) and {},
               changes=("target",)),
          Case("minor", "a dangling link as OUTDIR", _unmix(out="{box}/link"),
               setup=lambda box, sc: (box / "link").symlink_to(box / "gone") and {}),
          Case("minor", "a link to a file as OUTDIR", _unmix(out="{box}/link"),
               setup=lambda box, sc: (box / "link").symlink_to(box / USER_FILE) and {}),
          Case("minor", "vca with N larger than the bands", ["vca", "{img}", "999", "{box}/em.csv"]),
          Case("minor", "vca with N = abc", ["vca", "{img}", "abc", "{box}/em.csv"]),
          Case("minor", "vca over an existing CSV", ["vca", "{img}", "3", "{lib}"]),
          Case("minor", "an unknown command", ["frobnicate"])]
    import fault_cases_dask  # issue #25: Dask scheduler/worker addresses and clusters
    import fault_cases_inputs  # issue #22 B: masks, no-data, georeferencing, libraries, dead bands
    import fault_cases_outputs  # issue #22 part A: outputs, signals, exit codes, Processing

    C += fault_cases_inputs.cases()
    C += fault_cases_outputs.cases()
    C += fault_cases_dask.cases()
    return C


# ----------------------------------------------------------------------------- running
def snapshot(box: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(box):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(box))
            st = os.lstat(p)
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", st.st_size, hashlib.sha1(p.read_bytes()).hexdigest())
    return out


def _fill(args: list, box: Path) -> list:
    return [a.format(img=str(box / "scene.tif"), lib=str(box / "library.csv"), box=str(box)) for a in args]


def _start_signal(proc, box: Path, sig, timeout: float = 60.0) -> None:
    """Send ``sig`` once the run is under way (its temporary folder exists, or 1.5 s passed
    for the selection stage, which comes before it)."""
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if any(".tmp-" in p.name for p in box.iterdir()) or (time.time() - t0 > 1.5 and "big" in " ".join(proc.args)):
            time.sleep(0.3)
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(sig)


def run_case(case: Case, base: Path) -> dict:
    box = Path(tempfile.mkdtemp(prefix="case-", dir=base))
    for f in ("scene.tif", "library.csv", "slow.tif"):
        shutil.copy(base / "inputs" / f, box / f)
    sc = copy.copy(SCENE)  # the same spectra and pixels, its files in this sandbox
    sc.image, sc.library, sc.folder = box / "scene.tif", box / "library.csv", box
    (box / USER_FILE).write_text("three years of work", encoding="utf-8")
    if case.setup:
        case.setup(box, sc)
    before = snapshot(box)
    args = _fill(case.argv, box)
    cmd = [sys.executable, "-c", case.python, *args] if case.python else [sys.executable, "-m", "urdm_plugin", *args]
    cwd = box / case.cwd if case.cwd else box

    def limits():
        os.umask(0o022)
        if case.fsize:
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.fsize, case.fsize))  # Python ignores SIGXFSZ: EFBIG

    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=str(cwd),
                            preexec_fn=limits, errors="replace")
    if case.signal_after_start:
        _start_signal(proc, box, case.signal_after_start)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    seconds = time.time() - t0
    after = snapshot(box)
    problems = []
    code = proc.returncode
    if case.code is None:
        if code not in (0, 2):
            problems.append(f"exit {code}")
    elif code != case.code:
        problems.append(f"exit {code}, expected {case.code}")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if code != 0 and len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if code != 0 and case.word and case.word.lower() not in err.lower():
        problems.append(f"the message does not say '{case.word}'")
    if ".tmp-" in err:
        problems.append("the message names the run's temporary folder, not the output folder")
    if "\x1b" in out + err or "Traceback" in err:
        problems.append("a traceback or terminal escape was printed")
    out_dir = case.out or ("out" if case.code is None else None)
    allowed = tuple(c for c in case.changes) + ((out_dir,) if out_dir and code == 0 else ())

    def inside(rel):
        return any(rel == a or rel.startswith(a + os.sep) for a in allowed)

    removed = [k for k in before if k not in after and not inside(k)]
    changed = [k for k in before if k in after and before[k] != after[k] and not inside(k)]
    added = [k for k in after if k not in before and not inside(k)]
    if removed:
        problems.append(f"deleted {removed[:4]}")
    if changed:
        problems.append(f"changed {changed[:4]}")
    if added:
        problems.append(f"left {added[:4]}")
    if case.code is None and code == 0:
        problems += [p for p in [_maps_feasible(box / "out")] if p]
    if case.check and code == (case.code if case.code is not None else code):
        extra = case.check(box)
        if extra:
            problems.append(extra)
    shutil.rmtree(box, ignore_errors=True)
    return {"category": case.category, "case": case.name, "exit": code, "expected": case.code,
            "message": lines[-1][:300] if lines else "", "seconds": round(seconds, 1), "note": case.note,
            "clean": not problems, "problems": problems}


def _maps_feasible(out: Path) -> Optional[str]:
    from urdm_plugin.core.io.image import read_image
    from urdm_plugin.core.io.manifest import RunManifest

    m = RunManifest.read(out)
    A = np.stack([read_image(str(out / e["file"]))[0][0] for e in m.endmembers])
    v = A > -9000
    if (A[v] < -1e-6).any() or (A[v] > 1 + 1e-6).any():
        return f"abundances outside [0, 1]: {A[v].min():.3g} … {A[v].max():.3g}"
    return None


SCENE: Scene


def run(select: str = "") -> dict:
    global SCENE
    chosen = [c for c in cases() if select.lower() in f"{c.category} {c.name}".lower()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="urdm-audit-") as tmp:
        base = Path(tmp)
        (base / "inputs").mkdir()
        SCENE = Scene(base / "inputs")
        for c in chosen:
            r = run_case(c, base)
            rows.append(r)
            mark = "clean" if r["clean"] else "NOT CLEAN: " + "; ".join(r["problems"])
            print(f"[{r['category']}] {r['case']}: exit {r['exit']} ({r['seconds']} s) {mark}\n    {r['message']}",
                  flush=True)
    cats = {}
    for r in rows:
        n, k = cats.get(r["category"], (0, 0))
        cats[r["category"]] = (n + 1, k + r["clean"])
    md = ["| category | cases | clean |", "|---|---|---|"]
    md += [f"| {c} | {n} | {k} |" for c, (n, k) in cats.items()]
    md.append(f"| **all** | {len(rows)} | {sum(r['clean'] for r in rows)} |")
    res = {"cases": rows, "summary": {c: {"cases": n, "clean": k} for c, (n, k) in cats.items()},
           "all_clean": all(r["clean"] for r in rows), "markdown": "\n".join(md)}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only the cases whose category or name holds this text")
    ap.add_argument("--list", action="store_true", help="list the cases and stop")
    a = ap.parse_args(argv)
    if a.list:
        for c in cases():
            print(f"[{c.category}] {c.name}")
        return 0
    res = run(a.k)
    print("\n" + res["markdown"])
    if not a.k:
        out = ROOT / "bench_results" / "fault_audit.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({k: v for k, v in res.items() if k != "markdown"}, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
    return 0 if res["all_clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
