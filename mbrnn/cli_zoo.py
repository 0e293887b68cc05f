"""The ``mbrnn train``, ``mbrnn evaluate`` and ``mbrnn sample`` subcommands.

Registered in :mod:`mbrnn.cli`'s ``_COMMANDS``; imported only when one of them runs, so
``mbrnn plan`` stays light.

Example::

    $ mbrnn train --config=shakespeare-char-lstm --max-steps=500 --out=runs/shakespeare
    $ mbrnn evaluate --model shakespeare-char-lstm --split valid
    $ mbrnn sample --model shakespeare-char-lstm --prompt "ROMEO:" --max-new-tokens 200
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, cast

import torch

from .cli import CommandError
from .data import Vocab
from .hub import from_pretrained
from .models import LanguageModel, SequenceClassifier
from .train import (
    TrainConfig,
    TrainError,
    config_from_args,
    configure_parser,
    evaluate_classifier,
    evaluate_lm,
    load_classification,
    load_text,
    train,
)

__all__ = ["configure_evaluate", "configure_sample", "configure_train", "run_evaluate",
           "run_sample", "run_train"]


# --- train ----------------------------------------------------------------------------


def configure_train(p: argparse.ArgumentParser) -> None:
    configure_parser(p)


def run_train(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        result = train(cfg)
    except TrainError as e:
        raise CommandError(str(e)) from None
    if result.get("stopped"):
        print(f"stopped after step {result['step']}; checkpoint in {cfg.out}/checkpoint.pt "
              "(continue with --resume)", file=sys.stderr)
        return 130 if result["step"] < cfg.max_steps and not cfg.stop_at else 0
    return 0


# --- evaluate -------------------------------------------------------------------------


def configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a zoo name, a model folder or a Hub repo id")
    p.add_argument("--split", default=None, choices=("train", "valid", "test"),
                   help="default: test, or valid where the data has no test split")
    p.add_argument("--data", default=None, help="data path (default: the one the model was trained on)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--bptt", type=int, default=None)
    p.add_argument("--max-batches", type=int, default=0, help="0: the whole split")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def _load(name: str, device: str) -> torch.nn.Module:
    try:
        return from_pretrained(name, map_location=device)
    except (OSError, ValueError, TypeError) as e:
        raise CommandError(f"cannot load model {name!r}: {e}") from None


def _training_config(model: torch.nn.Module, data: str | None) -> TrainConfig:
    info = getattr(model, "pretrained_info", {}) or {}
    saved = dict(info.get("training", {}))
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
    if data is not None:
        cfg.data = data
    return cfg


def evaluate_model(model: torch.nn.Module, split: str | None, *, data: str | None = None,
                   batch_size: int | None = None, bptt: int | None = None,
                   max_batches: int = 0) -> dict[str, Any]:
    """Metrics of a loaded model on a split of its training data (or ``data``).

    ``split=None``: the test split, or the validation split where there is no test text.
    """
    default_split = split is None
    split = split or "test"
    cfg = _training_config(model, data)
    if isinstance(model, LanguageModel):
        if model.vocab is None:
            raise TrainError("the model has no tokenizer.json; cannot encode text for it")
        cfg.level = model.config.level
        corpus = load_text(cfg, vocab=cast(Vocab, model.vocab))
        ids = corpus.split(split)
        if ids.numel() < 2 and default_split:
            split, ids = "valid", corpus.split("valid")
        if ids.numel() < 2:
            raise TrainError(f"the {split} split of {cfg.data} is empty")
        m = evaluate_lm(model, ids, batch_size=batch_size or cfg.eval_batch_size,
                        bptt=bptt or cfg.bptt, max_batches=max_batches)
        return {"split": split, **m}
    if isinstance(model, SequenceClassifier):
        seqs = load_classification(cfg, split)
        if seqs.input_size != model.config.input_size or seqs.num_classes != model.config.num_classes:
            raise TrainError(
                f"{cfg.data} has {seqs.input_size} features per step and {seqs.num_classes} "
                f"classes; the model expects {model.config.input_size} and "
                f"{model.config.num_classes}")
        m = evaluate_classifier(model, seqs, batch_size=batch_size or cfg.eval_batch_size,
                                max_batches=max_batches)
        return {"split": split, **m}
    raise TrainError(f"cannot evaluate a {type(model).__name__}")


def run_evaluate(args: argparse.Namespace) -> int:
    model = _load(args.model, args.device)
    try:
        metrics = evaluate_model(model, args.split, data=args.data, batch_size=args.batch_size,
                                 bptt=args.bptt, max_batches=args.max_batches)
    except TrainError as e:
        raise CommandError(str(e)) from None
    if args.json:
        print(json.dumps(metrics))
    elif "accuracy" in metrics:
        print(f"{args.model} {metrics['split']}: loss {metrics['loss']:.4f}  accuracy "
              f"{100 * metrics['accuracy']:.2f}% ({metrics['examples']} sequences)")
    else:
        print(f"{args.model} {metrics['split']}: loss {metrics['loss']:.4f} nats/token  ppl "
              f"{metrics['ppl']:.2f}  bits/token {metrics['loss'] / math.log(2):.4f} "
              f"({metrics['tokens']} tokens)")
    return 0


# --- sample ---------------------------------------------------------------------------


def configure_sample(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a zoo name, a model folder or a Hub repo id")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def run_sample(args: argparse.Namespace) -> int:
    model = _load(args.model, args.device)
    if not isinstance(model, LanguageModel) or model.vocab is None:
        raise CommandError(f"{args.model} is not a language model with a vocabulary")
    if args.max_new_tokens < 0 or args.temperature < 0 or (args.top_k is not None and args.top_k < 1):
        raise CommandError("--max-new-tokens and --temperature must be >= 0 and --top-k >= 1")
    ids = model.vocab.encode(args.prompt)
    if not ids:
        raise CommandError(f"the prompt {args.prompt!r} encodes to no tokens")
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    out = model.generate(torch.tensor(ids), args.max_new_tokens, args.temperature, args.top_k,
                         generator=generator)
    sys.stdout.write(model.vocab.decode(out.tolist()) + "\n")
    return 0



