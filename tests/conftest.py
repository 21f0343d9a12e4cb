"""Shared fixtures: the benchmark scenes in ../shared/data and small generated rasters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("URDM_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark scenes; tests skip (with the reason) only when the folder is absent.

    In CI the folder is present, so these tests run. Set URDM_SHARED_DATA to point elsewhere.
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark scenes not found at {SHARED_DATA} (a fresh clone has none; CI has them)")
    return SHARED_DATA
