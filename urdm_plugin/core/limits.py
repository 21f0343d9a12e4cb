"""Numeric limits shared by the readers and the solvers (a leaf module)."""

from __future__ import annotations

#: Largest magnitude of a data value (after scale and offset) treated as data. Reflectance is
#: O(1), scaled integers and radiance O(10⁴); a value beyond this is corrupt, or in units no
#: spectral library matches, and the solvers lose their accuracy on it (FCLS's sum-to-one
#: drifts from about 1e13). Such pixels are nodata: never solved, never written as data.
MAX_MAGNITUDE = 1e6
