"""What any entry point may write, and what replacing may remove: one rule for every front end.

The command line (``unmix``, ``vca``), the Processing algorithms (unmix, vca, map sheet), the
dialog and the dominant-material map all ask here before they write:

* never onto an input (image, library, mask, reference library), compared as files
  (``os.path.samefile``, so also through links and other spellings of the path);
* never onto a file this tool did not make: an existing file is replaced only when asked
  (``--overwrite``, Processing's file destinations) *and* its content carries this tool's
  marker (:func:`is_tool_file`) — never because a name is listed somewhere (a run.json can
  be edited to name any file);
* a run folder is replaced only when every entry in it is recognised as this tool's output by
  its content, and none of them is an input of the new run.

Markers: GeoTIFFs carry the metadata item :data:`GEOTIFF_MARK`; CSV libraries and reports end
with the comment line :data:`TEXT_MARK`; run.json is recognised by its schema
(:class:`RunManifest`); GDAL's ``.aux.xml`` side files by their PAM root beside a recognised
file; map sheets by a PNG ``tEXt`` chunk or a PDF trailer comment (:func:`mark_map_sheet`).
No qgis import here.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Iterable, Optional, Union

from ..errors import OutputError, OutputExistsError, os_error_cause
from .folders import check_folder_creatable

PathLike = Union[str, os.PathLike]

#: GeoTIFF metadata item (default domain) on every raster this tool writes; its value is the role.
GEOTIFF_MARK = "URDM_OUTPUT"
#: Last line of every CSV library and text report this tool writes (no CSV delimiter in it).
TEXT_MARK = "# written by URDM unmixing for QGIS"
#: Map sheet markers: a PNG tEXt keyword/value and a PDF comment after the end of file.
PNG_MARK = (b"Software", b"URDM map sheet")
PDF_MARK = b"%URDM map sheet\n"

#: Longest file or folder name most file systems take (ext4, NTFS, APFS: 255 bytes / units).
NAME_MAX_BYTES = 255
#: Longest path Linux takes (PATH_MAX, bytes).
PATH_MAX_BYTES = 4096


# ----------------------------------------------------------------------------- paths
def check_path_text(p: PathLike, what: str = "output") -> Path:
    """``p`` as an absolute Path, refused (OutputError) when it cannot name a file: a name
    over 255 bytes, a path over 4096 bytes, or a current folder that no longer exists."""
    try:
        q = Path(os.fspath(p)).absolute()
    except FileNotFoundError:  # os.getcwd() of a deleted folder
        raise OutputError(f"The current folder no longer exists, so the relative {what} path '{os.fspath(p)}' "
                          "cannot be resolved", "cd into an existing folder, or give an absolute path") from None
    for part in q.parts:
        n = len(part.encode("utf-8", "surrogateescape"))
        if n > NAME_MAX_BYTES:
            raise OutputError(f"The {what} name '{part[:40]}…' is {n} bytes long; file systems allow "
                              f"{NAME_MAX_BYTES}", "Choose a shorter name")
    n = len(str(q).encode("utf-8", "surrogateescape"))
    if n >= PATH_MAX_BYTES:
        raise OutputError(f"The {what} path is {n} bytes long; the system allows {PATH_MAX_BYTES - 1}",
                          "Choose a shorter path")
    return q


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` are the same file or folder (links followed)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def _inputs(inputs: Iterable[Optional[PathLike]]) -> list:
    return [os.fspath(i) for i in inputs if i is not None and not isinstance(i, bool) and str(os.fspath(i))]


def input_at(path: PathLike, inputs: Iterable[Optional[PathLike]]) -> Optional[str]:
    """The input that ``path`` is (same file), or None."""
    for i in _inputs(inputs):
        if os.path.exists(i) and os.path.exists(path) and same_file(path, i):
            return i
    return None


def inputs_inside(folder: PathLike, inputs: Iterable[Optional[PathLike]]) -> list:
    """The inputs that lie inside ``folder`` (real paths compared, links followed)."""
    root = os.path.realpath(folder)
    return [i for i in _inputs(inputs)
            if os.path.realpath(i) == root or os.path.realpath(i).startswith(root.rstrip(os.sep) + os.sep)]


# ----------------------------------------------------------------------------- markers
def _tail(path: Path, n: int = 256) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - n))
        return fh.read()


def _head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _is_marked_geotiff(path: Path) -> bool:
    from osgeo import gdal

    from .gdal_quiet import QuietGdal

    with QuietGdal():
        ds = gdal.OpenEx(str(path), gdal.OF_RASTER | gdal.OF_READONLY, allowed_drivers=["GTiff"])
        ok = ds is not None and bool(ds.GetMetadataItem(GEOTIFF_MARK))
        ds = None
    return ok


def _is_run_json(path: Path) -> bool:
    from .manifest import RunManifest

    try:
        return RunManifest.read(path).schema_version == 1
    except OutputError:
        return False


def _has_png_mark(path: Path) -> bool:
    data = _head(path, 4096)
    key, value = PNG_MARK
    return data.startswith(b"\x89PNG\r\n\x1a\n") and key + b"\0" + value in data


def is_tool_file(path: PathLike) -> bool:
    """Whether the regular file ``path`` was written by this tool, judged by its content (its
    marker), never by its name alone."""
    p = Path(path)
    try:
        if p.is_symlink() or not p.is_file():
            return False
        name = p.name.lower()
        if name == "run.json":
            return _is_run_json(p)
        if name.endswith(".aux.xml"):
            twin = p.with_name(p.name[: -len(".aux.xml")])
            return _head(p).lstrip().startswith(b"<PAMDataset") and is_tool_file(twin)
        head = _head(p, 8)
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _is_marked_geotiff(p)
        if head.startswith(b"\x89PNG"):
            return _has_png_mark(p)
        if head.startswith(b"%PDF"):
            return _tail(p).rstrip(b"\r\n").endswith(PDF_MARK.rstrip())
        return _tail(p).decode("utf-8", "replace").rstrip().endswith(TEXT_MARK)
    except OSError:
        return False


def mark_map_sheet(path: PathLike) -> None:
    """Put the map-sheet marker into an exported PNG (a ``tEXt`` chunk after ``IHDR``) or
    PDF (a comment after ``%%EOF``, which PDF readers skip)."""
    p = Path(path)
    head = _head(p, 8)
    if head.startswith(b"%PDF"):
        with open(p, "ab") as fh:
            fh.write(b"\n" + PDF_MARK)
        return
    if not head.startswith(b"\x89PNG\r\n\x1a\n"):
        return
    data = p.read_bytes()
    ihdr_end = 8 + 12 + struct.unpack(">I", data[8:12])[0]
    body = b"tEXt" + PNG_MARK[0] + b"\0" + PNG_MARK[1]
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    tmp = p.with_name(f".{p.name}.mark")
    tmp.write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])
    os.replace(tmp, p)


# ----------------------------------------------------------------------------- single files
def check_output_file(path: PathLike, inputs: Iterable[Optional[PathLike]] = (), overwrite: bool = False,
                      what: str = "output file") -> Path:
    """Refuse, before any work, an output file (OutputError naming the fix): an input of the
    run, a folder, an existing file without ``overwrite``, an existing file this tool did not
    write (even with ``overwrite``), or a place this user cannot create it in. Returns the
    absolute path."""
    p = check_path_text(path, what)
    try:
        hit = input_at(p, inputs)
        if hit is not None:
            raise OutputError(f"The {what} '{p}' is an input of this run ('{hit}'); it is never written over",
                              "Choose another file name for the output")
        if p.is_dir():
            raise OutputError(f"The {what} '{p}' is a folder", "Give a file name")
        if p.exists() or p.is_symlink():
            if not overwrite:
                raise OutputExistsError(f"The {what} '{p}' already exists", "Choose another file name")
            if not is_tool_file(p):
                raise OutputError(f"The {what} '{p}' exists and was not written by this tool; it is not "
                                  "replaced", "Choose another file name, or move that file away first")
        check_folder_creatable(p.parent)
    except OSError as exc:
        why, fix = os_error_cause(exc)
        raise OutputError(f"The {what} '{p}' cannot be used ({why})", fix) from None
    return p


# ----------------------------------------------------------------------------- run folders
def foreign_entries(folder: PathLike) -> list:
    """Entries of ``folder`` that are not this tool's output, judged by content (all of them
    when none is recognised)."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return ["(unreadable folder)"]
    return [e.name for e in entries if not is_tool_file(e)]


def is_empty_folder(p: Path, ignore: Optional[Path] = None) -> bool:
    """``p`` is an existing folder with nothing in it (but ``ignore``)."""
    try:
        return p.is_dir() and not any(e for e in p.iterdir() if ignore is None or e.name != ignore.name)
    except OSError:
        return False


def output_folder_target(out_dir: PathLike) -> Path:
    """The folder a run writes: ``out_dir`` (absolute), or where it points when it is a
    symbolic link to a folder — the results land there and the link keeps pointing at them.
    A link to nothing or to a file is refused now (OutputError)."""
    p = check_path_text(out_dir, "output folder")
    if not p.is_symlink():
        return p
    target = p.resolve()
    if not target.is_dir():
        raise OutputError(f"The output path '{p}' is a symbolic link to '{os.readlink(p)}', which is not "
                          "an existing folder", "Give a folder, or a link to an existing folder")
    return target


def check_output_folder(out_dir: PathLike, overwrite: bool = False, inputs: Iterable[Optional[PathLike]] = (),
                        ignore: Optional[Path] = None) -> None:
    """Refuse an output folder before any work (OutputError naming the fix): a file, a
    mount point, a non-empty folder without ``overwrite``, with ``overwrite`` anything but a
    previous run's folder (recognised by content) or one holding an input of this run, or a
    place this user cannot create it in. ``ignore``: this run's own temporary folder inside it."""
    p = check_path_text(out_dir, "output folder")
    try:
        _check_output_folder(p, overwrite, list(inputs), ignore)
    except OSError as exc:  # e.g. a path the file system cannot even look up
        why, fix = os_error_cause(exc)
        raise OutputError(f"The output folder '{p}' cannot be used ({why})", fix) from None


def _check_output_folder(p: Path, overwrite: bool, inputs: list, ignore: Optional[Path]) -> None:
    if p.exists() and not p.is_dir():
        raise OutputError(f"The output path '{p}' is a file, not a folder", "Choose a folder name")
    if not p.exists() or is_empty_folder(p, ignore):
        check_folder_creatable(p)  # os.access and a probe file in its nearest existing ancestor
        return
    if not overwrite:
        raise OutputExistsError(f"The output folder '{p}' already exists and is not empty",
                                "Choose a new or empty folder")
    cwd = Path.cwd().resolve()
    if p.resolve() == cwd or p.resolve() in cwd.parents:
        raise OutputError(f"The output folder '{p}' is the current folder (or holds it); it is not replaced",
                          "Choose a new or empty folder for the results")
    inside = inputs_inside(p, inputs)
    if inside:
        raise OutputError(f"The output folder '{p}' holds an input of this run ('{inside[0]}'); it is not "
                          "replaced", "Choose a new or empty folder for the results")
    if os.path.ismount(p):
        raise OutputError(f"The output folder '{p}' is a mount point; a previous run there cannot be replaced",
                          "Choose a folder inside it")
    foreign = [n for n in foreign_entries(p) if ignore is None or n != ignore.name]
    if foreign:
        shown = ", ".join(sorted(foreign)[:5]) + (" …" if len(foreign) > 5 else "")
        raise OutputError(f"The output folder '{p}' holds {len(foreign)} item(s) that this tool did not write "
                          f"({shown}); overwriting replaces only a previous run's folder",
                          "Choose a new or empty folder, or move those items out first")
    check_folder_creatable(p.parent)  # the old run is moved aside there

