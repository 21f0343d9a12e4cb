"""``python -m urdm_plugin ...``: the command line (see :mod:`urdm_plugin.cli`)."""

# Before any heavy import: a SIGTERM while numpy and GDAL load must not be lost.
from urdm_plugin import early_signals

early_signals.install()

import sys  # noqa: E402

from urdm_plugin.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
