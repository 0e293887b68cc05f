"""Benchmark a language model's training step: mbrnn's LanguageModel against plain PyTorch.

One training step (forward, the loss at every step, backward, an SGD step) of
``mbrnn.models.LanguageModel`` against the same model written the plain PyTorch way, as
pytorch/examples' ``word_language_model`` does: ``nn.Embedding -> nn.LSTM -> nn.Linear ->
F.cross_entropy``, with the same weights. mbrnn runs without a budget (``None``) and at
fractions of the plain model's measured step peak (``--fractions``).

- **time**: CPU time of a step (``time.process_time``, one torch thread), medians of
  ``--repeats`` rounds in which the methods take turns (interleaved).
- **memory**: the step's measured peak (:class:`mbrnn.runtime.memory.MemoryMeter`, run
  apart from the timed steps): everything the step allocates, parameters' gradients
  included. Where plain PyTorch's step would take more than ``--max-plain-gib``, its peak
  is extrapolated from a window of a tenth the length (activations grow linearly in T),
  and it is not timed.

Writes ``<out>/lm.json`` (after every configuration) and ``<out>/lm.png``.

Usage::

    python scripts/bench_lm.py --out bench
    python scripts/bench_lm.py --configs word10k-256-35 char-256-1000 --out bench
    python scripts/bench_lm.py --quick --out /tmp/lm       # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrnn.errors import InfeasibleBudgetError
from mbrnn.models import LanguageModel, LanguageModelConfig
from mbrnn.runtime.memory import MemoryMeter


@dataclass(frozen=True)
class Config:
    name: str
    vocab: int
    hidden: int
    layers: int
    bptt: int
    batch: int


CONFIGS = {c.name: c for c in (
    Config("word10k-256-35", 10_000, 256, 2, 35, 20),
    Config("word10k-256-1000", 10_000, 256, 2, 1000, 20),
    Config("word33k-256-35", 33_278, 256, 2, 35, 20),
    Config("word33k-650-35", 33_278, 650, 2, 35, 20),
    Config("word33k-650-1000", 33_278, 650, 2, 1000, 20),
    Config("char-256-100", 100, 256, 2, 100, 32),
    Config("char-256-1000", 100, 256, 2, 1000, 32),
    Config("char-256-10000", 100, 256, 2, 10_000, 32),
)}
QUICK = (Config("quick-word", 500, 16, 2, 30, 4), Config("quick-char", 40, 16, 2, 300, 4))


class PlainLM(nn.Module):
    """pytorch/examples' word_language_model, tied weights: the reference."""

    def __init__(self, vocab: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.rnn = nn.LSTM(hidden, hidden, layers)
        self.decoder = nn.Linear(hidden, vocab)
        self.decoder.weight = self.embedding.weight

    def forward(self, ids: Tensor, targets: Tensor) -> Tensor:
        y, _ = self.rnn(self.embedding(ids))
        logits = self.decoder(y)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def _models(c: Config) -> tuple[PlainLM, LanguageModel]:
    torch.manual_seed(0)
    plain = PlainLM(c.vocab, c.hidden, c.layers)
    cfg = LanguageModelConfig(vocab_size=c.vocab, level="char" if c.vocab < 1000 else "word",
                              embedding_size=c.hidden, hidden_size=c.hidden, num_layers=c.layers)
    ours = LanguageModel(cfg)
    ours.embedding.weight.data.copy_(plain.embedding.weight.data)
    for name, p in plain.rnn.named_parameters():
        getattr(ours.rnn, name).data.copy_(p.data)
    assert ours.decoder is not None
    ours.decoder.bias.data.copy_(plain.decoder.bias.data)
    return plain, ours


def _step(model: nn.Module, ids: Tensor, targets: Tensor) -> Callable[[], float]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def run() -> float:
        opt.zero_grad(set_to_none=True)
        out = model(ids, targets)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run


def _peak(fn: Callable[[], float]) -> int:
    with MemoryMeter("cpu") as meter:
        fn()
    return meter.peak


def _cpu(fn: Callable[[], float]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def bench(c: Config, fractions: Sequence[float], repeats: int, max_plain: float,
          time_cap: float) -> dict[str, Any]:
    plain, ours = _models(c)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, c.vocab, (c.bptt + 1, c.batch), generator=g)
    x, y = ids[:-1], ids[1:]
    row: dict[str, Any] = {**c.__dict__, "methods": {}}
    # the plain step's peak: measured, or extrapolated from a tenth of the window
    estimate = 3 * c.bptt * c.batch * c.vocab * 4  # logits, their softmax and gradient
    plain_runs = estimate <= max_plain * 2**30
    if plain_runs:
        plain_peak = _peak(_step(plain, x, y))
        row["plain_peak_measured"] = True
    else:
        short = max(1, c.bptt // 10)
        plain_peak = _peak(_step(plain, x[:short], y[:short])) * c.bptt // short
        row["plain_peak_measured"] = False
    row["plain_peak"] = plain_peak
    methods: dict[str, Callable[[], float]] = {}
    if plain_runs:
        methods["plain"] = _step(plain, x, y)
    for frac in (None, *fractions):
        name = "mbrnn" if frac is None else f"mbrnn {100 * frac:g}%"
        budget = None if frac is None else int(frac * plain_peak)
        if budget is None and not plain_runs:  # plain autograd's peak: it would not fit either
            row["methods"][name] = {"budget": None, "status": "skipped (as plain)"}
            continue
        ours.config.memory_budget = budget
        try:
            if budget is not None:
                ours.plan_for(c.bptt, c.batch)
        except InfeasibleBudgetError as e:
            row["methods"][name] = {"budget": budget, "status": "infeasible",
                                    "minimum": int(e.minimum)}
            continue
        model = _copy(ours, budget)
        if budget is not None:
            model.plan_for(c.bptt, c.batch)  # probe and plan outside the measured step
        methods[name] = _step(model, x, y)
        peak = _peak(methods[name])
        info: dict[str, Any] = {"budget": budget, "peak": peak, "status": "ok"}
        if budget is not None:
            info["within_budget"] = peak <= budget
            plan = model.last_plan
            assert plan is not None
            info.update(policy=plan.plan.policy, forward_steps=plan.forward_steps,
                        runs=plan.runs, predicted_peak=plan.predicted_peak)
        row["methods"][name] = info
    times: dict[str, list[float]] = {m: [] for m in methods}
    for fn in methods.values():
        fn()  # warm
    for _ in range(repeats):  # interleaved rounds
        for m, fn in methods.items():
            if times[m] and times[m][0] > time_cap:
                continue
            times[m].append(_cpu(fn))
    for m, ts in times.items():
        row["methods"].setdefault(m, {"status": "ok"})["seconds"] = statistics.median(ts)
    base = row["methods"].get("plain", {}).get("seconds")
    for info in row["methods"].values():
        if base and "seconds" in info:
            info["ratio_to_plain"] = info["seconds"] / base
        tokens = c.bptt * c.batch
        if "seconds" in info:
            info["tokens_per_s"] = tokens / info["seconds"]
    return row


def _copy(ours: LanguageModel, budget: int | None) -> LanguageModel:
    cfg = LanguageModelConfig.from_dict({**ours.config.to_dict(), "memory_budget": budget})
    model = LanguageModel(cfg)
    model.load_state_dict(ours.state_dict())
    return model.train()


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    names = [r["name"] for r in rows]
    methods = sorted({m for r in rows for m in r["methods"] if m != "plain"})
    width = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        ratios = [r["methods"].get(m, {}).get("ratio_to_plain", float("nan")) for r in rows]
        axes[0].bar([i + k * width for i in range(len(rows))], ratios, width, label=m)
        peaks = [r["methods"].get(m, {}).get("peak", float("nan")) / max(1, r["plain_peak"])
                 for r in rows]
        axes[1].bar([i + k * width for i in range(len(rows))], peaks, width, label=m)
    for ax, label, title in ((axes[0], "step time / plain PyTorch's", "time of a training step"),
                             (axes[1], "step peak / plain PyTorch's", "memory of a training step")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))], names, rotation=30,
                      ha="right", fontsize=7)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylabel(label)
        ax.set_title(title)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "lm.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.05])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-plain-gib", type=float, default=6.0,
                   help="above this estimated peak, plain PyTorch is extrapolated, not run")
    p.add_argument("--time-cap", type=float, default=120.0,
                   help="a method slower than this per step (s) is timed once")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny sizes, seconds")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = list(QUICK) if args.quick else [CONFIGS[n] for n in args.configs]
    if args.quick:
        args.repeats = 1
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "machine": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine()},
        "rows": [],
    }
    for c in configs:
        row = bench(c, args.fractions, args.repeats, args.max_plain_gib, args.time_cap)
        result["rows"].append(row)
        (args.out / "lm.json").write_text(json.dumps(result, indent=1))
        for m, info in row["methods"].items():
            if "seconds" in info:
                extra = (f", peak {info['peak'] / 2**20:.1f} MiB of {info['budget'] / 2**20:.1f}"
                         if info.get("budget") else "")
                print(f"{c.name:18s} {m:11s} {info['seconds']:7.3f} s "
                      f"(x{info.get('ratio_to_plain', float('nan')):.2f}){extra}", flush=True)
            else:
                print(f"{c.name:18s} {m:11s} {info['status']}", flush=True)
    plot(result["rows"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
