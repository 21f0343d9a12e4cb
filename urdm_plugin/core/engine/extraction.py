"""Endmembers from the image itself (VCA), on the bands any run would use."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from ..errors import InputImageError, OptionError


def extract_endmembers(image_path: Union[str, Path], n: int, seed: int = 0, max_pixels: int = 200_000,
                       mask_water_bands: bool = True):
    """Extract ``n`` endmember spectra from an image with VCA (core.methods.selection.vca).

    Uses the image's usable bands (ENVI bbl), minus water-vapour bands when
    ``mask_water_bands`` and the image has wavelengths, and a random subset of at most
    ``max_pixels`` valid pixels. Returns a :class:`core.io.library.SpectralLibrary` named
    ``endmember_1..n`` on those bands (wavelengths in nm, or None when the image has none).
    """
    from ..bands import usable_image_bands
    from ..io.image import open_image, sample_pixels
    from ..io.library import SpectralLibrary
    from ..methods.selection import vca

    info = open_image(str(image_path))
    keep, _dropped = usable_image_bands(info, mask_water_bands)
    bands = [int(b) for b in np.flatnonzero(keep)]
    n = int(n)
    if n < 1:
        raise OptionError(f"The number of endmembers must be at least 1 (got {n})", "Give a positive number")
    if len(bands) < n:
        raise InputImageError(f"{n} endmembers need at least {n} usable bands; the image has {len(bands)}",
                              "Extract fewer endmembers")
    Y = sample_pixels(info, bands, n=int(max_pixels), seed=int(seed))
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
