"""Benchmark scenes: Samson and Jasper Ridge from ../shared/data (as shipped or with noise).

Read directly with GDAL and csv so the benchmark does not depend on the plugin's own I/O
(which it also judges). Returns Y (B, H, W) reflectance, E (B, P), A_ref (P, H, W), names.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("URDM_SHARED_DATA", ROOT.parent / "shared" / "data"))


@dataclass
class RealScene:
    name: str
    Y: np.ndarray
    E: np.ndarray
    A: np.ndarray
    names: list
    wavelengths_nm: np.ndarray


def _read_cube(path: Path) -> np.ndarray:
    from osgeo import gdal

    ds = gdal.Open(str(path))
    if ds is None:
        raise FileNotFoundError(path)
    bands = []
    for i in range(1, ds.RasterCount + 1):
        b = ds.GetRasterBand(i)
        arr = b.ReadAsArray().astype(np.float64)
        arr = arr * (b.GetScale() or 1.0) + (b.GetOffset() or 0.0)
        bands.append(arr)
    return np.stack(bands)


def _read_csv(path: Path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    names = rows[0][1:]
    data = np.array([[float(c) for c in r] for r in rows[1:] if r], dtype=np.float64)
    return data[:, 0], data[:, 1:], names


def load(name: str) -> RealScene:
    """'samson' or 'jasper_ridge' as shipped."""
    folder = SHARED_DATA / name
    if name == "samson":
        Y = _read_cube(folder / "samson.img")
    else:
        Y = _read_cube(folder / "jasper_ridge.tif")
    wl, E, names = _read_csv(folder / f"{name}_endmembers.csv")
    A = _read_cube(folder / f"{name}_gt_abundances.tif")
    return RealScene(name, Y, E, A, names, wl)


def available() -> bool:
    return (SHARED_DATA / "samson").is_dir() and (SHARED_DATA / "jasper_ridge").is_dir()


def with_noise(Y: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """White Gaussian noise at SNR = 10·log10(mean(Y²)/σ²) (seeded)."""
    from urdm_plugin.core.synthetic import add_noise

    return add_noise(Y, snr_db, np.random.default_rng(seed))[0]
