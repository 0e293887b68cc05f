"""Train a zoo model: :func:`train`, behind ``mbrnn train [--config PRESET] [--key=value ...]``.

One loop for both model kinds: a :class:`~mbrnn.models.LanguageModel` on a text corpus
(``task = "lm"``; stateful BPTT windows, the state carried across windows) and a
:class:`~mbrnn.models.SequenceClassifier` on pixel or file sequences (``task =
"classify"``; full BPTT over the whole sequence). Backward passes run under
``memory_budget`` (Gruslys et al., 2016). A run writes into ``cfg.out``::

    checkpoint.pt   everything to resume exactly (model, optimizer, scheduler, config,
                    step, data position, carried state, every RNG), written atomically
    log.jsonl       one line per evaluation
    curves.png      learning curves (with ``plot = true``)
    model/          the final weights: config.json + model.safetensors (+ tokenizer.json)

Ctrl-C finishes the current step, writes the checkpoint and returns; ``resume = true``
continues bit for bit. Under ``torchrun`` each rank reads a contiguous block of the
streams (:func:`~mbrnn.data.shard_streams`) and DistributedDataParallel averages the
gradients; only rank 0 writes.

Example::

    $ mbrnn train --config=shakespeare-char-lstm --max-steps=2000 --out=runs/shakespeare
    $ torchrun --nproc-per-node=2 -m mbrnn train --config=shakespeare-char-lstm
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from ..data import ClassifyData, Vocab, batchify, shard_streams
from ..errors import ConfigError, InfeasibleBudgetError
from ..hub import save_pretrained
from ..models import (
    LanguageModel,
    LanguageModelConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from ..runtime.memory import MemoryMeter
from .checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig
from .data import Position, classify_batches, lm_batches, load_split, load_text, to_device
from .evaluate import autocast, evaluate_classifier, evaluate_lm
from .log import describe, plot_curves, progress

__all__ = ["build_model", "train"]


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training as configured (see :mod:`mbrnn.training.loop` for what it writes).

    Returns:
        The last evaluation's metrics, with ``step`` (the steps taken) and ``stopped``
        (``True`` when Ctrl-C or ``stop_at`` ended the run before ``max_steps``).

    Raises:
        ConfigError: bad data, a checkpoint of another run, or a budget too small for one
            step; raised before the first step.
    """
    # -- setup: processes, threads, seeds --------------------------------------------------
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    main_rank = rank == 0
    device = torch.device(cfg.device)
    owns_group = world > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if world > 1 and cfg.batch_size % world:
        raise ConfigError(f"batch_size={cfg.batch_size} must be a multiple of the {world} processes")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    out = Path(cfg.out)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"
    ckpt = load_checkpoint(ckpt_path, cfg) if cfg.resume else None

    # -- data ------------------------------------------------------------------------------
    vocab: Vocab | None = None
    images: ClassifyData | None = None  # classify: the training split
    if cfg.task == "lm":
        corpus = load_text(cfg)
        vocab = corpus.vocab
        if ckpt is not None:
            try:
                vocab.check_compatible(Vocab.from_tokens(ckpt["vocab"], level=cast(Any, cfg.level))
                                       if cfg.level != "byte" else vocab)
            except ValueError as e:
                raise ConfigError(f"resume: {e}") from e
        train_data = shard_streams(batchify(corpus.train, cfg.batch_size), rank, world).to(device)
        valid_ids = corpus.valid if corpus.valid.numel() > 1 else corpus.test
        if valid_ids.numel() < 2:
            raise ConfigError(f"corpus {cfg.data} has no validation or test text to evaluate on")
        if cfg.dry_run:
            train_data = train_data[: 8 * cfg.bptt + 1]
        tokens_per_step = cfg.bptt * cfg.batch_size
        seq_len = cfg.bptt
    else:
        images = load_split(cfg, "train")
        valid_images = load_split(cfg, "valid")
        if images.labels.numel() < cfg.batch_size:
            raise ConfigError(f"{cfg.data} has {images.labels.numel()} training sequences, fewer "
                              f"than batch_size={cfg.batch_size}")
        tokens_per_step = cfg.batch_size  # sequences
        seq_len = images.seq_len
    seq_len = min(seq_len, cfg.truncate) if cfg.truncate else seq_len  # one backward's length

    # -- model, optimizer; resume ----------------------------------------------------------
    model = build_model(cfg, vocab, images).to(device)
    if cfg.dtype == "float64":
        model = model.double()
    _check_budget(model, cfg, seq_len, cfg.batch_size // world, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    pos = Position()
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"], strict=True)
        except RuntimeError as e:
            raise ConfigError(f"resume: the checkpoint's weights do not fit this model: {e}") from e
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        pos = Position(ckpt["step"], ckpt["epoch"], ckpt["offset"], _to(ckpt["state"], device))
        set_rng_state(ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0])
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model)

    def save() -> None:
        """Write the checkpoint: every rank's RNG state, written by rank 0."""
        rngs: list[Any] = [rng_state()]
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

    # -- Ctrl-C: finish the step, checkpoint, return; a second Ctrl-C interrupts the step ---
    stop = {"requested": False}

    def on_sigint(signum: int, frame: types.FrameType | None) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None

    # -- the loop --------------------------------------------------------------------------
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
    if main_rank and not cfg.resume and log_path.exists():
        log_path.unlink()
    batches: Iterator[Any] = (lm_batches(train_data, cfg, pos) if images is None
                              else classify_batches(images.labels.numel(), cfg, pos, rank, world))
    bar = tqdm(total=cfg.max_steps, initial=pos.step, disable=not (cfg.progress and main_rank),
               dynamic_ncols=True)
    if main_rank:
        for m in _budgeted(model)[:1]:
            bar.write(f"plan: {m.plan_for(seq_len, cfg.batch_size // world, device=device).summary()}",
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
            with autocast(cfg.dtype, device), _measured_step(device, measured) as meter:
                loss = _train_step(net, cfg, batch, pos, images, device)
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
            bar.set_postfix(progress(cfg, loss, rate, peak), refresh=False)
            out_of_time = cfg.time_limit > 0 and time.perf_counter() - start_time > cfg.time_limit
            if pos.step % cfg.eval_every == 0 or pos.step == cfg.max_steps or out_of_time:
                if images is None:
                    scores = evaluate_lm(cast(LanguageModel, model), valid_ids,
                                         batch_size=cfg.eval_batch_size, bptt=cfg.bptt,
                                         max_batches=cfg.eval_batches, dtype=cfg.dtype)
                else:
                    scores = evaluate_classifier(cast(SequenceClassifier, model), valid_images,
                                                 batch_size=cfg.eval_batch_size,
                                                 max_batches=cfg.eval_batches, dtype=cfg.dtype)
                metrics = {"step": pos.step, "epoch": pos.epoch, "train_loss": running / seen,
                           **scores, "lr": scheduler.get_last_lr()[0], "tokens_per_s": rate,
                           "elapsed_s": time.perf_counter() - start_time, "peak_bytes": peak}
                running, seen = 0.0, 0
                if main_rank:
                    with log_path.open("a") as f:
                        f.write(json.dumps(metrics) + "\n")
                    bar.write(describe(cfg, metrics), file=sys.stderr)
            if cfg.checkpoint_every and pos.step % cfg.checkpoint_every == 0:
                save()
            if cfg.stop_at and pos.step >= cfg.stop_at:
                stop["requested"] = True
            if out_of_time:
                break
    except KeyboardInterrupt:  # a second Ctrl-C, mid-step: the last checkpoint stands
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        raise

    # -- teardown: checkpoint, final weights, curves ---------------------------------------
    bar.close()
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
    save()
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


def build_model(cfg: TrainConfig, vocab: Vocab | None, data: ClassifyData | None = None) -> nn.Module:
    """The configured model: a language model over ``vocab`` (``task = "lm"``) or a
    classifier sized for ``data`` (Fashion-MNIST's sizes without it)."""
    budget: int | str | None = cfg.memory_budget or None
    if cfg.task == "lm":
        if vocab is None:
            raise ValueError("build_model: task='lm' needs the corpus vocabulary; pass "
                             "vocab=corpus.vocab")
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


def _train_step(net: nn.Module, cfg: TrainConfig, batch: Any, pos: Position,
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
    loss, _ = net(to_device(x, device), y.to(device), truncate=cfg.truncate)
    loss.backward()
    return float(loss.detach())


def _check_budget(model: nn.Module, cfg: TrainConfig, seq_len: int, batch: int,
                  device: torch.device) -> None:
    """Fail before training when the budget cannot hold one step of this run."""
    if not cfg.memory_budget:
        return
    for rnn in _budgeted(model):
        try:
            rnn.plan_for(seq_len, batch, device=device)
        except InfeasibleBudgetError as e:
            raise ConfigError(f"memory_budget={cfg.memory_budget} is too small: {e}") from e
        except ValueError as e:
            raise ConfigError(f"memory_budget={cfg.memory_budget!r}: {e}") from e


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


def _lr_lambda(cfg: TrainConfig) -> Any:
    """The learning-rate factor per step: linear warm-up, then cosine to 0.1 (or constant)."""
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        done = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * done))

    return factor


def _detach(state: Any) -> Any:
    """A recurrent state (a tensor or nested tuples of them, or None) cut from the graph."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(_detach(s) for s in state)


def _to(state: Any, device: torch.device) -> Any:
    """A recurrent state moved to ``device``."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.to(device)
    return tuple(_to(s, device) for s in state)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
