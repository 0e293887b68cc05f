"""``mbrnn train``: a thin wrapper, so ``python scripts/train.py --help`` works from a checkout (and ``torchrun scripts/train.py ...`` for data-parallel training)."""

import sys

from mbrnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
