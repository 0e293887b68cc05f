"""Benchmark planning: the first call's overhead, solve() times, and variable-length data.

Three measurements, CPU time on one torch thread (``time.process_time``: a busy machine
inflates wall time, not this):

- ``first_call``: ``mbrnn.LSTM(256, 256)`` at B = 32, one layer: the extra time of the
  first budgeted forward + backward for a new module (probe, tables, plan) over the same
  call once warm, for T = 100, 1,000, 10,000 and 100,000 (``--T``), at ``auto`` 20 %, 5 %
  and 2 % of the module's store-all prediction. The planner's table cache is cleared
  before each module, so each row is a cold process's first call.
- ``solve``: ``mbrnn.plan.solve`` per policy, T and budget (a fraction of store-all), the
  table cache cleared before each: a cold solve.
- ``variable``: ``--batches`` batches with T uniform in ``[--lo, --hi]`` (B = 16, H = 256,
  one layer) at 5 % of the longest length's store-all: ``nn.LSTM`` on the same batches,
  mbrnn with length buckets from a cold start, and mbrnn with every bucket planned
  before the loop. Also each batch's predicted peak against the budget, and the
  bucketing's loss in forward steps against planning each length on its own.

Writes ``<out>/planning.json`` (after every row) and ``<out>/planning.png``.

Usage::

    python scripts/bench_planning.py --out bench
    python scripts/bench_planning.py --quick --out /tmp/planning     # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import mbrnn
from mbrnn.plan import Chain, solve
from mbrnn.plan.buckets import bucket_length
from mbrnn.plan.table import tables
from mbrnn.runtime import fit as fit_mod


def _cpu(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def _cold() -> None:
    tables.clear()
    fit_mod._fit_cached.cache_clear()
    fit_mod._restricted.cache_clear()


def _step(m: nn.Module, x: torch.Tensor) -> None:
    y, _ = m(x)
    y.sum().backward()


def first_call(T: int, B: int, H: int, fractions: Sequence[float]) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    x = torch.randn(T, B, H)
    ref = mbrnn.LSTM(H, H)
    store = ref.plan_for(T, B, memory_budget=None).predicted_peak
    rows = []
    for frac in fractions:
        _cold()
        budget = max(int(frac * store), ref.minimum_budget(T, B))  # tiny sizes: the minimum
        m = mbrnn.LSTM(H, H, memory_budget=budget)
        m.load_state_dict(ref.state_dict())
        first = _cpu(lambda m=m: _step(m, x))
        warm = statistics.median(_cpu(lambda m=m: _step(m, x)) for _ in range(2))
        assert m.last_plan is not None
        rows.append({"T": T, "B": B, "H": H, "fraction": frac, "first_s": first,
                     "warm_s": warm, "overhead_s": first - warm,
                     "overhead_of_step": (first - warm) / warm,
                     "policy": m.last_plan.plans[0].plan.policy,
                     "forward_steps": m.last_plan.forward_steps, "runs": m.last_plan.runs})
        print(f"first call T={T:>7,} {100 * frac:4.0f}%: +{first - warm:6.2f} s over a warm "
              f"step of {warm:6.2f} s ({rows[-1]['policy']})", flush=True)
    return rows


def solve_times(Ts: Sequence[int], fractions: Sequence[float], alpha: float
                ) -> list[dict[str, Any]]:
    rows = []
    for T in Ts:
        chain = Chain(T, 1.0, alpha)
        for frac in fractions:
            for policy in ("msm", "hsm", "auto"):
                _cold()
                budget = max(2.0, frac * chain.store_all_peak)
                t = time.process_time()
                plan = solve(chain, budget, policy)
                seconds = time.process_time() - t
                rows.append({"T": T, "fraction": frac, "policy": policy, "seconds": seconds,
                             "forward_steps": plan.forward_steps})
                print(f"solve {policy:4s} T={T:>9,} {100 * frac:4.0f}%: {seconds:7.3f} s",
                      flush=True)
    return rows


def variable(batches: int, lo: int, hi: int, B: int, H: int, frac: float) -> dict[str, Any]:
    rng = random.Random(0)
    lengths = [rng.randint(lo, hi) for _ in range(batches)]
    torch.manual_seed(0)
    xs = [torch.randn(T, B, H) for T in lengths]
    ref = nn.LSTM(H, H)
    probe = mbrnn.LSTM(H, H)
    budget = max(int(frac * probe.plan_for(hi, B, memory_budget=None).predicted_peak),
                 probe.minimum_budget(hi, B))

    def loop(m: nn.Module) -> float:
        return sum(_cpu(lambda x=x: _step(m, x)) for x in xs)

    out: dict[str, Any] = {"batches": batches, "lo": lo, "hi": hi, "B": B, "H": H,
                           "fraction": frac, "budget": budget, "lengths": lengths}
    out["nn_lstm_s"] = loop(ref)
    _cold()
    cold = mbrnn.LSTM(H, H, memory_budget=budget)
    cold.load_state_dict(ref.state_dict())
    out["mbrnn_cold_s"] = loop(cold)
    peaks, steps, own = [], [], []
    for T in lengths:  # each batch's plan: within the budget, and its cost against its own
        fp = cold.plan_for(T, B)
        peaks.append(fp.predicted_peak)
        steps.append(fp.forward_steps)
        own.append(cold.plan_for(T, B, memory_budget=budget).forward_steps
                   if cold.bucket_ratio == 1 else _own(cold, T, B, budget))
    out["predicted_peaks"], out["within_budget"] = peaks, all(p <= budget for p in peaks)
    out["bucket_loss_max"] = max(s / o - 1 for s, o in zip(steps, own, strict=True))
    out["buckets"] = len({bucket_length(T) for T in lengths})
    warm = mbrnn.LSTM(H, H, memory_budget=budget)
    warm.load_state_dict(ref.state_dict())
    for T in lengths:
        warm.plan_for(T, B)  # every bucket planned before the loop
    out["mbrnn_preplanned_s"] = loop(warm)
    out["cold_over_preplanned"] = out["mbrnn_cold_s"] / out["mbrnn_preplanned_s"]
    print(f"variable lengths: nn.LSTM {out['nn_lstm_s']:.1f} s, mbrnn cold "
          f"{out['mbrnn_cold_s']:.1f} s, pre-planned {out['mbrnn_preplanned_s']:.1f} s "
          f"({out['cold_over_preplanned']:.3f}x), {out['buckets']} buckets, worst bucket "
          f"loss {100 * out['bucket_loss_max']:.3f} %", flush=True)
    return out


def _own(m: mbrnn.LSTM, T: int, B: int, budget: int) -> int:
    ratio = m.bucket_ratio
    m.bucket_ratio = 1.0
    try:
        return m.plan_for(T, B, memory_budget=budget).forward_steps
    finally:
        m.bucket_ratio = ratio


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for frac in sorted({r["fraction"] for r in result["first_call"]}):
        rows = [r for r in result["first_call"] if r["fraction"] == frac]
        ax.plot([r["T"] for r in rows], [r["overhead_s"] for r in rows], "o-",
                label=f"auto {100 * frac:g} %")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T (steps)")
    ax.set_ylabel("first call's extra CPU time (s)")
    ax.set_title("first-call overhead, LSTM 256, B=32")
    ax.legend(fontsize=8)
    ax = axes[1]
    for policy in ("msm", "hsm", "auto"):
        for frac in sorted({r["fraction"] for r in result["solve"]}):
            rows = [r for r in result["solve"] if r["policy"] == policy and r["fraction"] == frac]
            ax.plot([r["T"] for r in rows], [max(r["seconds"], 1e-5) for r in rows], "o-",
                    label=f"{policy} {100 * frac:g} %")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T (steps)")
    ax.set_ylabel("cold solve() CPU time (s)")
    ax.set_title("planning time (alpha = 4)")
    ax.legend(fontsize=6, ncol=2)
    ax = axes[2]
    v = result["variable"]
    names = ["nn.LSTM", "mbrnn, cold", "mbrnn, pre-planned"]
    ax.bar(names, [v["nn_lstm_s"], v["mbrnn_cold_s"], v["mbrnn_preplanned_s"]],
           color=["tab:gray", "tab:blue", "tab:green"])
    ax.set_ylabel("CPU time of the loop (s)")
    ax.set_title(f"{v['batches']} batches, T in [{v['lo']}, {v['hi']}], 5 % budget")
    fig.tight_layout()
    fig.savefig(out / "planning.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--T", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    p.add_argument("--solve-T", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.05, 0.02])
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--lo", type=int, default=1000)
    p.add_argument("--hi", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny sizes, seconds")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    B, H, vB = 32, 256, 16
    if args.quick:
        args.T, args.solve_T, args.fractions = [50, 200], [200, 3000], [0.2, 0.05]
        args.batches, args.lo, args.hi, B, H, vB = 4, 70, 300, 4, 16, 4
    result: dict[str, Any] = {
        "machine": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine()},
        "first_call": [], "solve": [], "variable": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        (args.out / "planning.json").write_text(json.dumps(result, indent=1))

    for T in args.T:
        result["first_call"] += first_call(T, B, H, args.fractions)
        save()
    result["solve"] = solve_times(args.solve_T, [*args.fractions, 0.5], 4.0)
    save()
    result["variable"] = variable(args.batches, args.lo, args.hi, vB, H, 0.05)
    save()
    plot(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
