"""core.engine.plan.plan_run: what a run will do, decided before any output exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_pipeline import NAMES, write_scene

from urdm_plugin.core.engine.plan import AUTO_SELECT_ABOVE, UnmixOptions, plan_run
from urdm_plugin.core.errors import LibraryError, OptionError
from urdm_plugin.core.io.library import SpectralLibrary


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("plan"))


def test_plan_names_bands_endmembers_and_parameters(scene):
    tif, csv, sc = scene
    plan = plan_run(tif, csv, UnmixOptions(method="tv", params={"lam": 0.01}))
    assert plan.ok and plan.names == NAMES and plan.selection["mode"] == "all"
    assert plan.E.shape == (len(plan.bands), 3) and plan.extent == (0, 0, 24, 20)
    assert plan.params == {"lam": 0.01, "max_iter": 300}
    assert plan.sample is not None and plan.sample.shape[0] == len(plan.bands)


def test_problems_are_recorded_or_raised(scene):
    tif, csv, _ = scene
    with pytest.raises(LibraryError, match="Nope"):
        plan_run(tif, csv, UnmixOptions(endmembers=["Nope"]))
    plan = plan_run(tif, csv, UnmixOptions(endmembers=["Nope"]), strict=False)
    assert not plan.ok and "Nope" in plan.problems[0]
    plan = plan_run(tif, csv, UnmixOptions(method="urdm", params={"lam": -1}), strict=False)
    assert "outside its range" in plan.problems[0]
    with pytest.raises(OptionError, match="window"):
        plan_run(tif, csv, UnmixOptions(window=(0, 0, 100, 5)))


def test_metadata_only_plan_defers_automatic_selection(scene, tmp_path):
    tif, _csv, sc = scene
    # a library larger than the selection cap: spectra of the scene plus scaled copies
    copies = [sc.E * f for f in np.linspace(0.5, 1.5, 9)]
    E = np.concatenate(copies, axis=1)
    names = [f"s{i}" for i in range(E.shape[1])]
    lib = SpectralLibrary(names, sc.wavelengths_nm, E)
    assert len(lib) > AUTO_SELECT_ABOVE
    quick = plan_run(tif, lib, UnmixOptions(), read_pixels=False)
    assert quick.ok and quick.sample is None
    assert quick.selection == {"mode": "automatic-pending", "from": len(lib), "max": AUTO_SELECT_ABOVE}
    full = plan_run(tif, lib, UnmixOptions())
    assert full.selection["mode"] == "automatic" and 1 <= len(full.names) <= AUTO_SELECT_ABOVE
    assert any("selected" in w for w in full.warnings)
    assert not list(Path(tmp_path).iterdir())  # planning writes nothing
