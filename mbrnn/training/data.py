"""A run's data: what ``cfg.data`` names, its splits, and the reader's position.

``cfg.data`` is a path or a folder under ``$MBRNN_DATA`` (:func:`~mbrnn.data.data_root`).
The loaders of :mod:`mbrnn.data` raise ``ValueError``/``OSError``; here those become
:class:`~mbrnn.errors.ConfigError`, which stops a run before it trains.

The training reader is an endless iterator that advances a :class:`Position`, which the
checkpoint stores, so a resumed run reads on from the same window or batch:

- ``task = "lm"``: stateful BPTT windows over the batchified stream
  (:func:`~mbrnn.data.bptt_windows`), the recurrent state carried across windows.
- ``task = "classify"``: shuffled batches of sequence indices, one fixed order per epoch;
  under DDP each rank takes its contiguous part of every batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from ..data import (
    ClassifyData,
    Corpus,
    Vocab,
    bptt_windows,
    data_root,
    load_classification,
    load_corpus,
)
from ..errors import ConfigError
from .config import TrainConfig

__all__ = ["Position", "classify_batches", "data_path", "lm_batches", "load_split", "load_text",
           "to_device"]


def data_path(cfg: TrainConfig) -> Path:
    """``cfg.data`` as an existing path (an LM folder's ``input.txt`` where it has one)."""
    path = Path(cfg.data)
    if not path.exists():
        path = data_root() / cfg.data
    if not path.exists():
        raise ConfigError(f"data {cfg.data!r} not found (as a path or under {data_root()}); "
                          "set $MBRNN_DATA or pass --data=PATH")
    if path.is_dir() and cfg.task == "lm" and (path / "input.txt").is_file():
        path = path / "input.txt"
    if path.is_file() and path.stat().st_size == 0:
        raise ConfigError(f"data file {path} is empty")
    return path


def load_text(cfg: TrainConfig, vocab: Vocab | None = None) -> Corpus:
    """The corpus of an LM run (encoded with ``vocab`` when given)."""
    path = data_path(cfg)
    fractions = tuple(cfg.fractions) if path.is_file() else None
    try:
        corpus = load_corpus(path, level=cast(Any, cfg.level), vocab=vocab,
                             fractions=cast(Any, fractions))
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot load the corpus {path}: {e}") from e
    if corpus.train.numel() < 2 * cfg.batch_size:
        raise ConfigError(f"corpus {path} has {corpus.train.numel()} training tokens; too few for "
                          f"batch_size={cfg.batch_size}")
    return corpus


def load_split(cfg: TrainConfig, split: str) -> ClassifyData:
    """The ``split`` of a classification run: Fashion-MNIST IDX files or a folder of files
    (:func:`~mbrnn.data.load_classification` with the config's options)."""
    path = data_path(cfg)
    try:
        return load_classification(path, split, valid_size=cfg.valid_size,
                                   pixels_per_step=cfg.pixels_per_step, permute=cfg.permute,
                                   labels_csv=cfg.labels_csv or None)
    except (OSError, ValueError) as e:
        raise ConfigError(str(e)) from e


def to_device(x: Tensor | PackedSequence, device: torch.device) -> Tensor | PackedSequence:
    """A batch's inputs (a tensor or a packed sequence) on ``device``."""
    return x.to(device) if isinstance(x, Tensor) else cast(PackedSequence, cast(Any, x).to(device))


@dataclass
class Position:
    """Where the run is: steps taken and where the data reader stands."""

    step: int = 0
    epoch: int = 0
    offset: int = 0  # lm: row of the next window; classify: index into the epoch's order
    state: Any = None  # lm: the recurrent state carried into the next window


def lm_batches(train: Tensor, cfg: TrainConfig, pos: Position) -> Iterator[tuple[Tensor, Tensor]]:
    """BPTT windows from ``pos.offset``, forever; updates ``pos`` as windows are taken."""
    while True:
        for w in bptt_windows(train, cfg.bptt, start=pos.offset):
            pos.offset = w.next_position
            yield w.input, w.target
        pos.epoch, pos.offset, pos.state = pos.epoch + 1, 0, None


def classify_batches(n: int, cfg: TrainConfig, pos: Position, rank: int,
                     world: int) -> Iterator[Tensor]:
    """Shuffled batches of indices (a fixed order per epoch); this rank's contiguous part."""
    per_rank = cfg.batch_size // world
    while True:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + pos.epoch))
        while pos.offset + cfg.batch_size <= n:
            index = order[pos.offset: pos.offset + cfg.batch_size]
            pos.offset += cfg.batch_size
            yield index[rank * per_rank: (rank + 1) * per_rank]
        pos.epoch, pos.offset = pos.epoch + 1, 0
