"""What every tile of one scene shares, fixed before the tiles run (so tiles agree and blend
without seams): the run's seed and device, the scene's noise level, how the data term is
weighted, and where the tile sits in the scene."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional


@dataclass(frozen=True)
class SceneContext:
    """Scene-level facts passed to a spatial method's tile function.

    ``sigma``: white-noise σ of the scene (reflectance; in the weighted metric when
    ``band_weights`` is an array), None = each tile estimates its own. ``signal_rms``:
    RMS of the scene's valid data (recorded). ``band_weights``: ``"auto"`` (decide from the
    data), None (plain least squares) or relative per-band σ (B,). ``origin``: (row, col)
    of the tile's first pixel in the scene (URDM keys its sampling noise to it).
    ``variability``: whether URDM's "auto" variability model uses the scalings (decided once
    for the scene by :func:`core.methods.elmm.variability_test`); None = each tile decides.
    ``memory_mb``: the run's memory budget (MiB), which bounds the scene-wide noise window
    (:func:`core.engine.tiling.noise_window`); None = no bound.
    """

    seed: int = 0
    device: str = "auto"
    sigma: Optional[float] = None
    signal_rms: Optional[float] = None
    band_weights: Any = "auto"
    origin: tuple = (0, 0)
    memory_mb: Optional[float] = None
    variability: Optional[bool] = None

    def at(self, row0: int, col0: int) -> SceneContext:
        """The same facts for the tile whose first pixel is (row0, col0) of the scene."""
        return replace(self, origin=(int(row0), int(col0)))
