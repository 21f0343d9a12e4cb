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
    assert {"lam", "quality", "zeta", "samples", "tile_size"} <= {p.name for p in urdm.params}
    assert urdm.param("quality").choices == ("fast", "balanced", "best")
    tv = methods.get_method("tv")
    assert tv.spatial and not tv.needs_torch and tv.param("lam_tv").default == 0.0
    for mid in ("fcls", "scls", "nnls", "ucls"):
        m = methods.get_method(mid)
        assert not m.spatial and not m.needs_torch


def test_unknown_method_lists_valid_ids():
    with pytest.raises(OptionError, match="fcls, scls, nnls, ucls, tv, urdm"):
        methods.get_method("sunsal")


def test_param_validation():
    tv = methods.get_method("tv")
    assert tv.validate_params({"lam_tv": "0.01"})["lam_tv"] == 0.01
    with pytest.raises(OptionError, match="outside"):
        tv.validate_params({"lam_tv": -1})
    with pytest.raises(OptionError, match="no option"):
        tv.validate_params({"lam": 1})
    with pytest.raises(OptionError, match="fast"):
        methods.get_method("urdm").validate_params({"quality": "ultra"})
    assert methods.resolve_auto(0.0) == "auto" and methods.resolve_auto("auto") == "auto"
    assert methods.resolve_auto(0.5) == 0.5


def test_availability_follows_torch(monkeypatch):
    has_torch = importlib.util.find_spec("torch") is not None
    assert methods.method_available("urdm")[0] == has_torch
    assert methods.default_method() == ("urdm" if has_torch else "fcls")
    assert methods.method_available("fcls") == (True, "")
    monkeypatch.setattr(methods, "_torch_installed", lambda: False)
    ok, reason = methods.method_available("urdm")
    assert not ok and "torch" in reason.lower()
    assert methods.default_method() == "fcls"
