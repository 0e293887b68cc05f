"""``python -m mbrnn.cli ...``: the same as ``mbrnn ...`` (see :mod:`mbrnn.__main__`)."""

import sys

from mbrnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
