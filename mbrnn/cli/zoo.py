"""``mbrnn train``, ``mbrnn evaluate`` and ``mbrnn sample``: the zoo's subcommands.

Each subcommand is a ``configure_<name>(parser)`` that adds its options and a
``run_<name>(args) -> int`` handler. Only the handlers import torch (through
:mod:`mbrnn.training` and :mod:`mbrnn.hub`), so building the parser stays light.

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
from dataclasses import fields
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..training.config import TrainConfig, load_config, preset_names
from .errors import CommandError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["config_from_args", "configure_evaluate", "configure_sample", "configure_train",
           "run_evaluate", "run_sample", "run_train"]


# --- train ----------------------------------------------------------------------------


def configure_train(p: argparse.ArgumentParser) -> None:
    """``--config PRESET`` and one ``--key=value`` option per :class:`TrainConfig` field."""
    p.add_argument("--config", default=None, metavar="PRESET",
                   help=f"a preset ({', '.join(preset_names())}) or a .toml path")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f"set_{f.name}", nargs="?", const="true", default=None,
                           metavar="BOOL")
        else:
            p.add_argument(flag, dest=f"set_{f.name}", default=None, metavar=str(f.type).upper())


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` that ``mbrnn train``'s parsed options describe."""
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set_") and v is not None}
    return load_config(args.config, overrides)


def run_train(args: argparse.Namespace) -> int:
    """Train; 130 when Ctrl-C stopped the run early (0 for ``--stop-at``)."""
    from ..training.loop import train

    try:
        cfg = config_from_args(args)
        result = train(cfg)
    except ConfigError as e:
        raise CommandError(str(e)) from None
    if result.get("stopped"):
        print(f"stopped after step {result['step']}; checkpoint in {cfg.out}/checkpoint.pt "
              "(continue with --resume)", file=sys.stderr)
        return 130 if result["step"] < cfg.max_steps and not cfg.stop_at else 0
    return 0


# --- evaluate -------------------------------------------------------------------------


def configure_evaluate(p: argparse.ArgumentParser) -> None:
    """``mbrnn evaluate``'s options."""
    p.add_argument("--model", required=True, help="a zoo name, a model folder or a Hub repo id")
    p.add_argument("--split", default=None, choices=("train", "valid", "test"),
                   help="default: test, or valid where the data has no test split")
    p.add_argument("--data", default=None, help="data path (default: the one the model was trained on)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--bptt", type=int, default=None)
    p.add_argument("--max-batches", type=int, default=0, help="0: the whole split")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def _load(name: str, device: str) -> nn.Module:
    from ..hub import from_pretrained

    try:
        return from_pretrained(name, map_location=device)
    except (OSError, ValueError, TypeError) as e:
        raise CommandError(f"cannot load model {name!r}: {e}") from None


def run_evaluate(args: argparse.Namespace) -> int:
    """Print a model's metrics on a split of its data (or ``--data``)."""
    from ..training.evaluate import evaluate_model

    model = _load(args.model, args.device)
    try:
        metrics = evaluate_model(model, args.split, data=args.data, batch_size=args.batch_size,
                                 bptt=args.bptt, max_batches=args.max_batches)
    except ConfigError as e:
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
    """``mbrnn sample``'s options."""
    p.add_argument("--model", required=True, help="a zoo name, a model folder or a Hub repo id")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def run_sample(args: argparse.Namespace) -> int:
    """Write the prompt and its continuation, sampled from a language model, to stdout."""
    import torch

    from ..models import LanguageModel

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
