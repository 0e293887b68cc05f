"""``python -m mbrnn ...`` and ``torchrun -m mbrnn train ...``: the ``mbrnn`` command line."""

import sys

from mbrnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
