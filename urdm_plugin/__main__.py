"""``python -m urdm_plugin ...``: the command line (see :mod:`urdm_plugin.cli`)."""

# Before any heavy import: a SIGTERM while numpy and GDAL load must not be lost, and BLAS
# must not start more threads than a tight address-space limit (ulimit -v) lets it feed.
from urdm_plugin import startup

startup.install()
startup.fit_blas_to_address_limit()

import sys  # noqa: E402

from urdm_plugin.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
