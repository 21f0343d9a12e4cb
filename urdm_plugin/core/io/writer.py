"""Georeferenced output writing, all or nothing.

Writing (:class:`OutputWriter`) puts float32 GeoTIFFs into a temporary sibling folder
and renames it into place at :meth:`OutputWriter.commit`, so a failed or cancelled run
leaves nothing behind. Never calls ``gdal.UseExceptions()``: return values are checked.
What may be written where is :mod:`core.io.output_policy`; the removal of killed runs'
temporary folders is :mod:`core.io.leftovers`; file stems are :mod:`core.io.safe_names`.

Size note: ~440 lines, one class: the all-or-nothing writer, whose create, write, close-and-check,
commit and abort paths must be read together.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from osgeo import gdal

from ..errors import InputImageError, OutputError, os_error_cause
from ..signals import held as held_signals
from ..window import Window
from .gdal_quiet import QuietGdal, errors_as_values, native_stderr_captured
from .image import ImageInfo, check_window, shifted_geotransform
from .leftovers import PARTIAL_MARKER, mark_partial, remove_stale_partials
from .output_policy import GEOTIFF_MARK, check_output_folder, is_empty_folder
from .safe_names import safe_filename

#: nodata value of every float output raster.
NODATA = -9999.0

#: Key and file stem reserved for the residual RMSE raster.
RESIDUAL_KEY = "residual_rmse"


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

    ``window`` (a :class:`~urdm_plugin.core.window.Window` of the image) writes a sub-extent:
    the output grid is the window's, with the shifted geotransform, and ``write`` takes
    output-grid coordinates.
    Raises :class:`OutputError` when the folder is refused or cannot be written.
    """

    @errors_as_values()
    def __init__(self, out_dir: Union[str, os.PathLike], info: ImageInfo, overwrite: bool = False,
                 window: Optional[Window] = None, inputs: Sequence = ()):
        self.out_dir = Path(out_dir).absolute()
        self.info = info
        self.overwrite = bool(overwrite)
        self.inputs = list(inputs)  # files that must never be written over (image, library, mask)
        self.tmp_dir: Optional[Path] = None  # made on entering the `with` block
        self.in_place = False  # an existing empty folder: filled in place (its mode and group kept)
        self.window = Window.whole(info.height, info.width) if window is None else window
        try:
            check_window(info, self.window)
        except InputImageError as exc:
            raise OutputError(exc.problem, exc.fix) from None
        self.width, self.height = self.window.width, self.window.height
        self.geotransform = shifted_geotransform(info.geotransform, self.window)
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
        self._datasets: dict = {}
        self._files: dict = {}  # key -> (name, filename)
        self._used = {RESIDUAL_KEY.lower()}
        self._text_files: list = []
        self._done = False
        self._rasters_closed = False

    # -- context manager ------------------------------------------------------------------
    @errors_as_values()
    def __enter__(self) -> OutputWriter:
        # The temporary folder is made here, not in __init__, so that no moment exists
        # where it is on disk but no `with` block would remove it (a signal arriving
        # between construction and entry would otherwise leave it behind).
        # An existing empty folder is used in place: the temporary folder goes inside it (files
        # made there take its group, e.g. setgid 2770) and its entries move up at commit.
        self.in_place = is_empty_folder(self.out_dir) and not self.out_dir.is_symlink()
        parent = self.out_dir if self.in_place else self.out_dir.parent
        prefix = ".run" if self.in_place else f".{self.out_dir.name}"
        try:
            remove_stale_partials(parent)
            with held_signals():  # a signal between mkdtemp's mkdir and this assignment would
                # leave a folder no handler knows about; it is delivered right after instead
                self.tmp_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}.tmp-", dir=parent))
            os.chmod(self.tmp_dir, (0o777 & ~_umask()) | (os.stat(parent).st_mode & 0o2000))
            mark_partial(self.tmp_dir)
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
        check_output_folder(self.out_dir, self.overwrite, self.inputs,
                            ignore=self.tmp_dir if self.in_place else None)

    # -- rasters ---------------------------------------------------------------------------
    def _unique_stem(self, name: str) -> str:
        stem = safe_filename(name)
        cand, k = stem, 2
        while cand.lower() in self._used or cand.lower() in {"run", "endmembers_used"}:
            cand = f"{stem}_{k}"
            k += 1
        self._used.add(cand.lower())
        return cand

    @errors_as_values()
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
        set_georeferencing(ds, self.info, self.window)
        band = ds.GetRasterBand(1)
        # blocks never written are filled with the nodata value when the file is closed
        band.SetNoDataValue(NODATA)
        band.SetDescription(str(name))
        ds.SetMetadataItem(GEOTIFF_MARK, "residual" if key == RESIDUAL_KEY else "abundance")
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

    @errors_as_values()
    def write(self, key: str, array2d: np.ndarray, row0: int, col0: int = 0,
              valid: Optional[np.ndarray] = None) -> None:
        """Write ``array2d`` (h, w) at output-grid pixel (row0, col0).

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

    @errors_as_values()
    def _close_all(self, stats: bool) -> None:
        """Close every raster. With ``stats`` (the commit path) also write statistics and
        check that each file was written and reads back whole: a full disk, a quota or a
        file-size limit may only surface when GDAL flushes or closes, and a run must not be
        committed over a broken file. Raises :class:`OutputError` naming the file."""
        failed = []
        with native_stderr_captured() as native:  # libtiff's own lines (GDAL 3.10) go into ours
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
        native_first = next((ln.strip() for ln in "".join(native).splitlines() if ln.strip()), "")
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
            msg = "; ".join(m for m in (msg.strip(), native_first) if m)
            raise OutputError(f"Writing '{self._files[key][1]}' failed ({msg or 'unknown GDAL error'})"
                              + (f" and {len(failed) - 1} more file(s)" if len(failed) > 1 else ""),
                              "Check free disk space, quotas and the file-size limit of the drive")

    @errors_as_values()
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

    def close_rasters(self) -> None:
        """Write statistics, close every raster and check it reads back whole (what
        :meth:`commit` does first; call it earlier to time it). Idempotent."""
        self._require_open()
        if not self._rasters_closed:
            try:
                self._close_all(stats=True)
            except BaseException:
                self.abort()
                raise
            self._rasters_closed = True

    def commit(self, manifest) -> str:
        """Finish: statistics, ``run.json`` (a :class:`core.io.manifest.RunManifest`), rename into place.

        Returns the final folder path. Raises :class:`OutputError` when the target
        appeared meanwhile (without overwrite) or the rename fails; the temporary
        folder is removed then and existing outputs are untouched.
        """
        self._require_open()
        try:
            if not self._rasters_closed:
                self._close_all(stats=True)
                self._rasters_closed = True
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
        if self.in_place:
            self._move_entries_up()
            return
        if not target.exists():
            os.rename(self.tmp_dir, target)
            return
        # overwrite=True and a non-empty folder: swap, then delete the old one
        backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.chmod(self.tmp_dir, os.stat(target).st_mode & 0o7777)  # the replaced folder's mode kept
        os.rename(target, backup)
        mark_partial(backup)  # a kill before the removal below leaves it recognisable
        try:
            os.rename(self.tmp_dir, target)
        except OSError:
            os.rename(backup, target)
            (target / PARTIAL_MARKER).unlink(missing_ok=True)
            raise
        shutil.rmtree(backup, ignore_errors=True)

    def _move_entries_up(self) -> None:
        """In place: each file renamed from the temporary folder into the output folder,
        run.json last (a reader sees a run only when it is whole); on failure the moved ones
        go back, and the temporary folder is removed by the caller's abort."""
        names = sorted((e.name for e in self.tmp_dir.iterdir()), key=lambda n: n == "run.json")
        moved = []
        try:
            for n in names:
                if (self.out_dir / n).exists():
                    raise FileExistsError(errno.EEXIST, "a file appeared meanwhile", str(self.out_dir / n))
                os.rename(self.tmp_dir / n, self.out_dir / n)
                moved.append(n)
        except OSError:
            for n in moved:
                os.rename(self.out_dir / n, self.tmp_dir / n)
            raise
        self.tmp_dir.rmdir()


# ----------------------------------------------------------------------------- georeferencing
def set_georeferencing(ds, info: ImageInfo, window: Optional[Window] = None) -> None:
    """Give the output ``ds`` (the :class:`Window` of the image grid it covers; None: all)
    the image's own georeferencing: its geotransform (shifted) and CRS, its GCPs and RPCs
    (pixel/line shifted) — and none when the image has none (no invented pixel-size-1 grid)."""
    window = Window.whole(info.height, info.width) if window is None else window
    col0, row0 = window.col0, window.row0
    if getattr(info, "georeferenced", True):
        ds.SetGeoTransform(shifted_geotransform(info.geotransform, window))
        if info.crs_wkt:
            ds.SetProjection(info.crs_wkt)
    gcps = getattr(info, "gcps", ())
    if gcps:
        ds.SetGCPs([gdal.GCP(x, y, z, px - col0, ln - row0) for px, ln, x, y, z in gcps], info.gcp_wkt)
    rpc = dict(getattr(info, "rpc", None) or {})
    if rpc:
        for key, shift in (("LINE_OFF", row0), ("SAMP_OFF", col0)):
            if key in rpc and shift:
                try:
                    rpc[key] = repr(float(str(rpc[key]).split()[0]) - shift)
                except ValueError:
                    pass
        ds.SetMetadata(rpc, "RPC")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
