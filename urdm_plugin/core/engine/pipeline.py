"""Raster pipeline: one georeferenced hyperspectral image in, abundance rasters out.

``unmix_raster`` is the single engine behind the CLI, the Processing algorithms and the
QGIS dialog. It decides the run (:func:`core.engine.plan.plan_run`: method, extent, mask,
bands, endmembers, warnings), solves it (per-pixel methods row block by row block, spatial
methods through the one tiler :func:`core.engine.tiling.solve_tiled`) and writes one
GeoTIFF per endmember, a per-pixel residual RMSE map, the endmembers actually used (CSV)
and ``run.json`` (:class:`core.io.manifest.RunManifest`) through
:class:`core.io.writer.OutputWriter`, which commits the folder atomically: a failed or
cancelled run leaves no outputs behind.

Size note: ~470 lines, the one execution of a run (tiled and row-block passes, their executors,
the extent reader they ship, run.json) kept beside each other.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from ...paths import plugin_version
from ..errors import Cancelled, InputImageError
from ..io.manifest import jsonable
from ..window import Window
from .plan import RunPlan, UnmixOptions, plan_run

ProgressFn = Optional[Callable[[float, str], None]]
CancelFn = Optional[Callable[[], bool]]

__all__ = ["RunResult", "UnmixOptions", "unmix_raster"]


@dataclass
class RunResult:
    """``out_dir``: final output folder; ``manifest``: the run.json content; ``seconds``: wall time."""

    out_dir: str
    manifest: dict
    seconds: float


class _Progress:
    """Maps stage-local fractions onto [0, 1] and polls cancel at every report."""

    def __init__(self, progress: ProgressFn, cancel: CancelFn):
        self.progress = progress
        self.cancel = cancel
        self.lo, self.hi = 0.0, 1.0
        #: wall seconds by stage (plan, read, write; solve is the rest of the execution)
        self.seconds: dict = {"plan": 0.0, "read": 0.0, "write": 0.0}

    @contextlib.contextmanager
    def timed(self, stage: str):
        """Add the block's wall time to ``seconds[stage]``."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t

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


def unmix_raster(
    image_path: Union[str, Path],
    library: Any,
    out_dir: Union[str, Path],
    options: Optional[UnmixOptions] = None,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    executor=None,
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
        executor: None (solve here) or a ``concurrent.futures`` executor or
            ``dask.distributed.Client``: the tiles of spatial methods, the row blocks of
            per-pixel ones, are solved there once the scene-wide context is fixed (same
            outputs): each task reads its own window of the image (see :class:`ExtentReader`),
            writing stays here.

    Returns:
        :class:`RunResult` with the final folder, the manifest (run.json content) and the
        wall time in seconds.

    Outputs (float32 GeoTIFFs on the input grid, or the window's sub-grid, nodata −9999):
    one abundance map per endmember, ``residual_rmse.tif`` (per-pixel RMSE over bands,
    reflectance units), ``<name>_std.tif`` for urdm with ``params['samples'] > 1``,
    ``scaling_<name>.tif`` (ELMM scalings ψ) for elmm and urdm unless variability is "none",
    ``endmembers_used.csv`` (spectra on the bands used) and ``run.json``.
    """
    from ..io.gdal_quiet import BudgetedGdalCache
    from ..io.output_policy import check_output_folder, output_folder_target

    t0 = time.perf_counter()
    opts = options or UnmixOptions()
    out_dir = output_folder_target(out_dir)  # a link to a folder: write where it points
    inputs = run_inputs(image_path, library, opts)
    check_output_folder(out_dir, opts.overwrite, inputs)  # before any reading or selection
    prog = _Progress(progress, cancel)
    prog.stage(0.0, 0.05)
    with BudgetedGdalCache(opts.memory_mb):  # GDAL's cache counts against the budget too
        with prog.timed("plan"):  # the pixel sample read for the checks included
            plan = plan_run(str(image_path), library, opts, progress=prog)
        W, H = plan.extent.width, plan.extent.height
        P = plan.E.shape[1]
        prog(1.0, f"Unmixing {W}×{H} pixels with {plan.spec.id}, {P} endmembers, {len(plan.bands)} bands")
        plan.sample = None  # the checks are done; the run's memory is for its blocks and tiles
        if plan.spec.spatial or executor is not None:  # only the local row-block pass pastes them
            plan.held = None
        return _execute(plan, out_dir, prog, t0, executor, inputs)


def run_inputs(image_path, library, opts: UnmixOptions) -> list:
    """The files a run reads (image, library, mask): never written over nor replaced."""
    lib = library if isinstance(library, (str, os.PathLike)) else getattr(library, "path", None)
    return [p for p in (image_path, lib, opts.mask_path) if p]


#: (file stem, description) of each kind of extra per-endmember map (registry.aux_layers).
_AUX_FILES = {
    "std": lambda n: (f"{n}_std", f"posterior std of {n} abundance"),
    "scaling": lambda n: (f"scaling_{n}", f"brightness scaling ψ of {n} (ELMM; 1 = as in the library)"),
}


def _execute(plan: RunPlan, out_dir, prog: _Progress, t0: float, executor=None, inputs=()) -> RunResult:
    from ..io.library import SpectralLibrary
    from ..io.manifest import build_manifest
    from ..io.writer import OutputWriter

    opts, spec, info, names, E = plan.options, plan.spec, plan.info, plan.names, plan.E
    from ..methods.registry import aux_layers

    aux = aux_layers(spec.id, plan.params)  # extra per-endmember maps, in the solver's order
    t_exec = time.perf_counter()
    with OutputWriter(str(out_dir), info, overwrite=opts.overwrite,
                      window=plan.extent if opts.window is not None else None, inputs=inputs) as writer:
        keys = [f"em{i}" for i in range(len(names))]
        files = [Path(writer.add_raster(k, n, f"abundance of {n} ({spec.id})")).name for k, n in zip(keys, names)]
        res_path = writer.add_raster("residual_rmse", "residual_rmse",
                                     "per-pixel residual RMSE over bands (reflectance)")
        std_keys, aux_files = [], {}
        for kind in aux:
            kind_keys = [f"{kind}{i}" for i in range(len(names))]
            aux_files[kind] = [Path(writer.add_raster(k, *_AUX_FILES[kind](n))).name
                               for k, n in zip(kind_keys, names)]
            std_keys += kind_keys

        prog.stage(0.05, 0.97)
        if spec.spatial:
            n_valid, solver_info = _solve_tiled(plan, writer, keys, std_keys, prog, executor)
        else:
            n_valid, solver_info = _solve_blocks(plan, writer, keys, prog, executor), {}
        if n_valid == 0:
            where = "inside the mask" if plan.mask is not None else ("in the window" if opts.window else "in the image")
            _refuse_dead_bands(plan, where)
            raise InputImageError(f"Every pixel {where} is nodata; there is nothing to unmix",
                                  "Check the image's nodata value, the window and the mask")
        if (solver_info.get("variability_decision") or {}).get("model") == "none" and "scaling" in aux_files:
            # URDM found no variability: its scalings are all 1, not worth a layer each
            writer.discard([f"scaling{i}" for i in range(len(names))])
            del aux_files["scaling"]
        prog.stage(0.97, 1.0)
        with prog.timed("write"):  # the rasters closed and read back here, before run.json
            writer.write_library_csv(SpectralLibrary(list(names), plan.matched.wavelengths_nm, E.copy()),
                                     "endmembers_used.csv")
            writer.close_rasters()

        solver_stages = solver_info.pop("seconds_by_stage", None) or {}  # a method's own split of its solve
        parameters = dict(plan.params)
        if "lam" in solver_info:  # the weight the tiles used (chosen or given)
            parameters["lam_chosen"] = solver_info.pop("lam")
            parameters["lam_chosen_per_tile"] = solver_info.pop("lam_per_tile")
        parameters.update(solver_info)
        given = _given_inputs(plan)
        parameters["options"] = dict(asdict(opts), window=given["window"])  # the user's order, as in inputs
        extra = {"endmembers_used": "endmembers_used.csv"}
        for kind, kind_files in aux_files.items():
            extra[kind] = [{"name": n, "file": f} for n, f in zip(names, kind_files)]
        manifest = build_manifest(
            spec.id, info, plan.library_label, matched=plan.matched,
            endmembers=[{"name": n, "file": f} for n, f in zip(names, files)],
            residual_file=Path(res_path).name, extra_files=extra, parameters=jsonable(parameters),
            version=plugin_version(), seconds=round(time.perf_counter() - t0, 3),
            given=given, warnings=list(plan.warnings), selection=jsonable(plan.selection),
            match=_match_report(plan.matched.report), valid_pixels=int(n_valid), fit=jsonable(plan.fit),
            seconds_by_stage=_stage_seconds(prog.seconds, time.perf_counter() - t_exec, solver_stages))
        prog.check()
        final = writer.commit(manifest)
    seconds = time.perf_counter() - t0
    if prog.progress is not None:
        prog.progress(1.0, f"Done in {seconds:.1f} s: {final}")
    return RunResult(out_dir=str(final), manifest=manifest.to_dict(), seconds=seconds)


def _given_inputs(plan: RunPlan) -> dict:
    """run.json's inputs as the user gave them: the image (a sensor product's folder or main
    file, not its derived file), the product and its quality mask, the library file (not an
    in-memory label), the window and the mask."""
    info, opts = plan.info, plan.options
    given = {"image": str(Path(str(info.source_path or info.path)).resolve())}
    if info.product:
        given["product"] = info.product
        given["quality_mask"] = bool(info.quality_mask_path and opts.quality_mask)
    if not plan.library_label.startswith("<"):
        given["library"] = str(Path(plan.library_label).resolve())
    given["window"] = list(plan.extent.xywh()) if opts.window is not None else None  # the user's order
    given["mask"] = str(opts.mask_path) if opts.mask_path else None
    return given


def _stage_seconds(measured: dict, execution: float, solver: dict) -> dict:
    """run.json's ``seconds_by_stage``: plan (the pixel sample included), read, write (the
    rasters written, closed and read back) and solve, the rest of the execution; a method's
    own split of its solve (``solver``: e.g. weight, network, data step) is added beside."""
    out = {k: round(float(v), 3) for k, v in measured.items()}
    out["solve"] = round(max(0.0, execution - measured.get("read", 0.0) - measured.get("write", 0.0)), 3)
    out.update({str(k): round(float(v), 3) for k, v in solver.items()})
    return out


def _refuse_dead_bands(plan: RunPlan, where: str) -> None:
    """When one or a few bands hold no usable value at all, say which (InputImageError)."""
    from ..io.image import dead_bands

    dead = dead_bands(plan.info, plan.bands, plan.extent)
    if not dead:
        return
    wl = plan.info.wavelengths_nm
    named = ", ".join(f"band {b + 1}" + (f" ({wl[b]:.1f} nm)" if wl is not None else "") for b in dead[:5])
    raise InputImageError(f"Every pixel {where} is nodata because {named} hold{'s' if len(dead) == 1 else ''} "
                          "no usable value (nodata, NaN or ±inf) where the other bands do",
                          "Leave the band out (gdal_translate -b with the others, or 0 in the ENVI header's "
                          "bbl) or repair the file")


def _match_report(report) -> dict:
    dropped = report.dropped or []
    return jsonable({"n_used": report.n_used, "range_nm": report.range_nm, "warnings": report.warnings,
                     "n_dropped": len(dropped), "dropped": [list(d) for d in dropped][:500],
                     "summary": report.summary()})


@dataclass(frozen=True)
class ExtentReader:
    """Windows of a run's extent, read from the image file with the mask applied:
    ``reader(window) -> (data (nb, h, w) float32, valid (h, w) bool)`` for a :class:`Window`
    in extent pixels (a :data:`core.engine.tiling.ReadFn`).

    Picklable and small: :meth:`window` gives the reader of one window (its own mask slice),
    which an executor ships instead of the pixels, so a worker process or a Dask worker
    reads its own tile or row block through GDAL (a cluster needs the image on a path every
    worker can open: a shared file system).
    """

    info: Any  # core.io.image.ImageInfo
    bands: tuple
    area: Window  # this reader's part of the image (image pixels)
    mask: Optional[np.ndarray] = None  # (h, w) over this reader's area, True = use

    def __call__(self, window: Window) -> tuple:
        from ..io.image import read_window

        data, valid = read_window(self.info, list(self.bands), window.offset(self.area.row0, self.area.col0))
        valid = np.asarray(valid, bool)
        if self.mask is not None:
            valid = valid & self.mask[window.slices()]
        return data, valid

    def window(self, window: Window) -> ExtentReader:
        """The reader of ``window`` (in this reader's pixels); its coordinates start there."""
        mask = None if self.mask is None else np.ascontiguousarray(self.mask[window.slices()])
        return ExtentReader(self.info, self.bands, window.offset(self.area.row0, self.area.col0), mask)


def extent_reader(plan: RunPlan) -> ExtentReader:
    return ExtentReader(plan.info, tuple(int(b) for b in plan.bands), plan.extent, plan.mask)


#: Pixels per chunk of the residual computation (the float32 temporaries stay in cache).
RESIDUAL_CHUNK = 8192


def _residual_rmse(Y: np.ndarray, E: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Per-pixel RMSE over bands of Y − E A; Y (B, h, w), A (P, h, w) → (h, w) float64.

    In chunks of pixels, in float32 (the data's precision: the RMSE is exact to ~1e-7 of the
    reflectance) with the squares summed in float64 — no (B, h, w) float64 copy."""
    B = Y.shape[0]
    Yf = Y.reshape(B, -1)
    Af = A.reshape(A.shape[0], -1)
    E32 = np.asarray(E, np.float32)
    out = np.empty(Yf.shape[1])
    for s in range(0, Yf.shape[1], RESIDUAL_CHUNK):
        e = s + RESIDUAL_CHUNK
        R = Yf[:, s:e] - E32 @ Af[:, s:e].astype(np.float32)
        out[s:e] = np.square(R).sum(axis=0, dtype=np.float64)
    return np.sqrt(out / B).reshape(Y.shape[1:])


def _write_rows(writer, keys, A, valid, row0) -> None:
    from ..io.writer import NODATA

    for k, key in enumerate(keys):
        writer.write(key, np.where(valid, A[k], NODATA).astype(np.float32), row0, 0)


def _iter_blocks(plan: RunPlan, first: int = 0, count: Optional[int] = None, share: float = 1.0,
                 prog: Optional[_Progress] = None):
    """(row0 in the extent, data (nb, rows, w) float32, valid (rows, w)) over the extent's
    rows ``first … first + count − 1`` (default: all), the mask applied; each block within
    ``share`` of the memory budget; the reading timed into ``prog`` (when given)."""
    from ..io.image import iter_row_blocks

    ext = plan.extent
    count = ext.height - first if count is None else count
    blocks = iter_row_blocks(plan.info, plan.bands, memory_mb=share * float(plan.options.memory_mb),
                             window=Window(ext.row0 + first, ext.col0, count, ext.width), require_valid=False,
                             held=plan.held)
    while True:
        with prog.timed("read") if prog is not None else contextlib.nullcontext():
            blk = next(blocks, None)
        if blk is None:
            return
        valid = np.asarray(blk.valid, bool)
        row0, data = first + blk.row0, blk.data
        if plan.mask is not None:
            valid = valid & plan.mask[row0:row0 + valid.shape[0]]
        del blk
        yield row0, data, valid
        del data, valid  # released before the next block is read (the budget is one block)


def _write_block(plan, writer, keys, A, data, valid, row0) -> int:
    A = np.nan_to_num(A, nan=0.0)
    _write_rows(writer, keys, A, valid, row0)
    _write_rows(writer, ["residual_rmse"], _residual_rmse(data, plan.E, A)[None], valid, row0)
    return int(valid.sum())


def _solve_blocks(plan: RunPlan, writer, keys, prog, executor=None) -> int:
    """Per-pixel methods, row block by row block: here (reading each block), or on an
    executor whose workers read, solve and compute the residual of their own blocks."""
    from ..io.image import row_blocks
    from .tiling import run_in_order

    h, w = plan.extent.height, plan.extent.width
    blocks = []

    def jobs():
        if executor is None:
            for row0, data, valid in _iter_blocks(plan, prog=prog):
                blocks.append((row0, data.shape[1]))
                yield _local_block, (plan, data, valid, prog, row0)
                del data, valid
            return
        reader = extent_reader(plan)
        for row0, rows in row_blocks(plan.info, plan.bands, int(plan.options.memory_mb), plan.extent):
            blocks.append((row0, rows))
            yield solve_rows, (plan.spec.id, reader.window(Window(row0, 0, rows, w)), rows, w, plan.E, plan.params)

    n_valid = 0
    for i, (A, resid, valid) in enumerate(run_in_order(jobs(), executor, prog.cancel)):
        row0, rows = blocks[i]
        A = np.nan_to_num(A, nan=0.0)
        with prog.timed("write"):
            _write_rows(writer, keys, A, valid, row0)
            _write_rows(writer, ["residual_rmse"], resid[None], valid, row0)
        n_valid += int(valid.sum())
        prog((row0 + rows) / h, f"Unmixed rows {row0 + 1}–{row0 + rows} of {h}")
    return n_valid


def solve_rows(method_id: str, reader: ExtentReader, rows: int, width: int, E, params: dict) -> tuple:
    """One row block (``rows`` × ``width``) of a per-pixel method, read through ``reader``
    where this runs (an executor's worker): (A (P, rows, w) float32, residual RMSE
    (rows, w), valid (rows, w))."""
    from .arrays import unmix_block

    data, valid = reader(Window.whole(rows, width))
    A = unmix_block(method_id, data, E, valid, params)
    return A, _residual_rmse(data, E, np.nan_to_num(A, nan=0.0)), valid


def _local_block(plan, data, valid, prog, row0: int):
    """One row block solved here, reporting progress inside the block."""
    from .arrays import unmix_array_full

    h, rows = plan.extent.height, data.shape[1]
    A = unmix_array_full(data, plan.E, plan.spec.id, valid=valid, seed=plan.options.seed,
                         progress=prog.sub(row0 / h, (row0 + rows) / h, f"rows {row0 + 1}–{row0 + rows}: "),
                         cancel=prog.cancel, **plan.params)[0]
    return A, _residual_rmse(data, plan.E, np.nan_to_num(A, nan=0.0)), valid


#: Share of the memory budget a block re-read for the residual takes while tiles are solved:
#: the prior network's working memory and the rows being blended are alive beside it.
WRITE_SHARE = 0.5


def _solve_tiled(plan: RunPlan, writer, keys, std_keys, prog, executor=None) -> tuple:
    """A spatial method in tiles; each band of rows is written as soon as its row of tiles is
    blended (abundances, std, and the residual from the re-read data), so memory stays near
    one row of tiles and one row block, whatever the scene's size."""
    from ..methods.context import SceneContext
    from .tiling import solve_tiled, tile_edge_for_memory

    h, w = plan.extent.height, plan.extent.width
    opts = plan.options
    n_valid = 0

    def write_rows(r0, A, std, v):
        nonlocal n_valid
        for row0, data, _v in _iter_blocks(plan, r0, A.shape[1], WRITE_SHARE, prog):
            rows = slice(row0 - r0, row0 - r0 + data.shape[1])
            with prog.timed("write"):  # the residual's few products counted with its writing
                n_valid += _write_block(plan, writer, keys, A[:, rows], data, v[rows], row0)
                if std_keys:
                    S = np.zeros((len(std_keys), data.shape[1], w), np.float32) if std is None else std[:, rows]
                    _write_rows(writer, std_keys, np.nan_to_num(S), v[rows], row0)
            del data, _v  # the loop's names would hold this block while the next is read
        prog.check()

    read = extent_reader(plan)  # an executor's workers read their own tiles through it
    if executor is None:  # read here: timed (a closure would not travel to a worker)
        reader = read

        def read(window):
            with prog.timed("read"):
                return reader(window)
    res = solve_tiled(plan.spec, read, (h, w), plan.E, plan.params,
                      SceneContext(seed=int(opts.seed), device=opts.device, memory_mb=float(opts.memory_mb)),
                      tile_edge_for_memory(opts.tile_size, opts.memory_mb, plan.E.shape[0]),
                      opts.tile_overlap, prog, prog.cancel, executor, sink=write_rows)
    info = dict(res.info)
    info.pop("tiles", None)
    return n_valid, info
