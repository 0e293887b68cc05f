"""Train a zoo model: ``mbrnn train [--config PRESET] [--key=value ...]``.

One program for both model kinds: a :class:`~mbrnn.models.LanguageModel` on a text corpus
(``task = "lm"``; stateful BPTT windows, the state carried across windows) and a
:class:`~mbrnn.models.SequenceClassifier` on Fashion-MNIST pixel sequences
(``task = "classify"``; full BPTT over the whole sequence). Backward passes run under
``memory_budget`` (Gruslys et al., 2016).

Configuration is a :class:`TrainConfig` filled from a TOML preset
(``scripts/configs/<name>.toml`` or a path) and then ``--key=value`` overrides; an unknown
key or a value of the wrong type is an error. A run writes into ``out``:

    checkpoint.pt   everything to resume exactly (model, optimizer, scheduler, config,
                    step, data position, carried state, every RNG), written atomically
    log.jsonl       one line per evaluation
    curves.png      learning curves (with ``plot = true``)
    model/          the final weights: config.json + model.safetensors (+ tokenizer.json)

Ctrl-C finishes the current step, writes the checkpoint and exits; ``resume = true``
continues bit for bit. Under ``torchrun`` each rank reads a contiguous block of the
streams (:func:`~mbrnn.data.shard_streams`) and DistributedDataParallel averages the
gradients; only rank 0 writes.

Example::

    $ mbrnn train --config=shakespeare-char-lstm --max-steps=2000 --out=runs/shakespeare
    $ torchrun --nproc-per-node=2 scripts/train.py --config=shakespeare-char-lstm
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence
from tqdm import tqdm

from .data import (
    FashionMNISTSequences,
    SequenceFolder,
    Vocab,
    batchify,
    bptt_windows,
    collate_sequences,
    data_root,
    load_corpus,
    shard_streams,
)
from .errors import InfeasibleBudgetError
from .hub import save_pretrained
from .models import LanguageModel, LanguageModelConfig, SequenceClassifier, SequenceClassifierConfig
from .runtime.memory import MemoryMeter

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib  # pyright: ignore[reportMissingImports]

__all__ = ["CONFIG_DIR", "TrainConfig", "TrainError", "load_config", "train"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "scripts" / "configs"
CHECKPOINT_FORMAT = 1


class TrainError(ValueError):
    """Bad input to a training run (data, config, checkpoint, budget): stop before training."""


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything a run needs; see ``scripts/configs/*.toml`` for presets."""

    # data
    task: str = "lm"  # "lm" or "classify"
    data: str = "tinyshakespeare"  # a folder under $MBRNN_DATA, or a path
    level: str = "char"  # lm: "word", "char" or "byte"
    fractions: list[float] = field(default_factory=lambda: [0.9, 0.05, 0.05])  # single-file corpus
    pixels_per_step: int = 1  # classify, Fashion-MNIST: T = 784 / pixels_per_step
    permute: bool = False  # classify, Fashion-MNIST: pixels in a fixed random order
    valid_size: int = 5000  # classify: sequences held out of train for validation
    labels_csv: str = ""  # classify, a folder of .npy/.wav files: labels from this CSV
    # model
    cell: str = "lstm"
    embedding_size: int = 128
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.0
    embedding_dropout: float = 0.0
    weight_dropout: float = 0.0
    tie_weights: bool = True
    bidirectional: bool = False
    # memory
    memory_budget: str = ""  # "" keeps everything; else e.g. "64MiB"
    policy: str = "auto"
    bptt: int = 100  # lm: window length
    truncate: int = 0  # > 0: back-propagate through only this many steps (comparison)
    # optimisation
    batch_size: int = 32
    eval_batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    clip: float = 1.0  # 0: no clipping
    warmup_steps: int = 0
    schedule: str = "cosine"  # "cosine" or "constant"
    max_steps: int = 1000
    eval_every: int = 200
    eval_batches: int = 0  # 0: the whole validation split
    checkpoint_every: int = 500
    stop_at: int = 0  # stop (checkpoint and exit) after this step, as Ctrl-C would
    time_limit: float = 0.0  # seconds; > 0: end the run (evaluate, save) once exceeded
    seed: int = 0
    # runtime
    device: str = "cpu"
    dtype: str = "float32"  # "float32", "float64", or autocast "bfloat16" / "float16"
    threads: int = 0  # torch.set_num_threads; 0 leaves the default
    out: str = "runs/default"
    resume: bool = False
    dry_run: bool = False
    plot: bool = False
    progress: bool = True


# Keys that may differ between a checkpoint and the run that resumes it.
_RUN_KEYS = {"max_steps", "time_limit", "eval_every", "checkpoint_every", "stop_at", "device", "threads",
             "out", "resume", "dry_run", "plot", "progress", "eval_batches"}
_CHOICES = {"task": ("lm", "classify"), "level": ("word", "char", "byte"), "cell": ("lstm", "gru"),
            "schedule": ("cosine", "constant"),
            "dtype": ("float32", "float64", "bfloat16", "float16")}


def _convert(name: str, kind: Any, value: Any, where: str) -> Any:
    """``value`` (a TOML value or a command-line string) as field ``name``'s type."""
    kind = {"int": int, "float": float, "bool": bool, "str": str, "list[float]": list}.get(kind, kind)
    text = isinstance(value, str) and kind is not str
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if text and value.lower() in ("true", "1", "yes", ""):
                return True
            if text and value.lower() in ("false", "0", "no"):
                return False
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if text:
                return int(value)
        elif kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if text:
                return float(value)
        elif kind is str:
            if isinstance(value, str):
                return value
        elif kind is list:
            items = value.split(",") if text else value
            if isinstance(items, list):
                return [float(v) for v in items]
    except ValueError:
        pass
    raise TrainError(f"{where}: {name} must be {getattr(kind, '__name__', kind)}, got {value!r}")


def load_config(preset: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML preset (name or path) and overrides.

    Raises:
        TrainError: a missing preset, an unknown key or a value of the wrong type.
    """
    types_ = {f.name: f.type for f in fields(TrainConfig)}
    values: dict[str, Any] = {}
    sources: list[tuple[str, dict[str, Any]]] = []
    if preset:
        path = Path(preset)
        if not path.is_file():
            path = CONFIG_DIR / f"{preset}.toml"
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
            raise TrainError(f"config preset {preset!r} not found (a .toml path or one of: {names})")
        try:
            sources.append((str(path), tomllib.loads(path.read_text())))
        except tomllib.TOMLDecodeError as e:
            raise TrainError(f"{path}: invalid TOML: {e}") from e
    sources.append(("command line", dict(overrides or {})))
    for where, table in sources:
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in types_:
                raise TrainError(f"{where}: unknown config key {key!r}; known keys: {', '.join(sorted(types_))}")
            values[name] = _convert(name, types_[name], value, where)
    cfg = TrainConfig(**values)
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise TrainError(f"config: {name} must be one of {choices}, got {getattr(cfg, name)!r}")
    for name in ("bptt", "batch_size", "eval_batch_size", "max_steps", "pixels_per_step"):
        if getattr(cfg, name) < 1:
            raise TrainError(f"config: {name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.dry_run:
        cfg.max_steps = min(cfg.max_steps, 4)
        cfg.eval_every, cfg.eval_batches = 2, 2
    return cfg


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def _data_path(cfg: TrainConfig) -> Path:
    path = Path(cfg.data)
    if not path.exists():
        path = data_root() / cfg.data
    if not path.exists():
        raise TrainError(f"data {cfg.data!r} not found (as a path or under {data_root()}); "
                         "set $MBRNN_DATA or pass --data=PATH")
    if path.is_dir() and cfg.task == "lm" and (path / "input.txt").is_file():
        path = path / "input.txt"
    if path.is_file() and path.stat().st_size == 0:
        raise TrainError(f"data file {path} is empty")
    return path


def load_text(cfg: TrainConfig, vocab: Vocab | None = None) -> Any:
    """The corpus of an LM run (encoded with ``vocab`` when given)."""
    path = _data_path(cfg)
    fractions = tuple(cfg.fractions) if path.is_file() else None
    try:
        corpus = load_corpus(path, level=cast(Any, cfg.level), vocab=vocab,
                             fractions=cast(Any, fractions))
    except (OSError, ValueError, TypeError) as e:
        raise TrainError(f"cannot load the corpus {path}: {e}") from e
    if corpus.train.numel() < 2 * cfg.batch_size:
        raise TrainError(f"corpus {path} has {corpus.train.numel()} training tokens; too few for "
                         f"batch_size={cfg.batch_size}")
    return corpus


@dataclass
class ImageData:
    """Fashion-MNIST pixel sequences: one uint8 tensor (N, 784) and labels (N,)."""

    images: Tensor
    labels: Tensor
    mean: float
    std: float
    pixels_per_step: int = 1

    @property
    def input_size(self) -> int:
        return self.pixels_per_step

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def seq_len(self) -> int:
        return self.images.shape[1] // self.pixels_per_step

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        x = self.images[index].float().div_(255.0).sub_(self.mean).div_(self.std)  # (B, 784)
        x = x.view(x.shape[0], -1, self.pixels_per_step).transpose(0, 1).contiguous()  # (T, B, F)
        return x, self.labels[index]


@dataclass
class FolderData:
    """Some of a :class:`~mbrnn.data.SequenceFolder`'s files; batches are packed, so each
    sequence is classified from its own last step."""

    folder: SequenceFolder
    indices: Tensor  # into folder
    labels: Tensor  # of those files

    @property
    def input_size(self) -> int:
        return int(self.folder[int(self.indices[0])][0].shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.folder.classes)

    @property
    def seq_len(self) -> int:
        """The first sequence's length (the budget check's length; others may differ)."""
        return int(self.folder[int(self.indices[0])][0].shape[0])

    def batch(self, index: Tensor) -> tuple[PackedSequence, Tensor]:
        items = [self.folder[int(self.indices[i])] for i in index]
        x, _, y = collate_sequences(items, packed=True)
        return x, y


ClassifyData = ImageData | FolderData


def _is_idx_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("train-images-idx3-ubyte*"))


def load_images(cfg: TrainConfig, split: str) -> ImageData:
    """Fashion-MNIST ``split``: "train" (minus the last ``valid_size``), "valid" or "test"."""
    path = _data_path(cfg)
    if 784 % cfg.pixels_per_step:
        raise TrainError(f"pixels_per_step={cfg.pixels_per_step} must divide 784")
    try:
        ds = FashionMNISTSequences(path, split="test" if split == "test" else "train",
                                   permute=cfg.permute)
    except (OSError, ValueError) as e:
        raise TrainError(f"cannot load Fashion-MNIST from {path}: {e}") from e
    images, labels = ds.images, ds.labels
    n_valid = min(cfg.valid_size, images.shape[0] // 2)
    if split == "train":
        images, labels = images[: images.shape[0] - n_valid], labels[: labels.shape[0] - n_valid]
    elif split == "valid":
        images, labels = images[images.shape[0] - n_valid:], labels[labels.shape[0] - n_valid:]
    return ImageData(images, labels, FashionMNISTSequences.MEAN, FashionMNISTSequences.STD,
                     cfg.pixels_per_step)


def load_folder(cfg: TrainConfig, split: str) -> FolderData:
    """A folder of ``.npy``/``.wav`` sequences (:class:`~mbrnn.data.SequenceFolder`).

    Layouts: ``data/{train,valid,test}/<class>/<file>`` (``valid`` and ``test`` optional),
    or ``data/<class>/<file>`` (or ``data/`` with ``labels_csv``) for training alone. Where
    there is no ``valid`` folder, the last ``valid_size`` files (at most a tenth) of a fixed
    shuffle of the training files are held out for validation.
    """
    path = _data_path(cfg)
    split_dirs = (path / "train").is_dir()
    if split_dirs and cfg.labels_csv:
        raise TrainError(f"labels_csv={cfg.labels_csv!r} needs a single folder of files, but "
                         f"{path} has a train/ folder; label by sub-folder or drop train/")
    if split == "test":
        if not (split_dirs and (path / "test").is_dir()):
            raise TrainError(f"{path} has no test/ folder to evaluate on; lay the data out as "
                             "train/ and test/ folders of class sub-folders")
        root = path / "test"
    elif split == "valid" and split_dirs and (path / "valid").is_dir():
        root = path / "valid"
    else:
        root = path / "train" if split_dirs else path
    held_out = root == path or root == path / "train"  # train and valid share these files
    try:
        folder = SequenceFolder(root, labels_csv=Path(cfg.labels_csv) if cfg.labels_csv else None)
        if split_dirs and split != "train":
            classes = SequenceFolder(path / "train").classes
            if folder.classes != classes:
                raise ValueError(f"{root} has classes {folder.classes}, train/ has {classes}; "
                                 "every split needs the same class folders")
    except (OSError, ValueError) as e:
        raise TrainError(f"cannot load sequences from {path}: {e}") from e
    indices = torch.arange(len(folder))
    if held_out and not (split_dirs and (path / "valid").is_dir()):
        order = torch.randperm(len(folder), generator=torch.Generator().manual_seed(0))
        n_valid = min(cfg.valid_size, len(folder) // 10)
        if n_valid < 1:
            raise TrainError(f"{root} has {len(folder)} files: too few to hold out validation "
                             "files; add a valid/ folder")
        indices = order[-n_valid:] if split == "valid" else order[:-n_valid]
    labels = torch.tensor([folder.targets[int(i)] for i in indices], dtype=torch.long)
    return FolderData(folder, indices, labels)


def load_classification(cfg: TrainConfig, split: str) -> ClassifyData:
    """The ``split`` of a classification run: Fashion-MNIST IDX files or a folder of files."""
    path = _data_path(cfg)
    return load_images(cfg, split) if _is_idx_folder(path) else load_folder(cfg, split)


# --------------------------------------------------------------------------------------
# Model, evaluation
# --------------------------------------------------------------------------------------


def build_model(cfg: TrainConfig, vocab: Vocab | None, data: ClassifyData | None = None) -> nn.Module:
    budget: int | str | None = cfg.memory_budget or None
    if cfg.task == "lm":
        assert vocab is not None
        return LanguageModel(LanguageModelConfig(
            vocab_size=len(vocab), level=cfg.level, cell=cfg.cell,
            embedding_size=cfg.embedding_size, hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers, dropout=cfg.dropout,
            embedding_dropout=cfg.embedding_dropout, weight_dropout=cfg.weight_dropout,
            tie_weights=cfg.tie_weights, memory_budget=budget, policy=cfg.policy), vocab=vocab)
    return SequenceClassifier(SequenceClassifierConfig(
        input_size=data.input_size if data is not None else cfg.pixels_per_step,
        num_classes=data.num_classes if data is not None else 10, cell=cfg.cell,
        hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, dropout=cfg.dropout,
        bidirectional=cfg.bidirectional, memory_budget=budget, policy=cfg.policy))


def _autocast(cfg_dtype: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if cfg_dtype in ("bfloat16", "float16"):
        return torch.autocast(device.type, dtype=getattr(torch, cfg_dtype))
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_lm(model: LanguageModel, ids: Tensor, *, batch_size: int, bptt: int,
                max_batches: int = 0, dtype: str = "float32") -> dict[str, float]:
    """Token-weighted mean cross-entropy over ``ids`` (1-D), with ppl and bits per token."""
    was = model.training
    model.eval()
    batched = batchify(ids.to(model.device), min(batch_size, max(1, ids.numel() // 2)))
    total, count, state = 0.0, 0, None
    for i, w in enumerate(bptt_windows(batched, bptt)):
        if max_batches and i >= max_batches:
            break
        with _autocast(dtype, model.device):
            loss, state = model(w.input, w.target, state)
        total += float(loss) * w.target.numel()
        count += w.target.numel()
    model.train(was)
    loss = total / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bpc": loss / math.log(2), "tokens": count}


@torch.no_grad()
def evaluate_classifier(model: SequenceClassifier, data: ClassifyData, *, batch_size: int,
                        max_batches: int = 0, dtype: str = "float32") -> dict[str, float]:
    """Mean cross-entropy and accuracy over ``data``."""
    was = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for i, start in enumerate(range(0, data.labels.numel(), batch_size)):
        if max_batches and i >= max_batches:
            break
        x, y = data.batch(torch.arange(start, min(start + batch_size, data.labels.numel())))
        with _autocast(dtype, model.device):
            loss, logits = cast(tuple[Tensor, Tensor], model(_on(x, model.device), y.to(model.device)))
        total += float(loss) * y.numel()
        correct += int((logits.argmax(1).cpu() == y).sum())
        count += y.numel()
    model.train(was)
    return {"loss": total / max(count, 1), "accuracy": correct / max(count, 1), "examples": count}


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``: atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    """Read a checkpoint and check that it belongs to this run's model and data."""
    if not path.is_file():
        raise TrainError(f"resume: no checkpoint at {path}; run without --resume first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise TrainError(f"resume: {path} is not a readable mbrnn checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"resume: {path} is not an mbrnn training checkpoint (format {CHECKPOINT_FORMAT})")
    saved, now = ckpt["config"], asdict(cfg)
    differ = sorted(k for k in now if k not in _RUN_KEYS and saved.get(k) != now[k])
    if differ:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}" for k in differ)
        raise TrainError(f"resume: {path} was written by a different model or data ({detail}); "
                         "use the same config or another --out")
    return ckpt


# --------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------


@dataclass
class Position:
    """Where the run is: steps taken and where the data reader stands."""

    step: int = 0
    epoch: int = 0
    offset: int = 0  # lm: row of the next window; classify: index into the epoch's order
    state: Any = None  # lm: the recurrent state carried into the next window


def _lm_batches(train: Tensor, cfg: TrainConfig, pos: Position) -> Iterator[tuple[Tensor, Tensor]]:
    """BPTT windows from ``pos.offset``, forever; updates ``pos`` as windows are taken."""
    while True:
        for w in bptt_windows(train, cfg.bptt, start=pos.offset):
            pos.offset = w.next_position
            yield w.input, w.target
        pos.epoch, pos.offset, pos.state = pos.epoch + 1, 0, None


def _image_batches(n: int, cfg: TrainConfig, pos: Position, rank: int, world: int) -> Iterator[Tensor]:
    """Shuffled batches of indices (a fixed order per epoch); this rank's contiguous part."""
    per_rank = cfg.batch_size // world
    while True:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + pos.epoch))
        while pos.offset + cfg.batch_size <= n:
            index = order[pos.offset: pos.offset + cfg.batch_size]
            pos.offset += cfg.batch_size
            yield index[rank * per_rank: (rank + 1) * per_rank]
        pos.epoch, pos.offset = pos.epoch + 1, 0


def _detach(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(_detach(s) for s in state)


def _lr_lambda(cfg: TrainConfig) -> Any:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _check_budget(model: nn.Module, cfg: TrainConfig, batch: int, device: torch.device,
                  data: ClassifyData | None) -> None:
    """Fail before training when the budget cannot hold one step of this run."""
    if not cfg.memory_budget:
        return
    seq_len = cfg.bptt if data is None else data.seq_len
    if cfg.truncate:
        seq_len = min(seq_len, cfg.truncate)
    for rnn in _budgeted(model):
        try:
            rnn.plan_for(seq_len, batch, device=device)
        except InfeasibleBudgetError as e:
            raise TrainError(f"memory_budget={cfg.memory_budget} is too small: {e}") from e
        except ValueError as e:
            raise TrainError(f"memory_budget={cfg.memory_budget!r}: {e}") from e


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training as configured; returns the last evaluation's metrics (and ``stopped``)."""
    # -- distributed setup, seeding -------------------------------------------------------
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(cfg.device)
    owns_group = world > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if world > 1 and cfg.batch_size % world:
        raise TrainError(f"batch_size={cfg.batch_size} must be a multiple of the {world} processes")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    main_rank = rank == 0

    # -- data and model -------------------------------------------------------------------
    ckpt = load_checkpoint(ckpt_path, cfg) if cfg.resume else None
    vocab: Vocab | None = None
    if cfg.task == "lm":
        corpus = load_text(cfg)
        vocab = corpus_vocab = corpus.vocab
        if ckpt is not None:
            try:
                corpus_vocab.check_compatible(Vocab.from_tokens(ckpt["vocab"], level=cast(Any, cfg.level))
                                       if cfg.level != "byte" else corpus_vocab)
            except ValueError as e:
                raise TrainError(f"resume: {e}") from e
        train_data = shard_streams(batchify(corpus.train, cfg.batch_size), rank, world).to(device)
        valid_ids = corpus.valid if corpus.valid.numel() > 1 else corpus.test
        if valid_ids.numel() < 2:
            raise TrainError(f"corpus {cfg.data} has no validation or test text to evaluate on")
        if cfg.dry_run:
            train_data = train_data[: 8 * cfg.bptt + 1]
        tokens_per_step = cfg.bptt * cfg.batch_size
    else:
        images = load_classification(cfg, "train")
        valid_images = load_classification(cfg, "valid")
        if images.labels.numel() < cfg.batch_size:
            raise TrainError(f"{cfg.data} has {images.labels.numel()} training sequences, fewer "
                             f"than batch_size={cfg.batch_size}")
        tokens_per_step = cfg.batch_size  # sequences
    model = build_model(cfg, vocab, images if cfg.task != "lm" else None).to(device)
    if cfg.dtype == "float64":
        model = model.double()
    _check_budget(model, cfg, cfg.batch_size // world, device, images if cfg.task != "lm" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    pos = Position()
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"], strict=True)
        except RuntimeError as e:
            raise TrainError(f"resume: the checkpoint's weights do not fit this model: {e}") from e
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        pos = Position(ckpt["step"], ckpt["epoch"], ckpt["offset"],
                       _to(ckpt["state"], device))
        _set_rng_state(ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0])
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model)

    def checkpoint() -> None:
        rngs: list[Any] = [_rng_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if main_rank:
            save_checkpoint(ckpt_path, {
                "format": CHECKPOINT_FORMAT, "config": asdict(cfg), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "step": pos.step, "epoch": pos.epoch, "offset": pos.offset,
                "state": _to(pos.state, torch.device("cpu")), "rng": rngs,
                "vocab": list(vocab.tokens) if vocab is not None else None,
            })

    def evaluate() -> dict[str, Any]:
        if cfg.task == "lm":
            return evaluate_lm(cast(LanguageModel, model), valid_ids, batch_size=cfg.eval_batch_size,
                               bptt=cfg.bptt, max_batches=cfg.eval_batches, dtype=cfg.dtype)
        return evaluate_classifier(cast(SequenceClassifier, model), valid_images,
                                   batch_size=cfg.eval_batch_size, max_batches=cfg.eval_batches,
                                   dtype=cfg.dtype)

    # -- Ctrl-C: finish the step, checkpoint, exit -----------------------------------------
    stop = {"requested": False}

    def on_sigint(signum: int, frame: types.FrameType | None) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None

    # -- the loop ---------------------------------------------------------------------------
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    if main_rank and not cfg.resume and log_path.exists():
        log_path.unlink()
    batches: Iterator[Any] = (_lm_batches(train_data, cfg, pos) if cfg.task == "lm"
                              else _image_batches(images.labels.numel(), cfg, pos, rank, world))
    bar = tqdm(total=cfg.max_steps, initial=pos.step, disable=not (cfg.progress and main_rank),
               dynamic_ncols=True)
    if main_rank:
        for m in _budgeted(model)[:1]:
            seq = cfg.bptt if cfg.task == "lm" else images.seq_len
            seq = min(seq, cfg.truncate) if cfg.truncate else seq
            bar.write(f"plan: {m.plan_for(seq, cfg.batch_size // world, device=device).summary()}",
                      file=sys.stderr)
    metrics: dict[str, Any] = {}
    peak = 0  # the last measured training step's peak (see _measured_step)
    running, seen, t0, tokens = 0.0, 0, time.perf_counter(), 0
    first_step = pos.step
    start_time = time.perf_counter()
    try:
        while pos.step < cfg.max_steps and not stop["requested"]:
            batch = next(batches)
            # measure the first step's memory, and the step before each evaluation's
            measured = pos.step == first_step or (pos.step + 1) % cfg.eval_every == 0
            with _autocast(cfg.dtype, device), _measured_step(device, measured) as meter:
                loss = _train_step(net, model, cfg, batch, pos, images if cfg.task != "lm" else None,
                                   device)
            if meter is not None:
                peak = meter.peak
            if cfg.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            pos.step += 1
            running, seen, tokens = running + loss, seen + 1, tokens + tokens_per_step
            rate = tokens / max(time.perf_counter() - t0, 1e-9)
            bar.update(1)
            bar.set_postfix(_progress(cfg, loss, rate, peak), refresh=False)
            out_of_time = cfg.time_limit > 0 and time.perf_counter() - start_time > cfg.time_limit
            if pos.step % cfg.eval_every == 0 or pos.step == cfg.max_steps or out_of_time:
                metrics = {"step": pos.step, "epoch": pos.epoch, "train_loss": running / seen,
                           **evaluate(), "lr": scheduler.get_last_lr()[0], "tokens_per_s": rate,
                           "elapsed_s": time.perf_counter() - start_time,
                           "peak_bytes": peak}
                running, seen = 0.0, 0
                if main_rank:
                    with log_path.open("a") as f:
                        f.write(json.dumps(metrics) + "\n")
                    bar.write(_describe(cfg, metrics), file=sys.stderr)
            if cfg.checkpoint_every and pos.step % cfg.checkpoint_every == 0:
                checkpoint()
            if cfg.stop_at and pos.step >= cfg.stop_at:
                stop["requested"] = True
            if out_of_time:
                break
    except KeyboardInterrupt:  # a second Ctrl-C, mid-step: the last checkpoint stands
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        raise
    bar.close()
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
    checkpoint()
    if main_rank and not stop["requested"]:
        save_pretrained(model, out / "model", extra={"training": asdict(cfg), "metrics": metrics})
        if cfg.plot:
            plot_curves(log_path, out / "curves.png")
    if world > 1:
        del net
        dist.barrier()  # every rank done communicating before the group is torn down
        if owns_group:
            dist.destroy_process_group()
    return {**metrics, "step": pos.step, "stopped": stop["requested"]}


def _train_step(net: nn.Module, model: nn.Module, cfg: TrainConfig, batch: Any, pos: Position,
                images: ClassifyData | None, device: torch.device) -> float:
    """Forward and backward of one batch (gradients accumulate in the parameters)."""
    if images is None:
        inputs, targets = batch
        T = inputs.shape[0]
        chunk = cfg.truncate if 0 < cfg.truncate < T else T
        total = 0.0
        for s in range(0, T, chunk):  # truncate: detach the state every `chunk` steps
            x, y = inputs[s: s + chunk], targets[s: s + chunk]
            loss, state = net(x, y, _detach(pos.state))
            (loss * (x.shape[0] / T)).backward()
            pos.state = _detach(state)
            total += float(loss.detach()) * x.shape[0] / T
        return total
    x, y = images.batch(batch)
    if cfg.dtype == "float64":
        x = x.double()
    loss, _ = net(_on(x, device), y.to(device), truncate=cfg.truncate)
    loss.backward()
    return float(loss.detach())


def _on(x: Tensor | PackedSequence, device: torch.device) -> Tensor | PackedSequence:
    return x.to(device) if isinstance(x, Tensor) else cast(PackedSequence, cast(Any, x).to(device))


def _to(state: Any, device: torch.device) -> Any:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.to(device)
    return tuple(_to(s, device) for s in state)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _budgeted(model: nn.Module) -> list[Any]:
    """The model's budgeted recurrences: ``mbrnn.Recurrent`` and ``mbrnn.LSTM``/``GRU``/``RNN``
    (anything with ``plan_for`` and a ``memory_budget``)."""
    return [m for m in model.modules()
            if hasattr(m, "plan_for") and getattr(m, "memory_budget", None) is not None]


@contextlib.contextmanager
def _measured_step(device: torch.device, measured: bool) -> Iterator[MemoryMeter | None]:
    """Measure a training step's peak memory when ``measured``: the tensor memory it
    allocates above what was live when it began (activations, recomputation, gradients;
    not the weights or the optimizer's state). On CPU this is the dispatch-mode meter,
    which slows the step it watches, so only a few steps are measured."""
    if not measured:
        yield None
        return
    with MemoryMeter(device) as meter:
        yield meter


def _progress(cfg: TrainConfig, loss: float, rate: float, peak: int) -> dict[str, str]:
    shown = {"loss": f"{loss:.3f}"}
    if cfg.task == "lm":
        shown["bpc" if cfg.level != "word" else "ppl"] = (
            f"{loss / math.log(2):.3f}" if cfg.level != "word" else f"{math.exp(min(loss, 50)):.1f}")
        shown["tok/s"] = f"{rate:.0f}"
    else:
        shown["seq/s"] = f"{rate:.1f}"
    if peak:
        shown["peak"] = f"{peak / 2**20:.1f}MiB"
    return shown


def _describe(cfg: TrainConfig, m: dict[str, Any]) -> str:
    head = f"step {m['step']}: train {m['train_loss']:.4f} valid {m['loss']:.4f}"
    if cfg.task == "classify":
        return f"{head} acc {100 * m['accuracy']:.2f}%"
    return f"{head} ppl {m['ppl']:.2f}" if cfg.level == "word" else f"{head} bpc {m['bpc']:.4f}"


def plot_curves(log_path: Path, png: Path) -> None:
    """Train and validation loss against step, from ``log.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in rows], [r["train_loss"] for r in rows], label="train")
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="valid")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def configure_parser(p: argparse.ArgumentParser) -> None:
    """``--config PRESET`` and one ``--key=value`` option per :class:`TrainConfig` field."""
    p.add_argument("--config", default=None, metavar="PRESET",
                   help="a preset name in scripts/configs/ or a .toml path")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f"set_{f.name}", nargs="?", const="true", default=None,
                           metavar="BOOL")
        else:
            p.add_argument(flag, dest=f"set_{f.name}", default=None, metavar=str(f.type).upper())


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set_") and v is not None}
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    """``python -m mbrnn.train`` (and ``torchrun``) entry point: ``mbrnn train``'s options."""
    import sys

    from .cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
