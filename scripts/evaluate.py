"""``mbrnn evaluate``: a thin wrapper, so ``python scripts/evaluate.py --help`` works from a checkout."""

import sys

from mbrnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
