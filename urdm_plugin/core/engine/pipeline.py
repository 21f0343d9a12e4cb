"""Raster pipeline: one georeferenced hyperspectral image in, abundance rasters out.

``unmix_raster`` is the single engine behind the CLI, the Processing algorithms and the
QGIS dialog. It opens the image, reads the library, picks the endmembers, matches bands,
checks the reflectance scale, validates, solves (per-pixel methods row block by row block,
spatial methods tile by overlapping tile with seamless blending) and writes one GeoTIFF per
endmember, a per-pixel residual RMSE map, the endmembers actually used (CSV) and a
``run.json`` manifest through :class:`core.io.writer.OutputWriter`, which commits the
folder atomically: a failed or cancelled run leaves no outputs behind.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from ...paths import plugin_version
from ..errors import Cancelled, InputImageError, LibraryError, OptionError

ProgressFn = Optional[Callable[[float, str], None]]
CancelFn = Optional[Callable[[], bool]]

#: Libraries with more spectra than this are reduced by automatic selection.
AUTO_SELECT_ABOVE = 20
def default_overlap(tile_size: int) -> int:
    """Tile overlap (pixels) used when none is given: tile_size/8, between 4 and 32."""
    return int(max(4, min(32, int(tile_size) // 8)))
#: Rows sampled across the extent for the scale check and automatic selection.
SAMPLE_ROWS = 32


# ------------------------------------------------------------------ options / result
@dataclass
class UnmixOptions:
    """What to run and how.

    Attributes:
        method: registry id (``fcls``, ``scls``, ``nnls``, ``ucls``, ``tv``, ``urdm``).
        endmembers: library spectrum names to use, or None (whole library, or automatic
            selection when it holds more spectra than the bands support or more than 20).
        max_endmembers: upper bound for automatic selection (None: bands − 1, at most 20).
        quality: urdm speed/accuracy preset (``fast``, ``balanced``, ``best``).
        params: method parameters from the registry, e.g. ``{"lam": "auto"}``.
        seed: random seed (urdm sampling, automatic selection).
        device: ``auto``, ``cpu`` or ``cuda`` (urdm only).
        memory_mb: budget for one block of image data (MiB).
        tile_size: tile edge in pixels for spatial methods.
        tile_overlap: overlap between neighbouring tiles in pixels (None: tile_size/8,
            between 4 and 32).
        overwrite: replace an existing output folder.
        mask_water_bands: drop the atmospheric water-absorption bands.
        window: ``(col0, row0, width, height)`` pixel window of the image, or None (all).
        mask_path: optional mask: a GDAL raster on the image grid (non-zero = process) or
            an OGR vector file whose polygons are rasterised onto the image grid.
        uncertainty_samples: urdm posterior samples; > 1 also writes std maps.
    """

    method: str = "fcls"
    endmembers: Optional[list] = None
    max_endmembers: Optional[int] = None
    quality: str = "balanced"
    params: dict = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    memory_mb: int = 512
    tile_size: int = 256
    tile_overlap: Optional[int] = None
    overwrite: bool = False
    mask_water_bands: bool = True
    window: Optional[tuple] = None
    mask_path: Optional[str] = None
    uncertainty_samples: int = 1


@dataclass
class RunResult:
    """``out_dir``: final output folder; ``manifest``: the run.json content; ``seconds``: wall time."""

    out_dir: str
    manifest: dict
    seconds: float


# ------------------------------------------------------------------ helpers
class _Progress:
    """Maps stage-local fractions onto [0, 1] and polls cancel at every report."""

    def __init__(self, progress: ProgressFn, cancel: CancelFn):
        self.progress = progress
        self.cancel = cancel
        self.lo, self.hi = 0.0, 1.0

    def stage(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi

    def check(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled()

    def __call__(self, fraction: float, message: str) -> None:
        f = self.lo + (self.hi - self.lo) * min(max(float(fraction), 0.0), 1.0)
        if self.progress is not None:
            self.progress(f, message)
        self.check()

    def sub(self, lo: float, hi: float, prefix: str = "") -> Callable[[float, str], None]:
        """A progress callable for a sub-range [lo, hi] of the current stage."""

        def cb(fraction: float, message: str) -> None:
            self(lo + (hi - lo) * min(max(float(fraction), 0.0), 1.0), prefix + message)

        return cb


def _check_options(options: UnmixOptions, info) -> tuple[int, int, int, int]:
    """Validate generic options; return the processing extent (col0, row0, w, h)."""
    if options.memory_mb is None or int(options.memory_mb) < 1:
        raise OptionError(f"memory_mb must be at least 1 (got {options.memory_mb})",
                          "Give a memory budget in MiB, e.g. 512")
    if int(options.tile_size) < 32:
        raise OptionError(f"tile_size must be at least 32 pixels (got {options.tile_size})",
                          "Use e.g. 256")
    if int(options.tile_overlap) < 0 or int(options.tile_overlap) >= int(options.tile_size) // 2:
        raise OptionError(
            f"tile_overlap must be in [0, tile_size/2) (got {options.tile_overlap})",
            "Use e.g. 16 with tile_size 256")
    if int(options.uncertainty_samples) < 1:
        raise OptionError(f"uncertainty_samples must be at least 1 (got {options.uncertainty_samples})",
                          "Use 1 for a single estimate or e.g. 8 for an uncertainty map")
    if options.max_endmembers is not None and int(options.max_endmembers) < 1:
        raise OptionError(f"max_endmembers must be at least 1 (got {options.max_endmembers})",
                          "Give a positive number of endmembers")
    if options.window is None:
        return 0, 0, info.width, info.height
    try:
        c0, r0, w, h = (int(v) for v in options.window)
    except (TypeError, ValueError):
        raise OptionError(f"window must be (col0, row0, width, height); got {options.window!r}",
                          "Give four integers in pixels") from None
    if w < 1 or h < 1 or c0 < 0 or r0 < 0 or c0 + w > info.width or r0 + h > info.height:
        raise OptionError(
            f"window {(c0, r0, w, h)} is not inside the {info.width}×{info.height} image",
            "Give (col0, row0, width, height) within the image's pixel grid")
    return c0, r0, w, h


def load_mask(mask_path: str, info, extent: tuple[int, int, int, int]) -> np.ndarray:
    """Mask (h, w) bool over ``extent`` of the image grid: True = process the pixel.

    A GDAL raster must have the image's size (or exactly the extent's size); its first band
    non-zero (and not its nodata) marks pixels to process. An OGR vector is rasterised
    (``gdal.Rasterize``, all touched = False) onto the image grid; pixels whose centre falls
    inside a polygon are processed. Raises :class:`InputImageError` if unusable.
    """
    from osgeo import gdal

    c0, r0, w, h = extent
    path = str(mask_path)
    if not Path(path).exists():
        raise InputImageError(f"Mask file not found: {path}", "Check the path or leave the mask empty")
    ds = gdal.OpenEx(path, gdal.OF_RASTER)
    if ds is not None and ds.RasterCount >= 1:
        band = ds.GetRasterBand(1)
        if (ds.RasterXSize, ds.RasterYSize) == (info.width, info.height):
            arr = band.ReadAsArray(c0, r0, w, h)
        elif (ds.RasterXSize, ds.RasterYSize) == (w, h):
            arr = band.ReadAsArray()
        else:
            raise InputImageError(
                f"Mask raster {path} is {ds.RasterXSize}×{ds.RasterYSize} pixels but the image is "
                f"{info.width}×{info.height}",
                "Use a mask on the image's pixel grid, or a vector (polygon) mask")
        if arr is None:
            raise InputImageError(f"Cannot read mask raster {path}", "Check that the file is a valid raster")
        m = arr != 0
        nd = band.GetNoDataValue()
        if nd is not None:
            m &= arr != nd
        return m
    vds = gdal.OpenEx(path, gdal.OF_VECTOR)
    if vds is None or vds.GetLayerCount() < 1:
        raise InputImageError(f"Mask {path} is neither a readable raster nor a vector file",
                              "Give a GeoTIFF mask or a polygon file (GeoPackage, Shapefile, GeoJSON)")
    gt = info.geotransform
    sub_gt = (gt[0] + c0 * gt[1] + r0 * gt[2], gt[1], gt[2], gt[3] + c0 * gt[4] + r0 * gt[5], gt[4], gt[5])
    mem = gdal.GetDriverByName("MEM").Create("", w, h, 1, gdal.GDT_Byte)
    mem.SetGeoTransform(sub_gt)
    if info.crs_wkt:
        mem.SetProjection(info.crs_wkt)
    mem.GetRasterBand(1).Fill(0)
    ok = gdal.Rasterize(mem, vds, burnValues=[1])  # 1 on success, 0 on failure
    if not ok:
        raise InputImageError(f"Cannot rasterise the vector mask {path}",
                              "Check that it holds polygons in a known coordinate system")
    return mem.GetRasterBand(1).ReadAsArray() != 0


def _read_sample(info, bands, extent, read_window) -> tuple[np.ndarray, int]:
    """Up to SAMPLE_ROWS evenly spaced rows of the extent as (nb, N) valid pixels."""
    c0, r0, w, h = extent
    rows = np.unique(np.linspace(0, h - 1, min(h, SAMPLE_ROWS)).round().astype(int))
    cols = []
    for r in rows:
        data, valid = read_window(info, bands, c0, r0 + int(r), w, 1)
        cols.append(data.reshape(data.shape[0], -1)[:, valid.reshape(-1)])
    Y = np.concatenate(cols, axis=1) if cols else np.zeros((len(bands), 0), np.float32)
    return Y, int(Y.shape[1])


def _select_endmembers(library, options: UnmixOptions):
    """(library subset, selection report dict) for the names in options.endmembers, or
    (library, None) when no names are given (automatic decision after band matching)."""
    if options.endmembers:
        sub = library.select(list(options.endmembers))  # LibraryError names unknown ones
        return sub, {"mode": "given", "names": list(sub.names)}
    return library, None


# ------------------------------------------------------------------ main entry
def unmix_raster(
    image_path: Union[str, Path],
    library: Any,
    out_dir: Union[str, Path],
    options: Optional[UnmixOptions] = None,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> RunResult:
    """Unmix a georeferenced hyperspectral image into abundance rasters.

    Args:
        image_path: any GDAL raster with wavelengths (GeoTIFF, ENVI, ...).
        library: a spectral library path (CSV or ENVI ``.sli``) or a
            :class:`core.io.library.SpectralLibrary`.
        out_dir: output folder (created; must not exist unless ``options.overwrite``).
        options: :class:`UnmixOptions` (defaults: FCLS, all library spectra).
        progress: ``progress(fraction in [0, 1], message)`` called after every block,
            tile and iteration batch.
        cancel: ``cancel() -> bool`` polled at the same points; True raises
            :class:`core.errors.Cancelled` and no output is left.

    Returns:
        :class:`RunResult` with the final folder, the manifest (run.json content) and the
        wall time in seconds.

    Outputs (float32 GeoTIFFs on the input grid, or the window's sub-grid, nodata −9999):
    one abundance map per endmember, ``residual_rmse.tif`` (per-pixel RMSE over bands,
    reflectance units), ``<name>_std.tif`` for urdm with ``uncertainty_samples > 1``,
    ``endmembers_used.csv`` (spectra on the bands used) and ``run.json``.
    """
    from .. import bands as spectra
    from ..io import image as raster_io
    from ..io.library import SpectralLibrary, read_library
    from ..io.manifest import build_manifest
    from ..io.writer import OutputWriter
    from .arrays import resolve_method, validate_params

    t0 = time.perf_counter()
    options = options or UnmixOptions()
    prog = _Progress(progress, cancel)
    warnings: list[str] = []

    def note(frac: float, msg: str) -> None:
        prog(frac, msg)

    prog.stage(0.0, 0.05)
    spec = resolve_method(options.method)
    given = dict(options.params or {})
    params = validate_params(spec, given)
    if "tile_size" in given:
        options = replace(options, tile_size=int(params["tile_size"]))
    params.pop("tile_size", None)
    if spec.id == "urdm":
        if "quality" not in given and "quality" in params:
            params["quality"] = spec.param("quality").validate(options.quality)
        if "samples" not in given and "samples" in params:
            params["samples"] = spec.param("samples").validate(int(options.uncertainty_samples))
        options = replace(options, uncertainty_samples=int(params.get("samples", 1)))

    if options.tile_overlap is None:
        options = replace(options, tile_overlap=default_overlap(options.tile_size))
    info = raster_io.open_image(str(image_path))
    extent = _check_options(options, info)
    c0, r0, W, H = extent
    note(0.0, f"Opened {Path(str(image_path)).name}: {info.width}×{info.height} pixels, {info.band_count} bands")

    if isinstance(library, SpectralLibrary):
        lib = library
        lib_label = lib.path or "<in-memory library>"
    else:
        lib = read_library(str(library))
        lib_label = str(library)
    if len(lib) < 1:
        raise LibraryError(f"The library {lib_label} holds no spectra", "Give a library with at least one spectrum")

    lib, selection = _select_endmembers(lib, options)
    matched = spectra.match_library(info, lib, mask_water_bands=options.mask_water_bands)
    bands = [int(b) for b in matched.band_indices]
    E = np.asarray(matched.E, dtype=np.float64)
    names = list(matched.names)
    warnings.extend(list(getattr(matched.report, "warnings", []) or []))
    note(0.5, "Bands: " + matched.report.summary())

    mask = None
    if options.mask_path:
        mask = load_mask(options.mask_path, info, extent)
        if not mask.any():
            raise InputImageError(f"The mask {options.mask_path} covers no pixel of the image"
                                  + (" window" if options.window else ""),
                                  "Check that the mask overlaps the image")

    sample, n_sample = _read_sample(info, bands, extent, raster_io.read_window)

    # automatic endmember selection
    n_b = len(bands)
    if selection is None:
        limit = min(AUTO_SELECT_ABOVE, n_b - 1)
        if options.max_endmembers is not None:
            limit = min(limit, int(options.max_endmembers))
        if E.shape[1] > limit:
            if n_sample < max(limit, 2):
                raise InputImageError("Too few valid pixels to select endmembers automatically",
                                      "Name the endmembers to use, or check the image's nodata")
            from ..methods.selection import select_endmembers

            idx, sel_report = _call_select(select_endmembers, sample, E, names, limit, options.seed)
            E = E[:, idx]
            names = [names[i] for i in idx]
            selection = {**sel_report, "mode": "automatic", "from": len(matched.names), "max": limit,
                         "names": names}
            msg = (f"Library holds {len(matched.names)} spectra, more than {limit} the run can use; "
                   f"selected {len(names)} automatically: {', '.join(names)}")
            warnings.append(msg)
            note(0.7, msg)
        else:
            selection = {"mode": "all", "names": names}
    P = E.shape[1]
    spectra.require_bands(n_b, P)

    if n_sample:
        for w in spectra.check_reflectance_scale(sample.astype(np.float64), E):
            warnings.append(w)
            note(0.9, "warning: " + w)
    note(1.0, f"Unmixing {W}×{H} pixels with {spec.id}, {P} endmembers, {n_b} bands")

    write_std = spec.id == "urdm" and int(options.uncertainty_samples) > 1
    lam_seen: list = []
    solver_info: dict = {}
    with OutputWriter(str(out_dir), info, overwrite=options.overwrite,
                                window=options.window and extent) as writer:
        keys = []
        files = []
        for i, name in enumerate(names):
            key = f"em{i}"
            path = writer.add_raster(key, name, f"abundance of {name} ({spec.id})")
            keys.append(key)
            files.append(Path(path).name)
        res_path = writer.add_raster("residual_rmse", "residual_rmse",
                                     "per-pixel residual RMSE over bands (reflectance)")
        std_keys, std_files = [], []
        if write_std:
            for i, name in enumerate(names):
                key = f"std{i}"
                path = writer.add_raster(key, f"{name}_std", f"posterior std of {name} abundance")
                std_keys.append(key)
                std_files.append(Path(path).name)

        prog.stage(0.05, 0.97)
        if spec.spatial:
            n_valid = _solve_tiled(info, bands, E, extent, mask, spec, params, options, writer,
                                   keys, std_keys, prog, lam_seen, solver_info)
        else:
            n_valid = _solve_blocks(info, bands, E, extent, mask, spec, params, options, writer,
                                    keys, prog)
        if n_valid == 0:
            where = "inside the mask" if mask is not None else ("in the window" if options.window else "in the image")
            raise InputImageError(f"Every pixel {where} is nodata; there is nothing to unmix",
                                  "Check the image's nodata value, the window and the mask")
        prog.stage(0.97, 1.0)
        writer.write_library_csv(SpectralLibrary(list(names), matched.wavelengths_nm, E.copy()),
                                 "endmembers_used.csv")

        parameters = {k: _jsonable(v) for k, v in params.items()}
        if lam_seen:
            vals = [float(v) for v in lam_seen if isinstance(v, (int, float))]
            if vals:
                parameters["lam_chosen"] = float(np.median(vals))
                parameters["lam_chosen_per_tile"] = vals
        parameters.update({k: _jsonable(v) for k, v in solver_info.items()})
        opts = asdict(options)
        parameters["options"] = {k: _jsonable(v) for k, v in opts.items()}
        seconds = time.perf_counter() - t0
        extra = {"endmembers_used": "endmembers_used.csv"}
        if write_std:
            extra["std"] = [{"name": n, "file": f} for n, f in zip(names, std_files)]
        manifest = build_manifest(
            spec.id, info, lib_label, matched=matched,
            endmembers=[{"name": n, "file": f} for n, f in zip(names, files)],
            residual_file=Path(res_path).name, extra_files=extra, parameters=parameters,
            version=plugin_version(), seconds=round(seconds, 3))
        manifest["inputs"]["image"] = str(Path(str(image_path)).resolve())
        if not lib_label.startswith("<"):
            manifest["inputs"]["library"] = str(Path(lib_label).resolve())
        manifest["inputs"]["window"] = list(extent) if options.window else None
        manifest["inputs"]["mask"] = str(options.mask_path) if options.mask_path else None
        manifest.update({
            "warnings": warnings,
            "selection": selection,
            "match": _match_report(matched.report),
            "valid_pixels": int(n_valid),
        })
        prog.check()
        final = writer.commit(manifest)
    seconds = time.perf_counter() - t0
    if progress is not None:
        progress(1.0, f"Done in {seconds:.1f} s: {final}")
    return RunResult(out_dir=str(final), manifest=manifest, seconds=seconds)


def _call_select(select_endmembers, sample, E, names, limit, seed):
    """Run core.methods.selection.select_endmembers; return (indices, JSON-able report dict)."""
    res = select_endmembers(sample.astype(np.float64), E, names=names, max_endmembers=limit, seed=seed)
    rep = res.as_dict() if hasattr(res, "as_dict") else {"indices": [int(i) for i in np.asarray(res)]}
    return [int(i) for i in np.asarray(res).ravel()], {k: _jsonable(v) for k, v in rep.items()}


def _match_report(report) -> dict:
    out: dict = {}
    for key in ("n_used", "range_nm", "warnings"):
        if hasattr(report, key):
            out[key] = _jsonable(getattr(report, key))
    dropped = getattr(report, "dropped", None) or []
    out["n_dropped"] = len(dropped)
    out["dropped"] = [[_jsonable(x) for x in d] for d in dropped][:500]
    try:
        out["summary"] = report.summary()
    except Exception:  # noqa: BLE001 - a report without summary is still a report
        pass
    return out


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def _residual_rmse(Y: np.ndarray, E: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Per-pixel RMSE over bands of Y − E A; Y (B, h, w), A (P, h, w) → (h, w)."""
    R = Y.astype(np.float64) - np.tensordot(E, A.astype(np.float64), axes=(1, 0))
    return np.sqrt(np.mean(R * R, axis=0))


def _write_result(writer, keys, A, valid, row0, col0) -> None:
    for k, key in enumerate(keys):
        band = np.where(valid, A[k], _nodata()).astype(np.float32)
        writer.write(key, band, row0, col0)


def _nodata() -> float:
    from ..io.writer import NODATA

    return float(NODATA)


def _iter_blocks(info, bands, extent, memory_mb):
    """(row0 in the extent, data (nb, rows, w) float32, valid (rows, w)) over the extent."""
    from ..io import image as raster_io

    for blk in raster_io.iter_row_blocks(info, bands, memory_mb=int(memory_mb), window=extent,
                                         require_valid=False):
        yield blk.row0, blk.data, blk.valid


def _solve_blocks(info, bands, E, extent, mask, spec, params, options, writer, keys, prog) -> int:
    from .arrays import unmix_array_full

    c0, r0, w, h = extent
    n_valid = 0
    for row0, data, valid in _iter_blocks(info, bands, extent, options.memory_mb):
        rows = data.shape[1]
        valid = np.asarray(valid, dtype=bool)
        if mask is not None:
            valid = valid & mask[row0:row0 + rows]
        f0, f1 = row0 / h, (row0 + rows) / h
        A, _, _ = unmix_array_full(data, E, spec.id, valid=valid, seed=options.seed,
                                   progress=prog.sub(f0, f1, f"rows {row0 + 1}–{row0 + rows}: "),
                                   cancel=prog.cancel, **params)
        A = np.nan_to_num(A, nan=0.0)
        res = _residual_rmse(data, E, A)
        _write_result(writer, keys, A, valid, row0, 0)
        writer.write("residual_rmse", np.where(valid, res, _nodata()).astype(np.float32), row0, 0)
        n_valid += int(valid.sum())
        prog(f1, f"Unmixed rows {row0 + 1}–{row0 + rows} of {h}")
    return n_valid


def _solve_tiled(info, bands, E, extent, mask, spec, params, options, writer, keys, std_keys,
                 prog, lam_seen, solver_info) -> int:
    from ..io import image as raster_io
    from ..methods import weight_selection
    from .arrays import unmix_array_full
    from .tiling import TileBlender, plan_tiles

    c0, r0, w, h = extent
    P = E.shape[1]
    tiles = plan_tiles(h, w, int(options.tile_size), int(options.tile_overlap))
    blender = TileBlender(P, h, w, overlap=int(options.tile_overlap))
    std_blender = TileBlender(P, h, w, overlap=int(options.tile_overlap)) if std_keys else None
    valid_full = np.zeros((h, w), dtype=bool)
    n_t = len(tiles)
    # One noise level for the whole scene, so every tile is regularised alike and the
    # blend stays seamless (urdm also keys its sampling noise to the tile's position).
    shared = {}
    if spec.id in ("urdm", "tv"):
        noise = _scene_noise(info, bands, E, extent, mask)
        if noise is not None:
            sigma, rms, win, win_valid = noise
            if spec.id == "urdm":
                shared.update(sigma_n=sigma, signal_rms=rms)
            else:
                shared["sigma"] = sigma
            solver_info["noise_sigma"] = sigma
            if n_t > 1 and weight_selection.needs_choice(spec.id, params):
                # one weight for the whole scene, chosen on its central window
                prog(0.0, "Choosing the regularisation weight from the scene")
                params, report = weight_selection.choose_scene_weight(
                    spec.id, win, E, win_valid, params, sigma=sigma, seed=options.seed,
                    device=options.device, cancel=prog.cancel)
                for k in ("band_weights", "sigma_n"):  # scene facts, passed beside the parameters
                    if k in params:
                        shared[k] = params.pop(k)
                solver_info["lambda_selection"] = report
    for ti, t in enumerate(tiles):
        ty, tx, th, tw = _tile_box(t)
        data, valid = raster_io.read_window(info, bands, c0 + tx, r0 + ty, tw, th)
        valid = np.asarray(valid, dtype=bool)
        if mask is not None:
            valid = valid & mask[ty:ty + th, tx:tx + tw]
        valid_full[ty:ty + th, tx:tx + tw] |= valid
        f0, f1 = 0.9 * ti / n_t, 0.9 * (ti + 1) / n_t
        if valid.any():
            extra = {"device": options.device, "origin": (ty, tx)} if spec.id == "urdm" else {}
            A, std, tinfo = unmix_array_full(
                data, E, spec.id, valid=valid, seed=options.seed,
                progress=prog.sub(f0, f1, f"tile {ti + 1}/{n_t}: "), cancel=prog.cancel,
                **extra, **shared, **params)
            A = np.nan_to_num(A, nan=0.0)
            lam_seen.append(tinfo.get("lam"))
            for k, v in tinfo.items():  # per-tile solver facts, e.g. iterations, sigma
                if k != "lam" and (v is None or isinstance(v, (int, float, str, bool))):
                    solver_info.setdefault(f"{k}_per_tile", []).append(v)
            for k in ("lambda_selection", "band_weights"):
                if n_t == 1 and k in tinfo:
                    solver_info[k] = tinfo[k]
        else:
            A, std = np.zeros((P, th, tw), np.float32), None
        blender.add(t, A)
        if std_blender is not None:
            std_blender.add(t, np.nan_to_num(std, nan=0.0) if std is not None else np.zeros((P, th, tw), np.float32))
        prog(f1, f"Unmixed tile {ti + 1} of {n_t}")
    A_full = blender.result()
    S_full = std_blender.result() if std_blender is not None else None
    # write abundances + residual row-block by row-block (re-reading Y for the residual)
    n_valid = 0
    done_rows = 0
    for row0, data, _v in _iter_blocks(info, bands, extent, options.memory_mb):
        rows = data.shape[1]
        valid = valid_full[row0:row0 + rows]
        A = A_full[:, row0:row0 + rows]
        _write_result(writer, keys, A, valid, row0, 0)
        if S_full is not None:
            _write_result(writer, std_keys, S_full[:, row0:row0 + rows], valid, row0, 0)
        res = _residual_rmse(data, E, A)
        writer.write("residual_rmse", np.where(valid, res, _nodata()).astype(np.float32), row0, 0)
        n_valid += int(valid.sum())
        done_rows += rows
        prog(0.9 + 0.1 * done_rows / h, f"Wrote rows {row0 + 1}–{row0 + rows} of {h}")
    return n_valid


def _scene_noise(info, bands, E, extent, mask, size: int = 256):
    """(white-noise σ, signal RMS, window data (B, h, w), its valid mask) of the scene
    (reflectance), from a central window of at most size² pixels; None when it holds too
    few valid pixels."""
    from ..io import image as raster_io
    from ..methods.noise import estimate_noise_sigma

    c0, r0, w, h = extent
    ww, hh = min(w, size), min(h, size)
    x0, y0 = (w - ww) // 2, (h - hh) // 2
    data, valid = raster_io.read_window(info, bands, c0 + x0, r0 + y0, ww, hh)
    valid = np.asarray(valid, bool)
    if mask is not None:
        valid &= mask[y0:y0 + hh, x0:x0 + ww]
    if valid.sum() < 16:
        return None  # too little here: each tile estimates its own
    data = np.asarray(data, np.float64)
    return (float(estimate_noise_sigma(data, E, valid=valid)),
            float(np.sqrt(np.mean(np.square(data[:, valid])))), data, valid)


def _tile_box(t) -> tuple[int, int, int, int]:
    """(row0, col0, height, width) of a core.engine.tiling Tile."""
    return int(t.row0), int(t.col0), int(t.height), int(t.width)


# ------------------------------------------------------------------ endmember extraction
def extract_endmembers(image_path: Union[str, Path], n: int, seed: int = 0, max_pixels: int = 200_000,
                       mask_water_bands: bool = True):
    """Extract ``n`` endmember spectra from an image with VCA (core.methods.selection.vca).

    Uses the image's usable bands (ENVI bbl), minus water-vapour bands when
    ``mask_water_bands`` and the image has wavelengths, and a random subset of at most
    ``max_pixels`` valid pixels. Returns a :class:`core.io.library.SpectralLibrary` named
    ``endmember_1..n`` on those bands (wavelengths in nm, or None when the image has none).
    """
    from .. import bands as spectra
    from ..io import image as raster_io
    from ..io.library import SpectralLibrary
    from ..methods.selection import vca

    info = raster_io.open_image(str(image_path))
    keep = np.ones(info.band_count, bool) if info.usable is None else np.asarray(info.usable, bool).copy()
    if mask_water_bands and info.wavelengths_nm is not None:
        keep &= ~spectra.in_water_band(np.asarray(info.wavelengths_nm, float))
    bands = [int(b) for b in np.flatnonzero(keep)]
    n = int(n)
    if n < 1:
        raise OptionError(f"The number of endmembers must be at least 1 (got {n})", "Give a positive number")
    if len(bands) < n:
        raise InputImageError(f"{n} endmembers need at least {n} usable bands; the image has {len(bands)}",
                              "Extract fewer endmembers")
    Y = raster_io.sample_pixels(info, bands, n=int(max_pixels), seed=int(seed))
    if Y.shape[1] < n:
        raise InputImageError(f"The image has only {Y.shape[1]} valid pixels, fewer than {n} endmembers",
                              "Extract fewer endmembers or check the image's nodata")
    out = vca(Y.astype(np.float64), n, seed=int(seed))
    if isinstance(out, tuple):
        out = out[0]
    out = np.asarray(out)
    E = Y[:, out.astype(int)].astype(np.float64) if out.ndim == 1 else out.astype(np.float64)
    wl = None if info.wavelengths_nm is None else np.asarray(info.wavelengths_nm, float)[bands]
    return SpectralLibrary([f"endmember_{i + 1}" for i in range(E.shape[1])], wl, E,
                           str(image_path))
