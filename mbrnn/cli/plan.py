"""``mbrnn plan``: plan memory-efficient BPTT for a recurrence and a memory budget.

Given the sizes of one step (or a module to probe them from, with ``--model``), solve for
the cheapest schedule that fits the budget, replay it, and report its cost and peak.

Example::

    $ mbrnn plan --seq-len 100000 --state-size 262144 --internal-size 1048576 --budget 2GiB
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass

from ..errors import InfeasibleBudgetError, PlanError
from ..plan.chain import Chain
from ..plan.ops import Plan
from ..plan.simulate import simulate
from ..plan.solver import POLICIES, solve
from ..sizes import format_size, parse_size
from .errors import EXIT_FAILURE, CommandError

__all__ = ["PlanSummary", "configure", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    """Add ``mbrnn plan``'s options to ``p``."""
    p.add_argument("--seq-len", type=int, required=True, metavar="T",
                   help="number of time steps T")
    p.add_argument("--state-size", metavar="SIZE",
                   help="memory of one hidden state: bytes or a size such as 256KiB "
                   "(required unless --model is given)")
    p.add_argument("--internal-size", metavar="SIZE",
                   help="memory autograd keeps for one step, its output state included "
                   "(required unless --model is given)")
    p.add_argument("--budget", required=True, metavar="SIZE",
                   help="memory budget for kept states, e.g. 2GiB (1024**3) or 2GB (1000**3)")
    p.add_argument("--policy", default="auto", choices=POLICIES,
                   help="planning policy (default: auto, the cheapest feasible plan)")
    p.add_argument("--beta", type=float, default=2.0,
                   help="cost of a step's backward relative to its forward (default: 2)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="also draw the schedule and the memory/compute trade-off to PNG")
    p.add_argument("--json", action="store_true", help="print a JSON object instead")
    m = p.add_argument_group(
        "model", "plan for mbrnn.LSTM/GRU/RNN instead of given sizes: the sizes are probed "
        "on the fused kernel (CPU, float32) and the budget means the module's memory_budget")
    m.add_argument("--model", choices=("lstm", "gru", "rnn"), default=None,
                   help="the module to plan for")
    m.add_argument("--hidden-size", type=int, metavar="H", help="hidden size (with --model)")
    m.add_argument("--num-layers", type=int, default=1, metavar="N",
                   help="layers (with --model; default: 1)")
    m.add_argument("--batch-size", type=int, metavar="B", help="batch size (with --model)")
    m.add_argument("--input-size", type=int, default=None, metavar="F",
                   help="input features (with --model; default: the hidden size)")


@dataclass(frozen=True)
class PlanSummary:
    """What ``mbrnn plan`` reports; sizes in bytes, times in seconds."""

    policy: str
    requested_policy: str
    method: str  # "exact", "hierarchical" or "baseline"
    seq_len: int
    state_size: float
    internal_size: float
    alpha: float
    budget: float
    beta: float
    forward_steps: int
    recompute_factor: float
    time_overhead: float
    peak: float
    store_all_peak: float
    peak_fraction: float
    kept_hidden: int
    kept_internal: int
    runs: int
    ops: int
    solve_seconds: float
    simulate_seconds: float
    plot: str | None = None
    plot_seconds: float | None = None
    model: str | None = None  # with --model: the module planned for
    predicted_peak: float | None = None  # with --model: kept states plus working set

    def format(self) -> str:
        T = self.seq_len
        method = {
            "exact": "exact optimum",
            "hierarchical": "hierarchical, near-optimal",
            "baseline": "baseline schedule",
        }[self.method]
        chosen = self.policy + (" (chosen by auto)" if self.requested_policy == "auto" else "")
        lines = [
            f"mbrnn plan: T={T:,} steps, state {format_size(self.state_size)}, "
            f"internal {format_size(self.internal_size)} (alpha {self.alpha:.3g}), "
            f"budget {format_size(self.budget)}",
            f"  policy          {chosen}: {method}",
            f"  forward steps   {self.forward_steps:,} = {self.recompute_factor:.4f} x T "
            f"(store-all: {T:,})",
            f"  time overhead   {self.time_overhead:.4f} x store-all "
            f"(beta={self.beta:g}: (C + beta*T) / ((1 + beta) * T))",
            f"  peak memory     {format_size(self.peak)} = {100 * self.peak_fraction:.3g}% of "
            f"store-all {format_size(self.store_all_peak)}",
            f"  kept at once    {self.kept_hidden:,} hidden states, "
            f"{self.kept_internal:,} internal states",
            f"  forward runs    {self.runs:,} ({self.ops:,} ops)",
            f"  planning time   {self.solve_seconds:.3f} s "
            f"(+ {self.simulate_seconds:.3f} s replaying the ops)",
        ]
        if self.model is not None:
            lines.insert(1, f"  model           {self.model} (sizes probed on the fused kernel)")
            lines.append(f"  module peak     {format_size(self.predicted_peak or 0.0)} predicted: "
                         "kept states plus the executor's working set")
        if self.plot is not None:
            lines.append(f"  plot            {self.plot} ({self.plot_seconds or 0.0:.2f} s)")
        return "\n".join(lines)


def _size(args: argparse.Namespace, attr: str) -> float:
    flag = "--" + attr.replace("_", "-")
    try:
        return parse_size(getattr(args, attr), name=flag)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _model_plan(args: argparse.Namespace, budget: float) -> tuple[str, Plan, float]:
    """``--model``: what ``mbrnn.LSTM/GRU/RNN(...).plan_for`` would run (imports torch)."""
    for flag in ("hidden_size", "batch_size"):
        if getattr(args, flag) is None:
            raise CommandError(f"--model needs --{flag.replace('_', '-')}")
    for flag in ("hidden_size", "batch_size", "num_layers", "input_size", "seq_len"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CommandError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    import mbrnn

    cls = {"lstm": mbrnn.LSTM, "gru": mbrnn.GRU, "rnn": mbrnn.RNN}[args.model]
    F = args.input_size or args.hidden_size
    module = cls(F, args.hidden_size, args.num_layers, policy=args.policy)
    desc = (f"{cls.__name__}(input_size={F}, hidden_size={args.hidden_size}, "
            f"num_layers={args.num_layers}), batch {args.batch_size}")
    try:
        fp = module.plan_for(args.seq_len, args.batch_size, memory_budget=int(budget))
    except InfeasibleBudgetError as exc:
        raise CommandError(
            f"--budget {format_size(budget)} is below the minimum {format_size(exc.minimum)} "
            f"that {desc} needs for --seq-len {args.seq_len}; raise --budget to at least "
            f"{format_size(exc.minimum)}"
        ) from exc
    return desc, fp.plans[0].plan, float(fp.predicted_peak)


def _plan_chain(args: argparse.Namespace) -> Chain:
    if args.state_size is None or args.internal_size is None:
        raise CommandError("--state-size and --internal-size are required unless --model "
                           "is given")
    state = _size(args, "state_size")
    internal = _size(args, "internal_size")
    if args.seq_len < 1:
        raise CommandError(f"--seq-len must be >= 1, got {args.seq_len}")
    if state <= 0:
        raise CommandError(f"--state-size must be > 0, got {args.state_size!r}")
    if internal < state:
        raise CommandError(
            f"--internal-size {format_size(internal)} is below --state-size "
            f"{format_size(state)}; a step's internal state includes its output state"
        )
    return Chain(args.seq_len, state, internal)


def run(args: argparse.Namespace) -> int:
    """Run ``mbrnn plan``: print the summary (or JSON); returns the exit status."""
    model = predicted_peak = None
    if args.model is None:
        chain = _plan_chain(args)
    budget = _size(args, "budget")
    if not math.isfinite(args.beta) or args.beta < 0:
        raise CommandError(f"--beta must be finite and >= 0, got {args.beta!r}")
    t0 = time.perf_counter()
    try:
        if args.model is None:
            plan = solve(chain, budget, args.policy)
        else:  # probes the module, then plans as its forward would
            model, plan, predicted_peak = _model_plan(args, budget)
            chain = plan.chain
    except InfeasibleBudgetError as exc:
        raise CommandError(
            f"--budget {format_size(budget)} is below the minimum {format_size(exc.minimum)} "
            f"that policy {args.policy!r} needs for --seq-len {chain.length} "
            f"(state {format_size(chain.state_size)}, internal "
            f"{format_size(chain.internal_size)}); raise --budget to at least "
            f"{format_size(exc.minimum)}"
            + ("" if args.policy == "auto" else " or use --policy auto")
        ) from exc
    t1 = time.perf_counter()
    try:
        sim = simulate(plan)  # replays the ops: peak, runs, states kept
    except PlanError as exc:
        raise CommandError(
            f"policy {plan.policy!r} produced an invalid plan for --seq-len {chain.length} and "
            f"--budget {format_size(budget)} (a planner bug; please report it): {exc}",
            status=EXIT_FAILURE,
        ) from exc
    t2 = time.perf_counter()
    plot_seconds = None
    if args.plot is not None:
        from ..plan.plot import plot_plan

        try:
            plot_plan(plan, args.plot)
        except OSError as exc:
            raise CommandError(f"cannot write --plot {args.plot!r}: {exc}",
                               status=EXIT_FAILURE) from exc
        plot_seconds = time.perf_counter() - t2
    if plan.policy in ("store_all", "recompute_all", "chen"):
        method = "baseline"
    else:
        method = "exact" if plan.exact else "hierarchical"
    summary = PlanSummary(
        policy=plan.policy,
        requested_policy=args.policy,
        method=method,
        seq_len=chain.length,
        state_size=chain.state_size,
        internal_size=chain.internal_size,
        alpha=chain.alpha,
        budget=budget,
        beta=args.beta,
        forward_steps=plan.forward_steps,
        recompute_factor=plan.recompute_factor,
        time_overhead=plan.time_overhead(args.beta),
        peak=sim.peak,
        store_all_peak=chain.store_all_peak,
        peak_fraction=sim.peak / chain.store_all_peak,
        kept_hidden=sim.max_hidden,
        kept_internal=sim.max_internal,
        runs=sim.runs,
        ops=sim.num_ops,
        solve_seconds=t1 - t0,
        simulate_seconds=t2 - t1,
        plot=args.plot,
        plot_seconds=plot_seconds,
        model=model,
        predicted_peak=predicted_peak,
    )
    if args.json:
        print(json.dumps(asdict(summary), indent=2))
    else:
        print(summary.format())
    return 0
