"""``mbrnn sample``: a thin wrapper, so ``python scripts/sample.py --help`` works from a checkout."""

import sys

from mbrnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
