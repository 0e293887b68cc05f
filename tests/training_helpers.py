"""Tiny data shared by the training, data and CLI tests: Fashion-MNIST IDX files and folders
of sequences."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` as a gzipped uint8 IDX file."""
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion(folder: Path) -> Path:
    """A fake Fashion-MNIST in ``folder``: 48 training and 16 test images whose brightness
    grows with the label."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 48), ("t10k", 16)):
        labels = rng.integers(0, 10, n)
        pixels = rng.integers(0, 40, (n, 28, 28)) + labels[:, None, None] * 20
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", pixels)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def write_sequences(root: Path, n: int, rng: np.random.Generator) -> None:
    """``n`` .npy sequences of 5..19 steps, 3 features, per class; the class shifts them."""
    for label, name in enumerate(("low", "mid", "high")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            steps = int(rng.integers(5, 20))
            np.save(root / name / f"{i}.npy", rng.normal(label, 0.3, (steps, 3)).astype(np.float32))
