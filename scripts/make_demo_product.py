#!/usr/bin/env python3
"""Pack the demo scene as an EMIT L2A reflectance granule, for the worked example of
``make demo`` (sensor product → ``vca auto`` → named endmembers → URDM → map sheet).

    python scripts/make_demo_product.py [OUT_DIR]     (default: demo_output/)

Reads ``OUT_DIR/demo_scene.tif`` (make_demo_scene.py) and writes
``OUT_DIR/EMIT_L2A_RFL_001_…_demo.nc``: the cube as a swath (downtrack × crosstrack ×
bands, fill −9999), its wavelengths, and a geometry lookup table that turns the swath a
quarter turn onto the product grid — the structure of a delivered EMIT granule, written by
the test suite's fixture writer (tests/sensor_products.py). Prints the path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

NAME = "EMIT_L2A_RFL_001_20260601T101010_2615207_001_demo.nc"


def main(argv=None) -> int:
    import sensor_products as sp

    from urdm_plugin.core.io.image import open_image, read_window
    from urdm_plugin.core.window import Window

    out = Path((argv if argv is not None else sys.argv[1:])[0] if (argv or sys.argv[1:]) else "demo_output")
    info = open_image(out / "demo_scene.tif")
    Y, valid = read_window(info, None, Window.whole(info.height, info.width))
    Y = np.where(valid[None], Y, -9999.0)
    path, _truth = sp.write_emit(out, cube=Y.transpose(1, 2, 0), wavelengths=info.wavelengths_nm, name=NAME)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
