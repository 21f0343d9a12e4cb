"""Bad run options as each front end spells them, for the parity tests: the options builder
(:mod:`urdm_plugin.core.engine.options`), the command line and Processing must refuse each
with the same message (in the front end's spelling of the option)."""

from __future__ import annotations

#: (id, the builder's values (registry names), CLI arguments after IMAGE LIBRARY OUTDIR,
#: Processing parameters beside INPUT/LIBRARY/OUTPUT_FOLDER)
BAD_RUNS = [
    ("parameter of another method", {"method": "fcls", "lam": "0.3"},
     ["--method", "fcls", "--lam", "0.3"], {"METHOD": "fcls", "LAMBDA": "0.3"}),
    ("weight that is not a number", {"method": "tv", "lam": "abc"},
     ["--method", "tv", "--lam", "abc"], {"METHOD": "tv", "LAMBDA": "abc"}),
    ("parameter out of range", {"method": "tv", "max_iter": 5},
     ["--method", "tv", "--max-iter", "5"], {"METHOD": "tv", "MAX_ITER": 5}),
    ("engine option out of range", {"method": "fcls", "tile_size": 8},
     ["--method", "fcls", "--tile-size", "8"], {"METHOD": "fcls", "TILE_SIZE": 8}),
    ("tile overlap of half the tile or more", {"method": "tv", "tile_size": 64, "tile_overlap": 32},
     ["--method", "tv", "--tile-size", "64", "--tile-overlap", "32"],
     {"METHOD": "tv", "TILE_SIZE": 64, "TILE_OVERLAP": 32}),
    ("workers and a scheduler", {"method": "fcls", "workers": 2, "scheduler": "tcp://127.0.0.1:9"},
     ["--method", "fcls", "--workers", "2", "--scheduler", "tcp://127.0.0.1:9"],
     {"METHOD": "fcls", "WORKERS": 2, "SCHEDULER": "tcp://127.0.0.1:9"}),
]


def builder_message(values: dict, shown) -> str:
    """The one-line message the options builder refuses ``values`` with."""
    import pytest

    from urdm_plugin.core.engine.options import build_run
    from urdm_plugin.core.errors import OptionError

    with pytest.raises(OptionError) as exc:
        build_run(values, shown)
    return " ".join(str(exc.value).split())
