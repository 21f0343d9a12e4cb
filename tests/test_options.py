"""The one options builder (core.engine.options): registry defaults accepted, one rule and one
message for each bad value whatever the front end."""

from __future__ import annotations

import pytest
from option_cases import BAD_RUNS, builder_message

from urdm_plugin.core.engine.options import build_run, build_vca
from urdm_plugin.core.engine.plan import UnmixOptions
from urdm_plugin.core.errors import OptionError
from urdm_plugin.core.methods.registry import (
    ENGINE_OPTIONS,
    METHODS,
    RUN_OPTIONS,
    VCA_OPTIONS,
    take_engine_options,
)


@pytest.mark.parametrize("spec", METHODS, ids=lambda m: m.id)
def test_every_registry_default_is_accepted(spec):
    if not spec.available()[0]:
        pytest.skip(spec.available()[1])
    values = {p.name: p.default for p in spec.params}
    values.update({o.name: o.default for o in ENGINE_OPTIONS + RUN_OPTIONS})
    run = build_run(dict(values, method=spec.id))
    defaults = UnmixOptions()
    assert run.options.method == spec.id and spec.validate_params(run.options.params) == spec.defaults()
    assert (run.options.seed, run.options.device, run.options.tile_size, run.options.memory_mb) == \
        (defaults.seed, defaults.device, defaults.tile_size, defaults.memory_mb)
    assert run.workers is None and run.scheduler is None


def test_nothing_given_is_the_default_run():
    run = build_run({"method": "fcls"})
    assert run.options == UnmixOptions(method="fcls")


def test_vca_defaults_are_the_registrys():
    vca = build_vca({"n": "auto"})
    assert vca.n == "auto" and vca.mask_water_bands is True
    assert vca.as_kwargs() == dict({o.name: o.default for o in VCA_OPTIONS}, mask_water_bands=True)
    assert build_vca({"n": "4", "max_pixels": 500}).as_kwargs()["max_pixels"] == 500
    with pytest.raises(OptionError, match="N must be at least 1"):
        build_vca({"n": 0})
    with pytest.raises(OptionError, match="max_angle"):
        build_vca({"n": 3, "max_angle": 3.0})


@pytest.mark.parametrize("case, values, _cli, _proc", BAD_RUNS, ids=[c[0] for c in BAD_RUNS])
def test_each_bad_run_is_refused_by_the_builder(case, values, _cli, _proc):
    assert builder_message(values, str)  # an OptionError: the problem and its fix


def test_the_message_spells_the_option_the_front_ends_way():
    values = BAD_RUNS[0][1]
    assert builder_message(values, lambda n: "--" + n).startswith("--lam does not apply to method 'fcls'")
    assert builder_message(values, str.upper).startswith("LAM does not apply to method 'fcls'. Use LAM only with")


def test_unknown_names_and_a_bad_overlap_are_refused():
    with pytest.raises(OptionError, match="Unknown run option"):
        build_run({"method": "fcls", "bogus": 1})
    with pytest.raises(OptionError, match="tile_overlap"):
        build_run({"method": "tv", "tile_size": 64, "tile_overlap": 32})
    with pytest.raises(OptionError, match="tile_overlap"):  # the array API goes through the same check
        take_engine_options({"tile_size": 64, "tile_overlap": 40})


def test_an_unavailable_method_is_built_and_left_to_the_plan(monkeypatch):
    """The dialog plans a run it cannot start, to show why; the plan says the method cannot run."""
    from urdm_plugin.core.engine.arrays import resolve_method
    from urdm_plugin.core.errors import MethodUnavailableError
    from urdm_plugin.core.methods import registry

    monkeypatch.setattr(registry, "_installed", lambda name: name != "torch")
    assert build_run({"method": "urdm"}).options.method == "urdm"
    with pytest.raises(MethodUnavailableError, match="PyTorch"):
        resolve_method("urdm")  # what plan_run asks first
