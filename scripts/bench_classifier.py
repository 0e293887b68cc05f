"""Benchmark a sequence classifier's training step: mbrnn's SequenceClassifier against plain PyTorch.

One training step (forward, the loss on the last state, backward, an SGD step) of
``mbrnn.models.SequenceClassifier`` against the same model written the plain PyTorch
way (``nn.LSTM`` then ``nn.Linear`` on ``h_n``), with the same weights, on long raw
sequences (one feature per step, as raw audio). mbrnn runs without a budget and at
fractions of the plain step's measured peak (``--fractions``): the classifier reads only
the last state, so no ``(T, B, H)`` output nor its gradient is materialised.

- **time**: CPU time of a step (``time.process_time``, one torch thread), medians of
  ``--repeats`` interleaved rounds.
- **memory**: the step's measured peak (:class:`mbrnn.runtime.memory.MemoryMeter`, run
  apart from the timed steps), parameters' gradients included.

Writes ``<out>/classifier.json`` and ``<out>/classifier.png``.

Usage::

    python scripts/bench_classifier.py --out bench
    python scripts/bench_classifier.py --quick --out /tmp/cls     # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrnn.errors import InfeasibleBudgetError
from mbrnn.models import SequenceClassifier, SequenceClassifierConfig
from mbrnn.runtime.memory import MemoryMeter

CONFIGS = [(10_000, 32, 128), (1_000, 32, 128)]  # (T, B, H)
QUICK = [(300, 4, 16)]
CLASSES = 10


class PlainClassifier(nn.Module):
    """``nn.LSTM`` and a linear head on the last hidden state: the reference."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(1, hidden)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        _, (h, _) = self.rnn(x)
        return F.cross_entropy(self.head(h[-1]), labels)


def _models(H: int, budget: int | None, plain: PlainClassifier) -> SequenceClassifier:
    ours = SequenceClassifier(SequenceClassifierConfig(1, CLASSES, hidden_size=H,
                                                       memory_budget=budget))
    for name, p in plain.rnn.named_parameters():
        getattr(ours.rnn, name).data.copy_(p.data)
    ours.head.load_state_dict(plain.head.state_dict())
    return ours.train()


def _step(model: nn.Module, x: Tensor, labels: Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(x, labels)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        opt.step()

    return run


def _peak(fn: Callable[[], None]) -> int:
    with MemoryMeter("cpu") as meter:
        fn()
    return meter.peak


def _cpu(fn: Callable[[], None]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def bench(T: int, B: int, H: int, fractions: Sequence[float], repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    plain = PlainClassifier(H).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, 1, generator=g)
    labels = torch.randint(0, CLASSES, (B,), generator=g)
    plain_step = _step(plain, x, labels)
    plain_peak = _peak(plain_step)
    row: dict[str, Any] = {"T": T, "batch": B, "hidden": H, "plain_peak": plain_peak,
                           "methods": {"plain": {"status": "ok", "peak": plain_peak}}}
    methods: dict[str, Callable[[], None]] = {"plain": plain_step}
    for frac in (None, *fractions):
        name = "mbrnn" if frac is None else f"mbrnn {100 * frac:g}%"
        budget = None if frac is None else int(frac * plain_peak)
        model = _models(H, budget, plain)
        try:
            if budget is not None:
                model.rnn.plan_for(T, B)  # probe and plan outside the measured step
        except InfeasibleBudgetError as e:
            row["methods"][name] = {"budget": budget, "status": "infeasible",
                                    "minimum": int(e.minimum)}
            continue
        methods[name] = _step(model, x, labels)
        peak = _peak(methods[name])
        info: dict[str, Any] = {"budget": budget, "peak": peak, "status": "ok"}
        if budget is not None:
            info["within_budget"] = peak <= budget
            plan = model.rnn.last_plan
            if plan is not None:
                info.update(policy=plan.plan.policy, forward_steps=plan.forward_steps)
        row["methods"][name] = info
    times: dict[str, list[float]] = {m: [] for m in methods}
    for fn in methods.values():
        fn()  # warm
    for _ in range(repeats):
        for m, fn in methods.items():
            times[m].append(_cpu(fn))
    base = statistics.median(times["plain"])
    for m, ts in times.items():
        info = row["methods"][m]
        info["seconds"] = statistics.median(ts)
        info["ratio_to_plain"] = info["seconds"] / base
    return row


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = [f"T={r['T']} B={r['batch']} H={r['hidden']}" for r in rows]
    methods = sorted({m for r in rows for m in r["methods"]})
    width = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        at = [i + k * width for i in range(len(rows))]
        axes[0].bar(at, [r["methods"].get(m, {}).get("ratio_to_plain", float("nan"))
                         for r in rows], width, label=m)
        axes[1].bar(at, [r["methods"].get(m, {}).get("peak", float("nan")) / 2**20
                         for r in rows], width, label=m)
    for ax, label in ((axes[0], "step time / plain PyTorch's"), (axes[1], "step peak (MiB)")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))], names, fontsize=8)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "classifier.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.05])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny sizes, seconds")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "machine": {"torch": torch.__version__, "threads": args.threads,
                    "processor": platform.processor() or platform.machine()},
        "rows": []}
    for T, B, H in QUICK if args.quick else CONFIGS:
        row = bench(T, B, H, args.fractions, 1 if args.quick else args.repeats)
        result["rows"].append(row)
        (args.out / "classifier.json").write_text(json.dumps(result, indent=2))
        for m, info in row["methods"].items():
            if "seconds" in info:
                print(f"T={T:<6d} {m:11s} {info['seconds']:8.3f} s (x{info['ratio_to_plain']:.2f}) "
                      f"peak {info['peak'] / 2**20:9.1f} MiB", flush=True)
            else:
                print(f"T={T:<6d} {m:11s} {info['status']}", flush=True)
    plot(result["rows"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
