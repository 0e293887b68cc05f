"""Benchmark what a fused kernel call costs: the figures behind "auto"'s call charge.

Two measurements on ``torch._VF.lstm``, the kernel ``nn.LSTM`` and ``mbrnn.LSTM`` call:

- ``calls``: ``T`` steps without autograd, run as calls of 1 step and as calls of
  ``--long`` steps, for several ``(B, H)``. ``call_cost_steps`` is the fixed time of one
  call in units of one step of a long call: ``(t_1 - t_long) / t_long``, per step. This
  is what NOTE [ Per-run time ] in ``mbrnn/nn/rnn.py`` quotes, and why ``"auto"``
  charges ``RUN_COST_STEPS`` per call.
- ``phases``: one ``nn.LSTM`` over ``--T`` steps (B = 32, H = 256): the forward without
  autograd, the forward with it, and forward plus backward. A re-run forward step costs
  the first; a stored one, its share of the last.

Medians of ``--repeats``, one torch thread on CPU (see bench_bptt's NOTE [ Threads ]).
Writes ``<out>/calls.json`` and ``<out>/calls.png``.

Usage::

    python scripts/bench_calls.py --out bench
    python scripts/bench_calls.py --quick --out /tmp/calls      # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import _VF, Tensor, nn

SHAPES = ((8, 256), (32, 256), (128, 256), (32, 64), (32, 1024))


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def call_cost(B: int, H: int, T: int, long: int, repeats: int) -> dict[str, Any]:
    """Seconds per step as 1-step calls and as ``long``-step calls, without autograd."""
    torch.manual_seed(0)
    lstm = nn.LSTM(H, H)
    weights = lstm._flat_weights
    x = torch.randn(T, B, H)

    def sweep(L: int) -> None:
        h, c = torch.zeros(1, B, H), torch.zeros(1, B, H)
        with torch.no_grad():
            for i in range(0, T, L):
                _, h, c = _VF.lstm(x[i : i + L], (h, c), weights, True, 1, 0.0, False, False,
                                   False)

    one = _median_seconds(lambda: sweep(1), repeats) / T
    many = _median_seconds(lambda: sweep(long), repeats) / T
    return {"B": B, "H": H, "T": T, "long": long, "step_seconds_1": one,
            "step_seconds_long": many, "call_cost_steps": (one - many) / many}


def phases(T: int, repeats: int) -> dict[str, Any]:
    """nn.LSTM (B = 32, H = 256) over ``T`` steps: forward without and with autograd, and
    forward plus backward."""
    torch.manual_seed(0)
    lstm = nn.LSTM(256, 256)
    x, g = torch.randn(T, 32, 256), torch.randn(T, 32, 256)

    def no_grad() -> None:
        with torch.no_grad():
            lstm(x)

    def both() -> None:
        y: Tensor = lstm(x)[0]
        y.backward(g)

    return {"T": T, "B": 32, "H": 256,
            "forward_no_grad": _median_seconds(no_grad, repeats),
            "forward_grad": _median_seconds(lambda: lstm(x), repeats),
            "forward_backward": _median_seconds(both, repeats)}


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["calls"]
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"B={r['B']}\nH={r['H']}" for r in rows]
    ax.bar(labels, [r["call_cost_steps"] for r in rows], color="tab:blue")
    ax.axhline(result["run_cost_steps"], color="k", ls="--",
               label=f"auto's charge: {result['run_cost_steps']} steps")
    ax.set_ylabel("fixed time of one call (steps of a long call)")
    ax.set_title("fused LSTM call, no autograd", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "calls.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--T", type=int, default=1000, help="steps of the phases measurement")
    p.add_argument("--steps", type=int, default=256, help="steps of each call-cost sweep")
    p.add_argument("--long", type=int, default=64, help="steps per call of the long calls")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny sizes, seconds")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes: Sequence[tuple[int, int]] = SHAPES
    if args.quick:
        shapes, args.T, args.steps, args.long, args.repeats = ((4, 16),), 20, 16, 8, 1
    from mbrnn.nn.rnn import RUN_COST_STEPS

    result = {
        "machine": {"torch": torch.__version__, "threads": torch.get_num_threads()},
        "run_cost_steps": RUN_COST_STEPS,
        "calls": [call_cost(B, H, args.steps, args.long, args.repeats) for B, H in shapes],
        "phases": phases(args.T, args.repeats),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calls.json").write_text(json.dumps(result, indent=1))
    plot(result, args.out)
    for r in result["calls"]:
        print(f"B={r['B']:4d} H={r['H']:5d}: a call costs {r['call_cost_steps']:6.2f} steps")
    ph = result["phases"]
    print(f"T={ph['T']}: forward without autograd {ph['forward_no_grad']:.3f} s, with "
          f"{ph['forward_grad']:.3f} s, forward + backward {ph['forward_backward']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
