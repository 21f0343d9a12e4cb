"""The peer benchmark's scene: a float32 GeoTIFF of P synthetic spectra mixed by synthetic
abundance maps, with 30 dB white noise, written in full-width row chunks (bounded memory)
as band- or pixel-interleaved, compressed (DEFLATE) or not, tiled 256 × 256.

``write_scene(path, size, bands, P, interleave, compress)`` writes the image, its library
(``<path>.csv``) and its truth (``<path>.truth.npy``, (P, size, size) float32) and returns
the library path. Seeded: the same arguments give the same pixels in every layout, so the
layouts compare the I/O alone.

    .venv/bin/python -m benchmarks.peer_scene scene.tif --size 1024 --interleave band --compress deflate
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SNR_DB = 30.0
CHUNK_ROWS = 256


def write_scene(path, size: int = 1024, bands: int = 200, P: int = 6, interleave: str = "band",
                compress: str = "deflate") -> Path:
    """Write the scene (see the module docstring); returns the library CSV's path."""
    from osgeo import gdal, osr

    from urdm_plugin.core import synthetic
    from urdm_plugin.core.io.library import SpectralLibrary, write_library_csv

    path = Path(path)
    rng = np.random.default_rng(synthetic.BENCHMARK_SEED_BASE + 1700 + size)
    wl = np.linspace(400.0, 2500.0, bands)
    E = synthetic.synthetic_spectra(P, wl, rng).astype(np.float32)
    A = synthetic.abundance_maps(P, size, size, rng, "regions")  # (P, H, W) float32
    Af = A.reshape(P, -1).astype(np.float64)
    # mean((E A)²) = trace(EᵀE · A Aᵀ) / (B N): the noise level without the full clean cube
    power = float(np.trace((E.T.astype(np.float64) @ E) @ (Af @ Af.T)) / (bands * Af.shape[1]))
    sigma = np.float32(np.sqrt(power / 10 ** (SNR_DB / 10)))
    opts = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", f"INTERLEAVE={interleave.upper()}", "BIGTIFF=YES"]
    if compress != "none":
        opts += [f"COMPRESS={compress.upper()}", "PREDICTOR=1"]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, bands, gdal.GDT_Float32, opts)
    ds.SetGeoTransform((500000.0, 30.0, 0.0, 4500000.0, 0.0, -30.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(bands):
        ds.GetRasterBand(b + 1).SetDescription(f"{wl[b]:.2f} nm")
    noise = np.random.default_rng(synthetic.BENCHMARK_SEED_BASE + 1800 + size)
    for r in range(0, size, CHUNK_ROWS):
        h = min(CHUNK_ROWS, size - r)
        Y = np.tensordot(E, A[:, r:r + h], axes=(1, 0))  # (B, h, W)
        Y += sigma * noise.standard_normal(Y.shape, dtype=np.float32)
        ds.WriteRaster(0, r, size, h, Y.astype(np.float32).tobytes(), buf_type=gdal.GDT_Float32)
        del Y
    ds = None
    np.save(str(path) + ".truth.npy", A)
    lib = path.with_suffix(".csv")
    write_library_csv(lib, SpectralLibrary([f"m{i}" for i in range(P)], wl, E.astype(np.float64)))
    return lib


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--P", type=int, default=6)
    ap.add_argument("--interleave", choices=("band", "pixel"), default="band")
    ap.add_argument("--compress", choices=("deflate", "none"), default="deflate")
    a = ap.parse_args(argv)
    print(write_scene(a.path, a.size, a.bands, a.P, a.interleave, a.compress))
    return 0


if __name__ == "__main__":
    sys.exit(main())
