"""The method registry is an append-only contract (core.methods.registry)."""

from __future__ import annotations

import importlib.util

import pytest

from urdm_plugin.core.errors import OptionError
from urdm_plugin.core.methods import registry as methods


def test_ids_and_positions_never_change():
    assert [m.id for m in methods.METHODS][:6] == ["fcls", "scls", "nnls", "ucls", "tv", "urdm"]
    for i, mid in enumerate(["fcls", "scls", "nnls", "ucls", "tv", "urdm"]):
        assert methods.method_index(mid) == i
    assert len(set(methods.METHOD_IDS)) == len(methods.METHOD_IDS)


def test_flags_and_params():
    urdm = methods.get_method("URDM")
    assert urdm.needs_torch and urdm.spatial
    assert {"lam", "quality", "zeta", "samples"} <= {p.name for p in urdm.params}
    assert urdm.param("quality").choices == ("fast", "balanced", "best")
    tv = methods.get_method("tv")
    assert tv.spatial and not tv.needs_torch and tv.param("lam").default == "auto"
    assert urdm.weight == tv.weight == "lam"  # one weight name for every regularised method
    for mid in ("fcls", "scls", "nnls", "ucls"):
        m = methods.get_method(mid)
        assert not m.spatial and not m.needs_torch


def test_unknown_method_lists_valid_ids():
    with pytest.raises(OptionError, match="fcls, scls, nnls, ucls, tv, urdm"):
        methods.get_method("sunsal")


def test_param_validation():
    tv = methods.get_method("tv")
    assert tv.validate_params({"lam": "0.01"})["lam"] == 0.01
    assert tv.validate_params({"lam_tv": 0.2})["lam"] == 0.2  # the old name still reads
    with pytest.raises(OptionError, match="outside"):
        tv.validate_params({"lam": -1})
    with pytest.raises(OptionError, match="finite"):
        tv.validate_params({"lam": "nan"})
    with pytest.raises(OptionError, match="Unknown option"):
        tv.validate_params({"lamda": 1})
    with pytest.raises(OptionError, match="fast"):
        methods.get_method("urdm").validate_params({"quality": "ultra"})
    # "auto" is a value of its own, and 0 means no regularisation (not "auto")
    assert tv.validate_params({"lam": "AUTO"})["lam"] == "auto" == tv.validate_params({})["lam"]
    assert tv.validate_params({"lam": 0})["lam"] == 0.0


def test_availability_follows_torch(monkeypatch):
    has_torch = importlib.util.find_spec("torch") is not None
    assert methods.method_available("urdm")[0] == has_torch
    assert methods.default_method() == ("urdm" if has_torch else "fcls")
    assert methods.method_available("fcls") == (True, "")
    monkeypatch.setattr(methods, "_installed", lambda name: name != "torch")
    ok, reason = methods.method_available("urdm")
    assert not ok and "torch" in reason.lower()
    assert methods.default_method() == "fcls"


def test_every_implementation_resolves():
    """Each registry entry names a function that exists (imported lazily, on use)."""
    for m in methods.METHODS:
        if m.available()[0]:
            assert callable(m.load())
            if m.choose_weight:
                assert callable(m.load_weight_chooser())


def test_a_torch_that_cannot_load_is_not_called_missing(monkeypatch):
    """Under ``ulimit -v`` torch's libraries fail to map: the message says so (it used to say
    PyTorch was not installed)."""
    from urdm_plugin.core import limits
    from urdm_plugin.core.diffusion.runtime import torch_missing

    failed = ImportError("libtorch_cpu.so: failed to map segment from shared object")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(limits, "address_space_is_tight", lambda: True)
    err = torch_missing(failed)
    assert "installed but could not be loaded" in err.problem and "ulimit -v" in err.problem
    assert "failed to map segment" in err.problem and "FCLS" in err.fix
    monkeypatch.setattr(limits, "address_space_is_tight", lambda: False)
    assert "Reinstall PyTorch" in torch_missing(failed).fix
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert "does not have" in torch_missing(failed).problem
