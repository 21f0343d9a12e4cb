"""Data behind the pixel inspector (no widgets): what one pixel, or the mean of a
rectangle, of a finished run looks like, and adding a spectrum to a CSV library.

Everything is read from the run's files (run.json, the abundance rasters,
``endmembers_used.csv`` and the input image), so it works on a reopened project.

:func:`inspect_pixel` returns None for a point outside the unmixed grid and raises a
:class:`~urdm_plugin.core.errors.UrdmError` (shown as is) for nodata pixels and missing
or inconsistent files.

Size note: ~420 lines, the pixel inspector's data side (a pixel or a rectangle read back from a run's
files, the georeferencing it needs, a spectrum added to a library) in one place, apart from its widgets.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
)

from ..core.errors import LibraryError, UrdmError
from ..core.io.image import open_image, read_window
from ..core.window import Window
from ..qgis_layers.runs import RunFileError, RunInfo, load_run

#: Largest rectangle (pixels) averaged by :func:`inspect_rectangle`.
MAX_RECT_PIXELS = 250_000


class PixelNodataError(UrdmError):
    """The inspected pixel (or every pixel of a rectangle) holds no data."""


@dataclass
class PixelInspection:
    """One pixel (or the mean of a rectangle) of a run.

    ``row``/``col``: pixel of the result rasters (top-left one for a rectangle);
    ``image_row``/``image_col``: the same pixel in the input image; ``x``/``y``: pixel
    centre in the raster CRS; spectra are on the run's used bands, sorted by wavelength:
    ``wavelengths_nm`` (or None when the run had none; ``band_numbers`` are the 1-based
    image bands), ``observed`` (scaled input values), ``reconstructed`` = E·a and
    ``residual`` = observed − reconstructed; ``abundances`` {name: fraction} in run order.
    """

    run_json: str
    row: int
    col: int
    image_row: int
    image_col: int
    x: float
    y: float
    wavelengths_nm: Optional[np.ndarray]
    band_numbers: np.ndarray
    observed: np.ndarray
    reconstructed: np.ndarray
    residual: np.ndarray
    abundances: dict
    n_pixels: int = 1
    label: str = ""
    E: np.ndarray = field(default=None, repr=False)
    #: corners of the inspected pixel(s) in the raster CRS (for highlighting), and that CRS
    footprint: list = field(default_factory=list, repr=False)
    crs_wkt: str = field(default="", repr=False)
    #: the input image the observed spectrum was read from (named by run.json)
    image: str = ""

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean(self.residual ** 2))) if self.residual.size else float("nan")

    @property
    def names(self) -> list:
        return list(self.abundances)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _open(path: str, what: str):
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.Open(str(path)) if path else None
    finally:
        gdal.PopErrorHandler()
    if ds is None:
        raise RunFileError(f"Cannot open the {what} '{path}'",
                           "Check that the run folder and the input image are where run.json says "
                           "(run the unmixing again if they were moved or deleted)")
    return ds


def _crs_of(ds) -> QgsCoordinateReferenceSystem:
    wkt = ds.GetProjection() or ""
    return QgsCoordinateReferenceSystem.fromWkt(wkt) if wkt else QgsCoordinateReferenceSystem()


def _transform(point_crs, raster_crs, project=None) -> Optional[QgsCoordinateTransform]:
    if point_crs is None or not point_crs.isValid() or not raster_crs.isValid() or point_crs == raster_crs:
        return None
    ctx = (project or QgsProject.instance()).transformContext()
    return QgsCoordinateTransform(point_crs, raster_crs, ctx)


def _to_pixel(gt, x: float, y: float) -> tuple:
    inv = gdal.InvGeoTransform(tuple(gt))
    if inv is None:
        raise RunFileError("A result raster has a degenerate geotransform", "Run the unmixing again")
    if len(inv) == 2:  # older GDAL: (ok, inv)
        inv = inv[1]
    c = inv[0] + inv[1] * x + inv[2] * y
    r = inv[3] + inv[4] * x + inv[5] * y
    return c, r


def _pixel_center(gt, col: int, row: int) -> tuple:
    cx, cy = col + 0.5, row + 0.5
    return gt[0] + cx * gt[1] + cy * gt[2], gt[3] + cx * gt[4] + cy * gt[5]


def _corner(gt, col: float, row: float) -> tuple:
    return gt[0] + col * gt[1] + row * gt[2], gt[3] + col * gt[4] + row * gt[5]


def _valid(arr: np.ndarray, nodata) -> np.ndarray:
    ok = np.isfinite(arr)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        ok &= arr != nodata
    return ok


class _RunRasters:
    """Opened result rasters + input image of a run and the grid offset between them."""

    def __init__(self, run: RunInfo):
        self.run = run
        self.ab = [(name, _open(path, f"abundance raster of '{name}'")) for name, path in run.endmembers]
        first = self.ab[0][1]
        self.gt = first.GetGeoTransform()
        self.width, self.height = first.RasterXSize, first.RasterYSize
        self.crs = _crs_of(first)
        self.img = _open_image(run.image)
        self.img_gt = self.img.geotransform
        # output pixel (0, 0) in image pixels (outputs are the image grid or a window of it)
        cx, cy = _pixel_center(self.gt, 0, 0)
        c, r = _to_pixel(self.img_gt, cx, cy)
        self.dcol, self.drow = int(math.floor(c)), int(math.floor(r))
        if not run.bands_used:
            raise RunFileError(f"'{run.run_json}' does not list the bands used",
                               "Run the unmixing again to rewrite run.json")
        bad = [b for b in run.bands_used if not 1 <= b <= self.img.band_count]
        if bad:
            raise RunFileError(f"The input image '{run.image}' has {self.img.band_count} bands but the "
                               f"run used band {bad[0]}",
                               "The image was changed after the run: run the unmixing again")

    def locate(self, point: QgsPointXY, point_crs, project=None) -> Optional[tuple]:
        """(col, row, x, y) of the result pixel under ``point``, or None outside the grid."""
        tr = _transform(point_crs, self.crs, project)
        p = QgsPointXY(point)
        if tr is not None:
            try:
                p = tr.transform(p)
            except QgsCsException:
                return None
        c, r = _to_pixel(self.gt, p.x(), p.y())
        if not (math.isfinite(c) and math.isfinite(r)):
            return None
        col, row = int(math.floor(c)), int(math.floor(r))
        if not (0 <= col < self.width and 0 <= row < self.height):
            return None
        return col, row, p.x(), p.y()

    def read_abundances(self, col: int, row: int, w: int, h: int) -> tuple:
        """(P, h, w) float64 and the valid mask (h, w)."""
        out = np.empty((len(self.ab), h, w))
        valid = np.ones((h, w), bool)
        for i, (name, ds) in enumerate(self.ab):
            b = ds.GetRasterBand(1)
            a = b.ReadAsArray(col, row, w, h)
            if a is None:
                raise RunFileError(f"Reading the abundance raster of '{name}' failed "
                                   f"({gdal.GetLastErrorMsg()})", "Check the run folder")
            valid &= _valid(a, b.GetNoDataValue())
            out[i] = a
        return out, valid

    def read_observed(self, col: int, row: int, w: int, h: int) -> tuple:
        """(B_used, h, w) scaled image values at the used bands (run order) and valid mask."""
        run = self.run
        ic, ir = col + self.dcol, row + self.drow
        if ic < 0 or ir < 0 or ic + w > self.img.width or ir + h > self.img.height:
            raise RunFileError(f"The result pixel lies outside the input image '{run.image}'",
                               "The image was changed after the run: run the unmixing again")
        nb = len(run.bands_used)
        scale = np.asarray(run.scale if len(run.scale) == nb else [1.0] * nb, np.float64)
        offset = np.asarray(run.offset if len(run.offset) == nb else [0.0] * nb, np.float64)
        # the core reader (nodata, validity) on the raw values; the run's own scale and offset
        # are applied here in float64, so the observed spectrum is what the run saw, exactly
        raw_info = replace(self.img, scales=[1.0] * self.img.band_count, offsets=[0.0] * self.img.band_count)
        try:
            raw, valid = read_window(raw_info, [b - 1 for b in run.bands_used], Window(ir, ic, h, w))
        except UrdmError as err:
            raise RunFileError(f"Reading the input image '{run.image}' failed: {err.problem}",
                               "Check that the input image is complete and readable") from None
        return raw.astype(np.float64) * scale[:, None, None] + offset[:, None, None], valid


def _open_image(path: str):
    """The run's input image (core.io.image.ImageInfo); RunFileError naming it when unusable."""
    if not path:
        raise RunFileError("The run does not name its input image", "Run the unmixing again")
    try:
        return open_image(path)
    except UrdmError as err:
        raise RunFileError(f"Cannot open the input image '{path}' ({err.problem})",
                           "Move the image back, or keep it beside the run folder") from None


def _endmember_matrix(run: RunInfo, n_bands: int, wl_sorted: Optional[np.ndarray]) -> np.ndarray:
    """E (B_used sorted by wavelength, P) from endmembers_used.csv, columns in run order."""
    from ..core.io.library import read_library

    if not run.library_csv:
        raise RunFileError(f"The run folder '{run.folder}' has no endmembers_used.csv",
                           "Run the unmixing again (it writes the spectra it used)")
    lib = read_library(run.library_csv)
    try:
        lib = lib.select(run.names)
    except LibraryError as exc:
        raise RunFileError(f"endmembers_used.csv in '{run.folder}' does not match run.json ({exc.problem})",
                           "Run the unmixing again") from None
    if lib.spectra.shape[0] != n_bands:
        raise RunFileError(f"endmembers_used.csv has {lib.spectra.shape[0]} values per spectrum but the run "
                           f"used {n_bands} bands", "Run the unmixing again")
    if wl_sorted is not None and lib.wavelengths_nm is not None and not np.allclose(
            lib.wavelengths_nm, wl_sorted, atol=0.05):
        raise RunFileError("The wavelengths in endmembers_used.csv differ from the run's bands",
                           "Run the unmixing again")
    return lib.spectra


def _finish(run: RunInfo, rr: _RunRasters, observed: np.ndarray, a: np.ndarray, col: int, row: int,
            x: float, y: float, n: int, label: str, w: int = 1, h: int = 1) -> PixelInspection:
    bands = np.asarray(run.bands_used, dtype=int)
    wl = None
    if run.wavelengths_nm is not None and len(run.wavelengths_nm) == len(bands):
        wl = np.asarray(run.wavelengths_nm, dtype=np.float64)
        order = np.argsort(wl, kind="stable")
        wl, bands, observed = wl[order], bands[order], observed[order]
    E = _endmember_matrix(run, len(bands), wl)
    recon = E @ a
    return PixelInspection(
        run_json=run.run_json, row=row, col=col, image_row=row + rr.drow, image_col=col + rr.dcol,
        x=x, y=y, wavelengths_nm=wl, band_numbers=bands, observed=observed, reconstructed=recon,
        residual=observed - recon, abundances={name: float(v) for name, v in zip(run.names, a)},
        n_pixels=n, label=label, E=E,
        footprint=[_corner(rr.gt, col + dc, row + dr) for dc, dr in ((0, 0), (w, 0), (w, h), (0, h))],
        crs_wkt=rr.crs.toWkt() if rr.crs.isValid() else "", image=str(run.image),
    )


# ---------------------------------------------------------------------------------------
# public
# ---------------------------------------------------------------------------------------


def inspect_pixel(run_json_path, point: QgsPointXY, point_crs: QgsCoordinateReferenceSystem,
                  project=None) -> Optional[PixelInspection]:
    """Spectra and abundances of the result pixel under ``point`` (given in ``point_crs``;
    an invalid CRS means the rasters' own).

    Returns None when the point lies outside the result rasters; raises
    :class:`PixelNodataError` on a nodata pixel and :class:`RunFileError` when the run's
    files are missing or inconsistent.
    """
    run = load_run(run_json_path)
    rr = _RunRasters(run)
    hit = rr.locate(point, point_crs, project)
    if hit is None:
        return None
    col, row, _, _ = hit
    A, ok_a = rr.read_abundances(col, row, 1, 1)
    if not ok_a[0, 0]:
        raise PixelNodataError(f"Pixel (row {row + 1}, column {col + 1}) has no unmixing result (nodata)",
                               "Click a pixel inside the unmixed area")
    Y, ok_y = rr.read_observed(col, row, 1, 1)
    if not ok_y[0, 0]:
        raise PixelNodataError(f"Pixel (row {row + 1}, column {col + 1}) is nodata in the input image",
                               "Click a pixel with data")
    x, y = _pixel_center(rr.gt, col, row)
    return _finish(run, rr, Y[:, 0, 0], A[:, 0, 0], col, row, x, y, 1,
                   f"pixel row {row + 1}, column {col + 1}")


def inspect_rectangle(run_json_path, rect: QgsRectangle, rect_crs: QgsCoordinateReferenceSystem,
                      project=None) -> Optional[PixelInspection]:
    """Mean spectra and abundances over the valid result pixels whose centres fall in
    ``rect`` (given in ``rect_crs``). None when the rectangle misses the rasters."""
    run = load_run(run_json_path)
    rr = _RunRasters(run)
    tr = _transform(rect_crs, rr.crs, project)
    r = QgsRectangle(rect)
    if tr is not None:
        try:
            r = tr.transformBoundingBox(r)
        except QgsCsException:
            return None
    corners = [_to_pixel(rr.gt, px, py) for px, py in
               ((r.xMinimum(), r.yMinimum()), (r.xMinimum(), r.yMaximum()),
                (r.xMaximum(), r.yMinimum()), (r.xMaximum(), r.yMaximum()))]
    cs = [c for c, _ in corners]
    rs = [rw for _, rw in corners]
    c0 = max(0, int(math.ceil(min(cs) - 0.5)))
    c1 = min(rr.width - 1, int(math.floor(max(cs) - 0.5)))
    r0 = max(0, int(math.ceil(min(rs) - 0.5)))
    r1 = min(rr.height - 1, int(math.floor(max(rs) - 0.5)))
    if c1 < c0 or r1 < r0:
        # a rectangle smaller than a pixel: take the pixel under its centre
        c = r.center()
        return inspect_pixel(run_json_path, c, rr.crs, project)
    w, h = c1 - c0 + 1, r1 - r0 + 1
    if w * h > MAX_RECT_PIXELS:
        raise UrdmError(f"The rectangle covers {w * h:,} pixels (at most {MAX_RECT_PIXELS:,} are averaged)",
                        "Draw a smaller rectangle")
    A, ok_a = rr.read_abundances(c0, r0, w, h)
    Y, ok_y = rr.read_observed(c0, r0, w, h)
    ok = ok_a & ok_y
    n = int(ok.sum())
    if n == 0:
        raise PixelNodataError("Every pixel in the rectangle is nodata", "Draw the rectangle over data")
    y_mean = Y[:, ok].mean(axis=1)
    a_mean = A[:, ok].mean(axis=1)
    x, y = _pixel_center(rr.gt, c0, r0)
    return _finish(run, rr, y_mean, a_mean, c0, r0, x, y, n,
                   f"mean of {n} pixels (rows {r0 + 1}–{r1 + 1}, columns {c0 + 1}–{c1 + 1})", w, h)


def add_spectrum_to_library(csv_path, name: str, wavelengths_nm: Optional[np.ndarray],
                            spectrum: np.ndarray):
    """Append ``spectrum`` named ``name`` as a new column of the CSV library at
    ``csv_path`` (created when missing). Returns the library written.

    Refuses (:class:`LibraryError`) a name already in the library, a library sampled at
    other wavelengths, and a non-CSV file. The file is replaced atomically.
    """
    from ..core.io.library import SpectralLibrary, read_library, write_library_csv

    p = Path(str(csv_path))
    name = str(name or "").strip()
    if not name:
        raise LibraryError("The spectrum has no name", "Give the spectrum a name")
    if p.suffix.lower() not in (".csv", ".txt"):
        raise LibraryError(f"'{p.name}' is not a CSV library", "Choose or create a .csv file")
    values = np.asarray(spectrum, dtype=np.float64).ravel()
    wl = None if wavelengths_nm is None else np.asarray(wavelengths_nm, dtype=np.float64).ravel()
    if p.exists() and p.stat().st_size > 0:
        lib = read_library(p)
        if name.lower() in (n.lower() for n in lib.names):
            raise LibraryError(f"A spectrum named '{name}' is already in {p.name}",
                               "Choose another name")
        same = lib.spectra.shape[0] == values.size and (
            (lib.wavelengths_nm is None and wl is None)
            or (lib.wavelengths_nm is not None and wl is not None and np.allclose(lib.wavelengths_nm, wl, atol=0.05)))
        if not same:
            def desc(w, n):
                return f"{n} values" + (f" at {w[0]:.1f}–{w[-1]:.1f} nm" if w is not None and n else " (no wavelengths)")

            raise LibraryError(f"{p.name} holds spectra of {desc(lib.wavelengths_nm, lib.spectra.shape[0])} "
                               f"but this spectrum has {desc(wl, values.size)}",
                               "Add it to a library made from the same run's bands, or create a new library file")
        new = SpectralLibrary(lib.names + [name], lib.wavelengths_nm,
                              np.column_stack([lib.spectra, values]), str(p))
    else:
        new = SpectralLibrary([name], wl, values[:, None], str(p))
    folder = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(folder))
        os.close(fd)
    except OSError as exc:
        from ..core.errors import OutputError

        raise OutputError(f"Cannot write in '{folder}' ({exc.strerror or exc})",
                          "Choose a folder you can write to") from None
    try:
        write_library_csv(tmp, new)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return new


def input_images_text(run_jsons) -> str:
    """Which input image each run's observed spectra will be read from, as run.json names it
    (shown before any of them is opened; a run.json from elsewhere may name any file)."""
    import html

    from ..qgis_layers.runs import load_run

    lines = []
    for rj in run_jsons:
        try:
            run = load_run(rj)
        except UrdmError as err:
            lines.append(f"{html.escape(os.path.basename(os.path.dirname(str(rj))))}: {html.escape(str(err))}")
            continue
        lines.append(f"<b>{html.escape(os.path.basename(run.folder))}</b>: observed spectra from "
                     f"{html.escape(run.image or '(no input image named)')}")
    return "<br>".join(lines)
