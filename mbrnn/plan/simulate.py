"""Symbolic interpreter for plans: the specification an executor must meet.

``simulate`` replays a plan's ops without running anything, checks that every op is
legal, counts forward steps and tracks memory by the planner's accounting:

    memory = state_size * |kept hidden states, h[0] included|
           + internal_size * |kept internal states, except the step being back-propagated|

The running state of a sweep, the internal state of the one step being back-propagated
and the incoming gradient are working memory, not counted; an executor adds them as a
constant (see ``mbrnn.runtime``).

Two rules beyond the accounting make a plan executable with one autograd graph per run:
a ``Backward`` covers whole ``ForwardKeep`` runs (never part of one), and the first
sweep visits every step once, in order.

With ``count_run_inputs=True`` the simulation also counts what autograd really holds: a
run that starts from the running state of a sweep (not from a kept hidden state or from
inside a kept internal state) saves that start state too, until the run is
back-propagated. The optimal recurrences do not model this; the runtime plans with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import PlanError
from .ops import Backward, Forward, ForwardKeep, FreeHidden, KeepHidden

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .chain import Chain
    from .ops import Op, Plan

__all__ = ["Simulation", "simulate", "simulate_ops"]


@dataclass(frozen=True)
class Simulation:
    forward_steps: int
    peak: float
    runs: int
    max_hidden: int
    max_internal: int
    num_ops: int


def simulate(plan: Plan, chain: Chain | None = None, *, count_run_inputs: bool = False) -> Simulation:
    """Replay ``plan`` on ``chain`` (default: the plan's own) and check it."""
    return simulate_ops(
        plan.ops, chain if chain is not None else plan.chain, count_run_inputs=count_run_inputs
    )


def simulate_ops(ops: Iterable[Op], chain: Chain, *, count_run_inputs: bool = False) -> Simulation:
    """Replay an op sequence; raise :class:`PlanError` at the first illegal op."""
    T = chain.length
    s = chain.state_size
    a = chain.internal_size
    hidden: set[int] = {0}
    internal: set[int] = set()
    cursor: int | None = 0
    frontier = T  # next step to back-propagate
    first_sweep_end = 0  # how far the first sweep has reached
    in_first_sweep = True
    fwd = runs = n = 0
    peak = s
    max_h = 1
    max_i = 0
    run_of: dict[int, int] = {}  # kept step -> start of its ForwardKeep run
    run_inputs: set[int] = set()  # runs whose start state autograd holds on its own

    def available(p: int) -> bool:
        return p in hidden or p in internal or p == cursor

    for op in ops:
        n += 1
        if isinstance(op, (Forward, ForwardKeep)):
            start, stop = op.start, op.stop
            if not 0 <= start < stop <= frontier:
                raise PlanError(f"op {n} {op}: needs 0 <= start < stop <= {frontier}")
            if not available(start):
                raise PlanError(f"op {n} {op}: h[{start}] is not available")
            if in_first_sweep:
                if start != first_sweep_end:
                    raise PlanError(f"op {n} {op}: the first sweep must continue at {first_sweep_end}")
                first_sweep_end = stop
            if isinstance(op, ForwardKeep):
                if start not in hidden and start not in internal:
                    run_inputs.add(start)
                for k in range(start + 1, stop + 1):
                    if k in internal:
                        raise PlanError(f"op {n} {op}: internal state {k} is already kept")
                    internal.add(k)
                    run_of[k] = start
            fwd += stop - start
            runs += 1
            cursor = stop
        elif isinstance(op, KeepHidden):
            if op.index != cursor:
                raise PlanError(f"op {n} {op}: the cursor is at {cursor}, not {op.index}")
            if op.index in hidden:
                raise PlanError(f"op {n} {op}: h[{op.index}] is already kept")
            hidden.add(op.index)
        elif isinstance(op, FreeHidden):
            if op.index == 0 or op.index not in hidden:
                raise PlanError(f"op {n} {op}: h[{op.index}] is not a kept checkpoint")
            hidden.discard(op.index)
        elif isinstance(op, Backward):
            start, stop = op.start, op.stop
            if stop != frontier or not 0 <= start < stop:
                raise PlanError(f"op {n} {op}: the next step to back-propagate is {frontier}")
            if in_first_sweep:
                if first_sweep_end != T:
                    raise PlanError(f"op {n} {op}: the first sweep ended at {first_sweep_end}, not {T}")
                in_first_sweep = False
            for k in range(stop, start, -1):
                if k not in internal:
                    raise PlanError(f"op {n} {op}: internal state {k} was not kept")
                internal.discard(k)
            if run_of[start + 1] != start:
                raise PlanError(f"op {n} {op}: stops inside the run kept from {run_of[start + 1]}")
            for k in range(start + 1, stop + 1):
                del run_of[k]
            run_inputs.discard(start)
            frontier = start
            cursor = None
        else:
            raise PlanError(f"op {n}: unknown op {op!r}")
        counted_i = len(internal) - (1 if frontier in internal else 0)
        mem = s * len(hidden) + a * counted_i
        if count_run_inputs:
            mem += s * len(run_inputs)
        if mem > peak:
            peak = mem
        max_h = max(max_h, len(hidden))
        max_i = max(max_i, counted_i)
    if frontier != 0:
        raise PlanError(f"plan ends with steps 1..{frontier} not back-propagated")
    if internal or hidden != {0}:
        raise PlanError(f"plan ends holding hidden {sorted(hidden)} and internal {sorted(internal)}")
    return Simulation(fwd, peak, runs, max_h, max_i, n)
