"""Tiny runs shared by the training, data and CLI tests: a corpus, Fashion-MNIST IDX files,
folders of sequences, and a tiny LM config."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from mbrnn.training import TrainConfig, load_config

TINY = ["--level=char", "--embedding-size=8", "--hidden-size=8", "--num-layers=1", "--bptt=8",
        "--batch-size=4", "--eval-batches=2", "--memory-budget=64KiB", "--progress=false",
        "--threads=1"]


def write_corpus(folder: Path) -> Path:
    """``folder/corpus.txt``: 60 lines of 8 words from a 12-word vocabulary."""
    rng = np.random.default_rng(0)
    words = ["the", "king", "and", "queen", "of", "fair", "verona", "where", "we", "lay", "our", "scene"]
    lines = [" ".join(rng.choice(words, 8)) for _ in range(60)]
    path = folder / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_config(text: Path, out: Path, **kw: object) -> TrainConfig:
    """:data:`TINY` on ``text``: 6 steps, evaluated every 3, a checkpoint every 2."""
    args = dict(a[2:].split("=", 1) for a in TINY)
    args.update(data=str(text), out=str(out), max_steps=6, eval_every=3, checkpoint_every=2,
                dropout=0.2, embedding_dropout=0.1)
    args.update({k: v for k, v in kw.items()})
    return load_config(None, args)


def weights(out: Path) -> dict[str, torch.Tensor]:
    """The final weights of the run in ``out``."""
    return load_file(out / "model" / "model.safetensors")


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
