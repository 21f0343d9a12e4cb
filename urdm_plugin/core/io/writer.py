"""Georeferenced output writing, all or nothing.

Writing (:class:`OutputWriter`) puts float32 GeoTIFFs into a temporary sibling folder
and renames it into place at :meth:`OutputWriter.commit`, so a failed or cancelled run
leaves nothing behind. Never calls ``gdal.UseExceptions()``: return values are checked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from osgeo import gdal

from ..errors import InputImageError, OutputError, OutputExistsError, os_error_cause
from .gdal_quiet import QuietGdal
from .image import ImageInfo, check_window, shifted_geotransform

#: nodata value of every float output raster.
NODATA = -9999.0

#: Key and file stem reserved for the residual RMSE raster.
RESIDUAL_KEY = "residual_rmse"


_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def safe_filename(name: str, max_len: int = 100, max_bytes: int = 120) -> str:
    """A file-system-safe stem for ``name``: letters, digits, ``_ - .`` only; never empty,
    never a path, never hidden, never a Windows device name (CON, NUL, ...); at most
    ``max_len`` characters and ``max_bytes`` bytes in UTF-8 (file systems limit a name to
    255 bytes, and a CJK character takes 3: the stem leaves room for suffixes like
    ``_std.tif.aux.xml``)."""
    t = unicodedata.normalize("NFKC", str(name))
    t = re.sub(r"[^\w.-]+", "_", t, flags=re.UNICODE)
    t = re.sub(r"_+", "_", t).strip("._- ")
    t = t[:max_len]
    while len(t.encode("utf-8")) > max_bytes:
        t = t[:-1]
    t = t.rstrip("._- ")
    if not t:
        t = "endmember"
    head, dot, tail = t.partition(".")
    if head.lower() in _WINDOWS_RESERVED:  # Windows reserves "nul" and "nul.txt" alike
        t = head + "_" + dot + tail
    return t


def run_outputs(folder: Path) -> Optional[set]:
    """Names a URDM run wrote into ``folder`` according to its run.json (with the GDAL
    ``.aux.xml`` side files), or None when the folder holds no readable run.json."""
    from .manifest import RunManifest

    try:
        m = RunManifest.read(folder / "run.json")
    except OutputError:
        return None
    names = {"run.json", "endmembers_used.csv"}
    names.update(str(e.get("file")) for e in m.endmembers)
    if m.residual_file:
        names.add(str(m.residual_file))
    for v in m.extra_files.values():
        if isinstance(v, str):
            names.add(v)
        elif isinstance(v, list):
            names.update(str(e.get("file")) for e in v if isinstance(e, dict))
    return names | {n + ".aux.xml" for n in names}


def foreign_entries(folder: Path) -> list:
    """Entries of ``folder`` that are not outputs of the URDM run recorded there (all of
    them when there is no run.json)."""
    allowed = run_outputs(folder) or set()
    try:
        return [e.name for e in folder.iterdir() if e.name not in allowed or not e.is_file() or e.is_symlink()]
    except OSError:
        return ["(unreadable folder)"]


def _is_nonempty_dir(p: Path) -> bool:
    try:
        return p.is_dir() and any(p.iterdir())
    except OSError:
        return True


#: Longest file or folder name most file systems take (ext4, NTFS, APFS: 255 bytes / units).
NAME_MAX_BYTES = 255


def _check_name_lengths(p: Path) -> None:
    for part in p.parts:
        n = len(part.encode("utf-8", "surrogateescape"))
        if n > NAME_MAX_BYTES:
            raise OutputError(f"The output folder name '{part[:40]}…' is {n} bytes long; file systems allow "
                              f"{NAME_MAX_BYTES}", "Choose a shorter folder name")


def output_folder_target(out_dir: Union[str, os.PathLike]) -> Path:
    """The folder a run writes: ``out_dir`` (absolute), or where it points when it is a
    symbolic link to a folder — the results land there and the link keeps pointing at them
    (a run commits by renaming, which would otherwise fail on the link at the very end). A
    link to nothing or to a file is refused now (OutputError)."""
    p = Path(out_dir).absolute()
    _check_name_lengths(p)
    if not p.is_symlink():
        return p
    target = p.resolve()
    if not target.is_dir():
        raise OutputError(f"The output path '{p}' is a symbolic link to '{os.readlink(p)}', which is not "
                          "an existing folder", "Give a folder, or a link to an existing folder")
    return target


def check_output_folder(out_dir: Union[str, os.PathLike], overwrite: bool = False) -> None:
    """Refuse an output folder before any work (OutputError naming the fix): a file, a
    non-empty folder without ``overwrite``, with ``overwrite`` anything but a previous run's
    folder (or the current folder), or a place this user cannot create it in."""
    p = Path(out_dir).absolute()
    _check_name_lengths(p)
    try:
        _check_output_folder(p, overwrite)
    except OSError as exc:  # e.g. a path the file system cannot even look up
        why, fix = os_error_cause(exc)
        raise OutputError(f"The output folder '{p}' cannot be used ({why})", fix) from None


def _check_output_folder(p: Path, overwrite: bool) -> None:
    if p.exists() and not p.is_dir():
        raise OutputError(f"The output path '{p}' is a file, not a folder", "Choose a folder name")
    if not _is_nonempty_dir(p):
        _check_creatable(p)
        return
    if not overwrite:
        raise OutputExistsError(f"The output folder '{p}' already exists and is not empty",
                                "Choose a new or empty folder")
    # overwriting replaces a previous run's folder and nothing else: never a folder that
    # holds anything a run did not write (inputs, documents), nor the working folder
    cwd = Path.cwd().resolve()
    if p.resolve() == cwd or p.resolve() in cwd.parents:
        raise OutputError(f"The output folder '{p}' is the current folder (or holds it); it is not replaced",
                          "Choose a new or empty folder for the results")
    foreign = foreign_entries(p)
    if foreign:
        shown = ", ".join(sorted(foreign)[:5]) + (" …" if len(foreign) > 5 else "")
        raise OutputError(f"The output folder '{p}' holds {len(foreign)} item(s) that no URDM run wrote "
                          f"({shown}); overwriting replaces only a previous run's folder",
                          "Choose a new or empty folder, or move those items out first")
    _check_creatable(p.parent)  # the old run is moved aside there


def _check_creatable(p: Path) -> None:
    """The nearest existing ancestor of ``p`` must be a folder this user can write into."""
    anc = p
    while not anc.exists() and anc.parent != anc:
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"The output folder '{p}' cannot be made: '{anc}' is a file", "Choose a folder name")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"The output folder '{p}' cannot be made: '{anc}' is not writable for you",
                          "Choose a folder you can write to")


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT/SIGTERM/SIGHUP for the block (POSIX; elsewhere a no-op): their Python
    handlers run when it ends, never halfway through it."""
    import signal

    held = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    old = mask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


class OutputWriter:
    """Writes one run's rasters and files, all or nothing.

    Usage::

        with OutputWriter(out_dir, info, overwrite=False, window=None) as w:
            w.add_raster("Tree", "Tree", "abundance")
            w.add_raster(RESIDUAL_KEY, RESIDUAL_KEY, "residual RMSE")
            for blk in ...: w.write("Tree", A_rows, blk.row0, 0)
            w.write_library_csv(matched.as_library())
            w.commit(build_manifest(...))

    Files go into a temporary sibling folder ``.<name>.tmp-*`` on the same file system;
    :meth:`commit` computes statistics, closes the rasters, writes ``run.json`` and renames
    the folder into place (replacing an old one only then, with ``overwrite=True``).
    Leaving the ``with`` block by an exception, or :meth:`abort`, removes the temporary
    folder and leaves any existing output untouched.

    ``window=(col0, row0, w, h)`` (image pixels) writes a sub-extent: the output grid is
    w x h with the shifted geotransform, and ``write`` takes output-grid coordinates.
    Raises :class:`OutputError` when the folder is refused or cannot be written.
    """

    def __init__(self, out_dir: Union[str, os.PathLike], info: ImageInfo, overwrite: bool = False,
                 window: Optional[Sequence[int]] = None):
        self.out_dir = Path(out_dir).absolute()
        self.info = info
        self.overwrite = bool(overwrite)
        if window is None:
            self.col0, self.row0, self.width, self.height = 0, 0, info.width, info.height
        else:
            c0, r0, w, h = (int(v) for v in window)
            try:
                check_window(info, c0, r0, w, h)
            except InputImageError as exc:
                raise OutputError(exc.problem, exc.fix) from None
            self.col0, self.row0, self.width, self.height = c0, r0, w, h
        self.geotransform = shifted_geotransform(info.geotransform, self.col0, self.row0)
        self._check_target()
        parent = self.out_dir.parent
        # folders this run creates above the output: removed again if it fails
        self._made_parents = []
        anc = parent
        while not anc.exists() and anc.parent != anc:
            self._made_parents.append(anc)
            anc = anc.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"Cannot create the output folder in '{parent}' ({os_error_cause(exc)[0]})",
                              os_error_cause(exc)[1]) from None
        self.tmp_dir: Optional[Path] = None  # made on entering the `with` block
        self._datasets: dict = {}
        self._files: dict = {}  # key -> (name, filename)
        self._used = {RESIDUAL_KEY.lower()}
        self._text_files: list = []
        self._done = False

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> OutputWriter:
        # The temporary folder is made here, not in __init__, so that no moment exists
        # where it is on disk but no `with` block would remove it (a signal arriving
        # between construction and entry would otherwise leave it behind).
        parent = self.out_dir.parent
        try:
            remove_stale_partials(parent)
            with _signals_held():  # a signal between mkdtemp's mkdir and this assignment would
                # leave a folder no handler knows about; it is delivered right after instead
                self.tmp_dir = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.tmp-", dir=parent))
            os.chmod(self.tmp_dir, 0o777 & ~_umask())  # mkdtemp makes it 0700 whatever the umask
            _mark_partial(self.tmp_dir)
        except BaseException as exc:
            if self.tmp_dir is not None:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self._done = True
            if isinstance(exc, OSError):
                why, fix = os_error_cause(exc)
                raise OutputError(f"Cannot create the output folder in '{parent}' ({why})", fix) from None
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None or not self._done:
            self.abort()
        return False

    def _check_target(self) -> None:
        check_output_folder(self.out_dir, self.overwrite)

    # -- rasters ---------------------------------------------------------------------------
    def _unique_stem(self, name: str) -> str:
        stem = safe_filename(name)
        cand, k = stem, 2
        while cand.lower() in self._used or cand.lower() in {"run", "endmembers_used"}:
            cand = f"{stem}_{k}"
            k += 1
        self._used.add(cand.lower())
        return cand

    def add_raster(self, key: str, name: str, description: str = "") -> str:
        """Create a float32 GeoTIFF for ``key`` (filled with :data:`NODATA`) and return its path.

        The file is named after ``name`` (made safe and unique); the band description is
        ``name``; ``description`` is stored as the band's metadata ``DESCRIPTION``. The key
        :data:`RESIDUAL_KEY` gets ``residual_rmse.tif``; no other key can take that name.
        """
        self._require_open()
        if key in self._files:
            raise ValueError(f"raster key {key!r} added twice")
        stem = RESIDUAL_KEY if key == RESIDUAL_KEY else self._unique_stem(name)
        fname = stem + ".tif"
        path = self.tmp_dir / fname
        drv = gdal.GetDriverByName("GTiff")
        opts = ["TILED=YES", "COMPRESS=DEFLATE", "PREDICTOR=3", "BIGTIFF=IF_SAFER"]
        with QuietGdal() as q:
            ds = drv.Create(str(path), self.width, self.height, 1, gdal.GDT_Float32, options=opts)
        if ds is None:
            raise OutputError(f"Cannot create '{path}' ({q.last})", "Check free disk space and folder permissions")
        ds.SetGeoTransform(self.geotransform)
        if self.info.crs_wkt:
            ds.SetProjection(self.info.crs_wkt)
        band = ds.GetRasterBand(1)
        # blocks never written are filled with the nodata value when the file is closed
        band.SetNoDataValue(NODATA)
        band.SetDescription(str(name))
        if description:
            band.SetMetadataItem("DESCRIPTION", str(description))
        self._datasets[key] = ds
        self._files[key] = (str(name), fname)
        return str(path)

    def discard(self, keys) -> None:
        """Drop the rasters of ``keys`` before the commit (an optional output the run found it
        does not need, e.g. URDM's scaling maps on a scene without variability)."""
        self._require_open()
        for key in keys:
            ds = self._datasets.pop(key, None)
            ds = None  # noqa: F841 (closes the file)
            _name, fname = self._files.pop(key)
            (self.tmp_dir / fname).unlink(missing_ok=True)

    def write(self, key: str, array2d: np.ndarray, row0: int, col0: int = 0,
              valid: Optional[np.ndarray] = None) -> None:
        """Write ``array2d`` (h, w) at output-grid pixel (col0, row0).

        Non-finite values, and pixels where ``valid`` (h, w) is False, become
        :data:`NODATA`.
        """
        self._require_open()
        ds = self._datasets[key]
        a = np.array(array2d, dtype=np.float32, copy=True)
        if a.ndim != 2:
            raise ValueError(f"write() needs a 2-D array, got shape {a.shape}")
        h, w = a.shape
        if row0 < 0 or col0 < 0 or row0 + h > self.height or col0 + w > self.width:
            raise ValueError(f"block {w}x{h} at ({col0},{row0}) outside the {self.width}x{self.height} output")
        bad = ~np.isfinite(a)
        if valid is not None:
            bad |= ~np.asarray(valid, dtype=bool)
        a[bad] = NODATA
        with QuietGdal() as q:  # GDAL's message goes into ours, not to stderr
            err = ds.GetRasterBand(1).WriteArray(a, int(col0), int(row0))
        if err != 0:
            raise OutputError(f"Writing to '{self._files[key][1]}' failed ({q.last or 'unknown GDAL error'})",
                              "Check free disk space, quotas and the file-size limit of the drive")

    def write_text(self, filename: str, text: str) -> str:
        """Write a text file (UTF-8) into the output folder; ``filename`` must be a plain
        file name (no folders). Returns its temporary path."""
        self._require_open()
        if filename != os.path.basename(filename) or filename in ("", ".", "..") or "\\" in filename:
            raise ValueError(f"write_text needs a plain file name, got {filename!r}")
        path = self.tmp_dir / filename
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            why, fix = os_error_cause(exc, "Check free disk space")
            raise OutputError(f"Cannot write '{self.out_dir / filename}' ({why})", fix) from None
        self._text_files.append(filename)
        return str(path)

    def write_library_csv(self, lib, filename: str = "endmembers_used.csv") -> str:
        """Write the endmembers actually used (e.g. ``MatchedBands.as_library()``) as CSV."""
        from .library import write_library_csv

        self._require_open()
        if filename != os.path.basename(filename):
            raise ValueError(f"plain file name needed, got {filename!r}")
        try:
            path = write_library_csv(self.tmp_dir / filename, lib)
        except OutputError as exc:  # name the file where the user will look for it
            raise OutputError(exc.problem.replace(str(self.tmp_dir), str(self.out_dir)), exc.fix) from None
        self._text_files.append(filename)
        return path

    # -- bookkeeping -----------------------------------------------------------------------
    def filename(self, key: str) -> str:
        """File name (no folder) of raster ``key``."""
        return self._files[key][1]

    def endmember_entries(self) -> list:
        """``[{"name", "file"}]`` for every raster except the residual, in creation order."""
        return [{"name": n, "file": f} for k, (n, f) in self._files.items() if k != RESIDUAL_KEY]

    def residual_file(self) -> Optional[str]:
        return self._files[RESIDUAL_KEY][1] if RESIDUAL_KEY in self._files else None

    def _require_open(self) -> None:
        if self._done:
            raise RuntimeError("OutputWriter already committed or aborted")
        if self.tmp_dir is None:
            raise RuntimeError("OutputWriter is used in a `with` block (it makes its folder on entry)")

    def _close_all(self, stats: bool) -> None:
        """Close every raster. With ``stats`` (the commit path) also write statistics and
        check that each file was written and reads back whole: a full disk, a quota or a
        file-size limit may only surface when GDAL flushes or closes, and a run must not be
        committed over a broken file. Raises :class:`OutputError` naming the file."""
        failed = []
        for key in list(self._datasets):  # keys only: no other reference may keep a file open
            with QuietGdal() as q:
                ds = self._datasets.pop(key)
                if ds is None:
                    continue
                if stats:
                    # all-nodata rasters have no statistics; GDAL reports an error we ignore
                    ds.GetRasterBand(1).ComputeStatistics(False)
                gdal.ErrorReset()
                ds.FlushCache()
                ds = None  # the last reference: GDAL closes the file here, inside QuietGdal
                bad = gdal.GetLastErrorType() >= gdal.CE_Failure
            if bad:
                failed.append((key, q.last))
        self._datasets.clear()
        if not stats:
            return
        for key, (_name, fname) in self._files.items():
            if any(k == key for k, _m in failed):
                continue
            with QuietGdal() as q:
                ds = gdal.Open(str(self.tmp_dir / fname))
                ok = ds is not None and ds.GetRasterBand(1).Checksum() >= 0
                ok = ok and gdal.GetLastErrorType() < gdal.CE_Failure
                ds = None
            if not ok:
                failed.append((key, q.last or "it does not read back"))
        if failed:
            key, msg = failed[0]
            raise OutputError(f"Writing '{self._files[key][1]}' failed ({msg.strip() or 'unknown GDAL error'})"
                              + (f" and {len(failed) - 1} more file(s)" if len(failed) > 1 else ""),
                              "Check free disk space, quotas and the file-size limit of the drive")

    def abort(self) -> None:
        """Drop everything written so far (idempotent)."""
        if self._done:
            return
        self._done = True
        try:
            self._close_all(stats=False)
        finally:
            if self.tmp_dir is not None:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
            for folder in self._made_parents:  # innermost first; only if still empty
                try:
                    folder.rmdir()
                except OSError:
                    break

    def commit(self, manifest) -> str:
        """Finish: statistics, ``run.json`` (a :class:`core.io.manifest.RunManifest`), rename into place.

        Returns the final folder path. Raises :class:`OutputError` when the target
        appeared meanwhile (without overwrite) or the rename fails; the temporary
        folder is removed then and existing outputs are untouched.
        """
        self._require_open()
        try:
            self._close_all(stats=True)
            (self.tmp_dir / "run.json").write_text(manifest.dumps(), encoding="utf-8")
            self._check_target()
            (self.tmp_dir / PARTIAL_MARKER).unlink()
            self._move_into_place()
        except OSError as exc:
            self.abort()
            why, fix = os_error_cause(exc, "Check permissions and free disk space")
            raise OutputError(f"Cannot finish the output folder '{self.out_dir}' ({why})", fix) from None
        except BaseException:
            self.abort()
            raise
        self._done = True
        return str(self.out_dir)

    def _move_into_place(self) -> None:
        target = self.out_dir
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if not target.exists():
            os.rename(self.tmp_dir, target)
            return
        # overwrite=True and a non-empty folder: swap, then delete the old one
        backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, backup)
        _mark_partial(backup)  # a kill before the removal below leaves it recognisable
        try:
            os.rename(self.tmp_dir, target)
        except OSError:
            os.rename(backup, target)
            (target / PARTIAL_MARKER).unlink(missing_ok=True)
            raise
        shutil.rmtree(backup, ignore_errors=True)


# ----------------------------------------------------------------------------- leftovers
#: File inside a temporary run folder (and a replaced run moved aside) naming the process
#: that owns it, so a later run can tell a killed run's leftovers from a live one's.
PARTIAL_MARKER = ".urdm-partial"
_PARTIAL_NAME = re.compile(r"^\..+\.(tmp|old)-[A-Za-z0-9_]+$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mark_partial(folder: Path) -> None:
    import json
    import socket

    (folder / PARTIAL_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}),
                                         encoding="utf-8")


def _owner_gone(marker: Path) -> bool:
    import json
    import socket

    try:
        owner = json.loads(marker.read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not a marker this tool wrote: leave the folder alone
    if host != socket.gethostname() or pid == os.getpid():
        return False  # another machine's run (shared drive) or this very process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def remove_stale_partials(parent: Path) -> list:
    """Remove the leftovers of killed runs in ``parent``: temporary (``.<name>.tmp-*``) and
    moved-aside (``.<name>.old-*``) folders holding this tool's marker whose process, on
    this machine, no longer exists. Nothing else is touched. Returns the removed paths."""
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if _PARTIAL_NAME.match(entry.name) and entry.is_dir() and not entry.is_symlink():
            if _owner_gone(entry / PARTIAL_MARKER):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed
