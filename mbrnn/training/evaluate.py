"""Evaluation: a language model's cross-entropy on a token stream, a classifier's loss and
accuracy on a split, and :func:`evaluate_model` for a loaded zoo model on its own data.

Example::

    >>> model = from_pretrained("shakespeare-char-lstm")  # doctest: +SKIP
    >>> evaluate_model(model, "valid", max_batches=10)["bpc"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..data import ClassifyData, Vocab, batchify, bptt_windows
from ..errors import ConfigError
from ..models import LanguageModel, SequenceClassifier
from .config import TrainConfig
from .data import load_split, load_text, to_device

__all__ = ["autocast", "evaluate_classifier", "evaluate_lm", "evaluate_model"]


def autocast(dtype: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for a config's ``"bfloat16"``/``"float16"``; else nothing."""
    if dtype in ("bfloat16", "float16"):
        return torch.autocast(device.type, dtype=getattr(torch, dtype))
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_lm(model: LanguageModel, ids: Tensor, *, batch_size: int, bptt: int,
                max_batches: int = 0, dtype: str = "float32") -> dict[str, float]:
    """Token-weighted mean cross-entropy over ``ids`` (1-D), with ppl and bits per token.

    Args:
        model: the language model (evaluated in eval mode; its mode is restored).
        ids: the token stream, read as ``batch_size`` streams (fewer for short text) in
            windows of ``bptt`` steps, the state carried across windows.
        max_batches: stop after this many windows; 0 reads them all.
        dtype: a config's dtype; ``"bfloat16"``/``"float16"`` evaluate under autocast.

    Returns:
        ``{"loss", "ppl", "bpc", "tokens"}``: nats per token, perplexity, bits per token
        and the number of tokens scored.
    """
    was = model.training
    model.eval()
    batched = batchify(ids.to(model.device), min(batch_size, max(1, ids.numel() // 2)))
    total, count, state = 0.0, 0, None
    for i, w in enumerate(bptt_windows(batched, bptt)):
        if max_batches and i >= max_batches:
            break
        with autocast(dtype, model.device):
            loss, state = model(w.input, w.target, state)
        total += float(loss) * w.target.numel()
        count += w.target.numel()
    model.train(was)
    loss = total / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bpc": loss / math.log(2), "tokens": count}


@torch.no_grad()
def evaluate_classifier(model: SequenceClassifier, data: ClassifyData, *, batch_size: int,
                        max_batches: int = 0, dtype: str = "float32") -> dict[str, float]:
    """Mean cross-entropy and accuracy over ``data``, in order, ``batch_size`` at a time.

    Returns:
        ``{"loss", "accuracy", "examples"}``.
    """
    was = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for i, start in enumerate(range(0, data.labels.numel(), batch_size)):
        if max_batches and i >= max_batches:
            break
        x, y = data.batch(torch.arange(start, min(start + batch_size, data.labels.numel())))
        with autocast(dtype, model.device):
            loss, logits = cast(tuple[Tensor, Tensor],
                                model(to_device(x, model.device), y.to(model.device)))
        total += float(loss) * y.numel()
        correct += int((logits.argmax(1).cpu() == y).sum())
        count += y.numel()
    model.train(was)
    return {"loss": total / max(count, 1), "accuracy": correct / max(count, 1), "examples": count}


def _training_config(model: nn.Module, data: str | None) -> TrainConfig:
    """The config a zoo model was trained with (from its ``pretrained_info``), ``data`` replaced."""
    info = getattr(model, "pretrained_info", {}) or {}
    saved = dict(info.get("training", {}))
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
    if data is not None:
        cfg.data = data
    return cfg


def evaluate_model(model: nn.Module, split: str | None, *, data: str | None = None,
                   batch_size: int | None = None, bptt: int | None = None,
                   max_batches: int = 0) -> dict[str, Any]:
    """Metrics of a loaded model on a split of its training data (or ``data``).

    Args:
        model: a :class:`~mbrnn.models.LanguageModel` or
            :class:`~mbrnn.models.SequenceClassifier`, as :func:`~mbrnn.hub.from_pretrained`
            loads it (its training config says where its data is).
        split: ``"train"``, ``"valid"`` or ``"test"``; ``None``: the test split, or the
            validation split where there is no test text.
        data: another data path or folder name in place of the training data.
        batch_size, bptt: default: the training config's ``eval_batch_size`` and ``bptt``.
        max_batches: stop after this many batches; 0 reads the whole split.

    Returns:
        ``{"split": ..., **metrics}`` with :func:`evaluate_lm`'s or
        :func:`evaluate_classifier`'s metrics.

    Raises:
        ConfigError: missing or unfitting data, an empty split, or a model of another kind.
    """
    default_split = split is None
    split = split or "test"
    cfg = _training_config(model, data)
    if isinstance(model, LanguageModel):
        if model.vocab is None:
            raise ConfigError("the model has no tokenizer.json; cannot encode text for it")
        cfg.level = model.config.level
        corpus = load_text(cfg, vocab=cast(Vocab, model.vocab))
        ids = corpus.split(split)
        if ids.numel() < 2 and default_split:
            split, ids = "valid", corpus.split("valid")
        if ids.numel() < 2:
            raise ConfigError(f"the {split} split of {cfg.data} is empty")
        m = evaluate_lm(model, ids, batch_size=batch_size or cfg.eval_batch_size,
                        bptt=bptt or cfg.bptt, max_batches=max_batches)
        return {"split": split, **m}
    if isinstance(model, SequenceClassifier):
        seqs = load_split(cfg, split)
        if seqs.input_size != model.config.input_size or seqs.num_classes != model.config.num_classes:
            raise ConfigError(
                f"{cfg.data} has {seqs.input_size} features per step and {seqs.num_classes} "
                f"classes; the model expects {model.config.input_size} and "
                f"{model.config.num_classes}")
        m = evaluate_classifier(model, seqs, batch_size=batch_size or cfg.eval_batch_size,
                                max_batches=max_batches)
        return {"split": split, **m}
    raise ConfigError(f"cannot evaluate a {type(model).__name__}")
