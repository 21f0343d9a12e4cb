"""``python -m urdm_plugin ...``: the command line (see :mod:`urdm_plugin.cli`)."""

import sys

from urdm_plugin.cli import main

if __name__ == "__main__":
    sys.exit(main())
