"""Benchmark the planner: how long planning takes, and how close the long-sequence plans are.

Two measurements, written to ``<out>/planner.json`` and drawn to ``<out>/planner.png``:

1. Planning time per policy for ``T`` in {1e3, 1e4, 1e5, 1e6} and budgets of 1, 5, 20
   and 50 % of the store-all peak (state size 1, internal size 4: alpha = 4). ``solve()``
   is lazy: it computes ``forward_steps`` and a recipe for the ops. So three times are
   recorded apart: ``solve`` (median of a few repeats, the ``tables`` cache cleared
   before each), ``emit`` (generating the ops: ``list(plan.ops)``) and ``replay``
   (``simulate_ops`` on them: validity, peak, runs). A combination whose time,
   extrapolated linearly in ``T`` from the previous length, would pass ``--max-seconds``
   is skipped and recorded with the reason.
2. The hierarchical MSM plan's gap to the exact optimum for ``T`` in {1000, 2000, 5000}
   at modest budgets (the exact table is O(T^2 * budget) work and T * budget int32
   memory): ``solve(..., exact=True)`` against ``solve(..., leaf=L)``, the hierarchical
   plan whose exact pieces are at most ``L`` steps: ``L = 1024`` (the default,
   ``EXACT_LIMIT``) and ``L = 128``, which makes a 1,000-step sequence as many pieces
   long as a 8,000-step one is by default.

Each timing row also holds a lower bound on the forward steps of *any* plan:
``C >= 2T - K``, where ``K = floor((budget - s) / a) + 1`` is the most internal states
the first sweep can leave held (every other step must run a second time).

Usage::

    python scripts/bench_planner.py              # the full run (several minutes)
    python scripts/bench_planner.py --quick      # a smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from mbrnn.errors import InfeasibleBudgetError, PlanError
from mbrnn.plan import Chain, Plan, simulate_ops, solve
from mbrnn.plan.table import tables

R = TypeVar("R")

POLICIES = ("store_all", "recompute_all", "chen", "hsm", "ism", "msm", "auto")
COLOURS = {"store_all": "tab:green", "recompute_all": "tab:brown", "chen": "tab:purple",
           "hsm": "tab:blue", "ism": "tab:orange", "msm": "tab:red", "auto": "black"}


@dataclass(frozen=True)
class BenchConfig:
    lengths: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    fractions: tuple[float, ...] = (0.01, 0.05, 0.20, 0.50)
    policies: tuple[str, ...] = POLICIES
    state_size: float = 1.0
    internal_size: float = 4.0
    repeats: int = 5
    repeat_seconds: float = 5.0  # fewer repeats once the solves add up to this
    max_seconds: float = 60.0  # skip a solve, emit or replay predicted to take longer
    gap_lengths: tuple[int, ...] = (1_000, 2_000, 5_000)
    gap_fractions: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.20)
    gap_leaves: tuple[int, ...] = (1_024, 128)
    gap_max_work: float = 2.6e10  # skip exact tables above T^2 * budget units


QUICK = BenchConfig(
    lengths=(200, 1_100),
    fractions=(0.01, 0.20),
    repeats=1,
    max_seconds=5.0,
    gap_lengths=(1_100,),
    gap_fractions=(0.01,),
    gap_leaves=(1_024, 128),
    gap_max_work=1e9,
)


@dataclass
class TimingRow:
    T: int
    fraction: float
    budget: float
    alpha: float
    policy: str
    status: str  # "ok", "infeasible" or "skipped"
    reason: str = ""
    chosen: str | None = None
    exact: bool | None = None
    forward_steps: int | None = None
    recompute_factor: float | None = None
    lower_bound: int = 0
    solve_seconds: float | None = None
    solve_repeats: list[float] = field(default_factory=list)
    emit_seconds: float | None = None
    replay_seconds: float | None = None
    ops: int | None = None
    valid: bool | None = None  # the replay accepted the plan within its budget
    runs: int | None = None
    peak_fraction: float | None = None
    minimum_budget: float | None = None


@dataclass
class GapRow:
    T: int
    fraction: float
    budget: float
    policy: str
    leaf: int
    status: str  # "ok" or "skipped"
    reason: str = ""
    exact_C: int | None = None
    hierarchical_C: int | None = None
    gap_percent: float | None = None
    exact_seconds: float | None = None
    hierarchical_seconds: float | None = None


# ---------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def lower_bound(chain: Chain, budget: float) -> int:
    """Fewest forward steps any plan can take: ``2T - K`` (see the module docstring)."""
    T = chain.length
    kept = math.floor((budget - chain.state_size) / chain.internal_size + 1e-9) + 1
    return 2 * T - min(T, max(kept, 0))


def timed(fn: Callable[[], R]) -> tuple[float, R]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def time_solve(chain: Chain, budget: float, policy: str,
               cfg: BenchConfig) -> tuple[Plan, list[float]]:
    """Up to ``cfg.repeats`` cold solves, stopping once they add up to ``repeat_seconds``."""
    times: list[float] = []
    while True:
        tables.clear()
        dt, plan = timed(lambda: solve(chain, budget, policy))
        times.append(dt)
        if len(times) >= cfg.repeats or sum(times) > cfg.repeat_seconds:
            return plan, times


def predicted(previous: dict[tuple[str, float, str], float], key: tuple[str, float, str],
              ratio: float) -> float | None:
    seconds = previous.get(key)
    return None if seconds is None else seconds * ratio


def bench_timing(cfg: BenchConfig, log: Callable[[str], None]) -> list[TimingRow]:
    rows: list[TimingRow] = []
    last: dict[tuple[str, float, str], float] = {}  # (policy, fraction, what) -> seconds
    last_T: int | None = None
    for T in cfg.lengths:
        chain = Chain(T, cfg.state_size, cfg.internal_size)
        ratio = T / last_T if last_T else 1.0
        seen: dict[tuple[str, float, str], float] = {}
        for frac in cfg.fractions:
            budget = frac * chain.store_all_peak
            for policy in cfg.policies:
                row = TimingRow(T, frac, budget, chain.alpha, policy, "ok",
                                lower_bound=lower_bound(chain, budget))
                rows.append(row)
                guess = predicted(last, (policy, frac, "solve"), ratio)
                if guess is not None and guess > cfg.max_seconds:
                    row.status = "skipped"
                    row.reason = (f"solve predicted {guess:.0f} s (linear in T from "
                                  f"T={last_T}) > --max-seconds {cfg.max_seconds:g}")
                    seen[(policy, frac, "solve")] = guess  # longer T stay skipped
                    log(f"T={T} {frac:.0%} {policy}: skipped ({row.reason})")
                    continue
                try:
                    plan, times = time_solve(chain, budget, policy, cfg)
                except InfeasibleBudgetError as exc:
                    row.status = "infeasible"
                    row.minimum_budget = exc.minimum
                    row.reason = f"needs a budget of {exc.minimum / chain.store_all_peak:.3%}"
                    continue
                row.solve_repeats = times
                row.solve_seconds = statistics.median(times)
                row.chosen = plan.policy
                row.exact = plan.exact
                row.forward_steps = plan.forward_steps
                row.recompute_factor = plan.recompute_factor
                seen[(policy, frac, "solve")] = row.solve_seconds
                guess = predicted(last, (policy, frac, "emit+replay"), ratio)
                if guess is not None and guess > cfg.max_seconds:
                    row.reason = (f"emit+replay skipped: predicted {guess:.0f} s (linear in "
                                  f"T from T={last_T}) > --max-seconds {cfg.max_seconds:g}")
                    seen[(policy, frac, "emit+replay")] = guess
                else:
                    row.emit_seconds, ops = timed(lambda p=plan: list(p.ops))
                    row.ops = len(ops)
                    t_replay = time.perf_counter()
                    try:
                        sim = simulate_ops(ops, chain)
                    except PlanError as exc:
                        row.valid = False
                        row.reason = f"invalid plan: {exc}"
                    else:
                        row.valid = sim.peak <= budget * (1 + 1e-12) and (
                            sim.forward_steps == plan.forward_steps)
                        row.runs = sim.runs
                        row.peak_fraction = sim.peak / chain.store_all_peak
                        if not row.valid:
                            row.reason = (f"simulated peak {sim.peak:g} / forward steps "
                                          f"{sim.forward_steps} disagree with the plan's "
                                          f"budget {budget:g} / {plan.forward_steps}")
                    row.replay_seconds = time.perf_counter() - t_replay
                    del ops
                    seen[(policy, frac, "emit+replay")] = row.emit_seconds + row.replay_seconds
                log(f"T={T} {frac:.0%} {policy}: solve {row.solve_seconds:.4f} s "
                    f"(x{len(times)}) C/T={row.recompute_factor:.4f} [{row.chosen}]"
                    + ("" if row.emit_seconds is None else
                       f" emit {row.emit_seconds:.3f} s replay {row.replay_seconds:.3f} s")
                    + (" INVALID" if row.valid is False else ""))
        last, last_T = seen, T
    return rows


def bench_gap(cfg: BenchConfig, log: Callable[[str], None]) -> list[GapRow]:
    rows: list[GapRow] = []
    for T in cfg.gap_lengths:
        chain = Chain(T, cfg.state_size, cfg.internal_size)
        for frac in cfg.gap_fractions:
            budget = frac * chain.store_all_peak
            units = chain.discretise(budget).m
            leaves = [leaf for leaf in cfg.gap_leaves if leaf < T]
            if not leaves:
                continue
            work = float(T) ** 2 * units
            if work > cfg.gap_max_work:
                for leaf in leaves:
                    rows.append(GapRow(T, frac, budget, "msm", leaf, "skipped", (
                        f"exact table ~T^2*budget = {work:.2g} > {cfg.gap_max_work:.2g}")))
                continue
            tables.clear()
            exact_seconds, exact = timed(lambda c=chain, b=budget: solve(c, b, "msm", exact=True))
            for leaf in leaves:
                row = GapRow(T, frac, budget, "msm", leaf, "ok")
                rows.append(row)
                tables.clear()
                row.hierarchical_seconds, hier = timed(
                    lambda c=chain, b=budget, L=leaf: solve(c, b, "msm", leaf=L))
                assert not hier.exact
                row.exact_seconds = exact_seconds
                row.exact_C = exact.forward_steps
                row.hierarchical_C = hier.forward_steps
                row.gap_percent = 100.0 * (row.hierarchical_C / row.exact_C - 1.0)
                log(f"gap T={T} {frac:.1%} leaf {leaf}: exact {row.exact_C} "
                    f"({row.exact_seconds:.2f} s) hierarchical {row.hierarchical_C} "
                    f"({row.hierarchical_seconds:.2f} s) gap {row.gap_percent:+.2f}%")
    return rows


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------


def _cell(row: TimingRow | None, what: str) -> str:
    if row is None:
        return "-"
    if row.status == "infeasible":
        return "infeas."
    if row.status == "skipped":
        return "skip"
    if what == "ops" and row.valid is False:
        return "INVALID"
    value = row.solve_seconds if what == "solve" else (
        None if row.emit_seconds is None or row.replay_seconds is None
        else row.emit_seconds + row.replay_seconds)
    return "skip" if value is None else f"{value:.4f}" if value < 10 else f"{value:.1f}"


def format_tables(cfg: BenchConfig, timing: Sequence[TimingRow], gap: Sequence[GapRow]) -> str:
    by = {(r.T, r.fraction, r.policy): r for r in timing}
    out: list[str] = []
    for what, title in (("solve", "solve() seconds (median, cold table cache)"),
                        ("ops", "emit + replay seconds (list(plan.ops) + simulate_ops)")):
        out.append(f"{title}; alpha = {cfg.internal_size / cfg.state_size:g}")
        head = f"{'T':>9} {'budget':>6} " + " ".join(f"{p:>13}" for p in cfg.policies)
        if what == "solve":
            head += "  auto picks (C/T, lower bound)"
        out.append(head)
        for T in cfg.lengths:
            for frac in cfg.fractions:
                cells = " ".join(f"{_cell(by.get((T, frac, p)), what):>13}" for p in cfg.policies)
                line = f"{T:>9,} {frac:>6.0%} {cells}"
                auto = by.get((T, frac, "auto"))
                if what == "solve" and auto is not None and auto.status == "ok":
                    line += (f"  {auto.chosen} ({auto.recompute_factor:.4f}, "
                             f">= {auto.lower_bound / T:.4f})")
                out.append(line)
        out.append("")
    out.append("hierarchical vs exact forward steps (gap = hierarchical / exact - 1)")
    out.append(f"{'T':>6} {'budget':>6} {'leaf':>6} {'exact C':>9} {'hier. C':>9} "
               f"{'gap':>8} {'exact s':>8} {'hier. s':>8}")
    for r in gap:
        if r.status != "ok":
            out.append(f"{r.T:>6} {r.fraction:>6.1%} {r.leaf:>6}  skipped: {r.reason}")
            continue
        out.append(f"{r.T:>6} {r.fraction:>6.1%} {r.leaf:>6} {r.exact_C:>9} "
                   f"{r.hierarchical_C:>9} {r.gap_percent:>+7.2f}% {r.exact_seconds:>8.2f} "
                   f"{r.hierarchical_seconds:>8.2f}")
    return "\n".join(out)


def plot(cfg: BenchConfig, timing: Sequence[TimingRow], gap: Sequence[GapRow],
         path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(cfg.fractions)
    fig = Figure(figsize=(4.2 * (n + 1), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n + 1)
    for ax, frac in zip(axes[:n], cfg.fractions, strict=True):
        for policy in cfg.policies:
            pts = [(r.T, r.solve_seconds) for r in timing
                   if r.policy == policy and r.fraction == frac and r.solve_seconds is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", label=policy, color=COLOURS[policy],
                        ls="--" if policy == "auto" else "-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"budget {frac:.0%} of store-all", fontsize=10)
        ax.set_xlabel("sequence length T")
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylabel("solve() seconds (median)")
    axes[0].legend(fontsize=7)
    ax = axes[n]
    ok = [r for r in gap if r.status == "ok" and r.gap_percent is not None]
    shades = ("tab:cyan", "tab:olive", "tab:pink", "tab:grey", "tab:brown")
    for leaf, marker, ls in zip(cfg.gap_leaves, ("o", "s", "^"), ("-", "--", ":"), strict=False):
        for T, colour in zip(cfg.gap_lengths, shades, strict=False):
            pts = [(r.fraction, r.gap_percent) for r in ok if r.leaf == leaf and r.T == T]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker=marker, ls=ls, color=colour,
                        label=f"T={T:,}, exact pieces <= {leaf}")
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(2, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("budget / store-all peak")
    ax.set_ylabel("hierarchical C / exact C - 1 (%)")
    ax.set_title("hierarchical vs exact MSM forward steps (target < 2 %)", fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the planner: planning time, and the hierarchical plans' gap.")
    parser.add_argument("--quick", action="store_true", help="a small subset (CI smoke test)")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="output folder")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="skip work predicted to take longer (default 60; quick 5)")
    parser.add_argument("--quiet", action="store_true", help="print only the final tables")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else BenchConfig()
    if args.max_seconds is not None:
        cfg = BenchConfig(**{**asdict(cfg), "max_seconds": args.max_seconds})

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    info = machine()
    t0 = time.perf_counter()
    timing = bench_timing(cfg, log)
    gap = bench_gap(cfg, log)
    total = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": info,
        "config": asdict(cfg),
        "quick": args.quick,
        "total_seconds": total,
        "timing": [asdict(r) for r in timing],
        "gap": [asdict(r) for r in gap],
    }
    json_path = args.out / "planner.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    title = (f"mbrnn planner benchmark: {info['cpu']}, {info['nproc']} CPUs, "
             f"Python {info['python']}, numpy {info['numpy']}")
    plot(cfg, timing, gap, args.out / "planner.png", title)
    print(f"machine: {info['cpu']}, {info['nproc']} CPUs ({info['platform']})")
    print(format_tables(cfg, timing, gap))
    print(f"\ntotal {total:.0f} s; wrote {json_path} and {args.out / 'planner.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
