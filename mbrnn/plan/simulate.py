"""Symbolic interpreter for plans: the specification an executor must meet.

``simulate`` replays a plan's ops without running anything, checks that every op is
legal, counts forward steps and runs, and tracks memory by this accounting, at every op:

    memory = state_size * |kept hidden states (h[0] included) and run inputs|
           + internal_size * |kept internal states, except the step being back-propagated|
           + run_size * |kept calls not yet back-propagated|
           + sweep_size                                    (while a Forward op runs)
           + backward_transient(run)                       (while a kept run is back-propagated)

The running state of a sweep, the internal state of the one step being back-propagated
and the incoming gradient are working memory, not counted; an executor adds them as a
constant (see ``mbrnn.runtime``). With the :class:`~mbrnn.plan.chain.Chain`'s executor
terms at zero (their default) this is exactly the paper's accounting.

A *run input* is the start state of a ``ForwardKeep`` run that does not begin inside a
kept internal state (it begins at the running state of a sweep or at a kept hidden
state): autograd saves it with the run until the run is back-propagated, so it is held
even if the plan frees that hidden state meanwhile. The dynamic programs
count it too (see :mod:`mbrnn.plan.table`), so their plans fit their budgets as
simulated here.

Two rules beyond the accounting make a plan executable with one autograd graph per run:
a ``Backward`` covers whole ``ForwardKeep`` runs (never part of one), and the first
sweep visits every step once, in order.

Kept runs are held as intervals, so a replay costs time per op, not per step: a plan of
a million steps in a few thousand ops replays in milliseconds.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from ..errors import PlanError
from .ops import Backward, Forward, ForwardKeep, FreeHidden, KeepHidden, Simulation

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .chain import Chain
    from .ops import Op, Plan

__all__ = ["Simulation", "simulate", "simulate_ops", "summary"]


def simulate(plan: Plan, chain: Chain | None = None) -> Simulation:
    """Replay ``plan`` on ``chain`` (default: the plan's own) and check it.

    Raises:
        PlanError: at the first illegal op, naming the op and the rule it breaks.
    """
    return simulate_ops(plan.ops, chain if chain is not None else plan.chain)


def summary(plan: Plan) -> Simulation:
    """``plan.stats`` where the solver knew them in closed form, else :func:`simulate`."""
    return plan.stats if plan.stats is not None else simulate(plan)


def simulate_ops(ops: Iterable[Op], chain: Chain) -> Simulation:
    """Replay an op sequence; raise :class:`PlanError` at the first illegal op."""
    T = chain.length
    s, a = chain.state_size, chain.internal_size
    r = chain.run_size
    hidden: set[int] = {0}
    starts: list[int] = []  # kept runs (start, stop], sorted by start, disjoint
    stop_of: dict[int, int] = {}  # start -> stop
    kept_steps = 0
    live_calls = 0
    run_inputs: set[int] = set()  # starts of kept runs whose start state autograd holds
    holders = {0: 1}  # state -> how many of (kept hidden, a run's input) hold it
    states = 1  # |hidden | run_inputs|, kept as the counts change (a union per op is slow)

    def hold(p: int) -> None:
        nonlocal states
        holders[p] = holders.get(p, 0) + 1
        states += holders[p] == 1

    def release(p: int) -> None:
        nonlocal states
        holders[p] -= 1
        if holders[p] == 0:
            del holders[p]
            states -= 1
    cursor: int | None = 0
    frontier = T  # next step to back-propagate
    first_sweep_end = 0
    in_first_sweep = True
    fwd = runs = n = 0
    peak = s
    max_h, max_i, max_live, longest = 1, 0, 0, 0

    def run_at(p: int) -> int | None:
        """The start of the kept run that holds step ``p``, if any."""
        i = bisect.bisect_left(starts, p) - 1
        if i >= 0 and stop_of[starts[i]] >= p:
            return starts[i]
        return None

    def held() -> float:
        counted = kept_steps - (1 if run_at(frontier) is not None else 0)
        return s * states + a * counted + r * live_calls

    for op in ops:
        n += 1
        extra = 0.0
        if isinstance(op, (Forward, ForwardKeep)):
            start, stop = op.start, op.stop
            if not 0 <= start < stop <= frontier:
                raise PlanError(f"op {n} {op}: needs 0 <= start < stop <= {frontier}")
            inside = run_at(start) is not None  # the output state of a kept step
            if not (start in hidden or start == cursor or inside):
                raise PlanError(f"op {n} {op}: h[{start}] is not available")
            if in_first_sweep:
                if start != first_sweep_end:
                    raise PlanError(f"op {n} {op}: the first sweep must continue at {first_sweep_end}")
                first_sweep_end = stop
            if isinstance(op, ForwardKeep):
                i = bisect.bisect_left(starts, start)
                if (i > 0 and stop_of[starts[i - 1]] > start) or (i < len(starts) and starts[i] < stop):
                    clash = starts[i - 1] if i > 0 and stop_of[starts[i - 1]] > start else starts[i]
                    first = max(start, clash) + 1
                    raise PlanError(f"op {n} {op}: internal state {first} is already kept")
                if not inside:  # the run holds its start state, even once it is freed
                    run_inputs.add(start)
                    hold(start)
                starts.insert(i, start)
                stop_of[start] = stop
                kept_steps += stop - start
                live_calls += chain.calls(stop - start)
                longest = max(longest, stop - start)
            else:
                extra = chain.sweep_size
            fwd += stop - start
            runs += 1
            cursor = stop
        elif isinstance(op, KeepHidden):
            if op.index != cursor:
                raise PlanError(f"op {n} {op}: the cursor is at {cursor}, not {op.index}")
            if op.index in hidden:
                raise PlanError(f"op {n} {op}: h[{op.index}] is already kept")
            hidden.add(op.index)
            hold(op.index)
        elif isinstance(op, FreeHidden):
            if op.index == 0 or op.index not in hidden:
                raise PlanError(f"op {n} {op}: h[{op.index}] is not a kept checkpoint")
            hidden.discard(op.index)
            release(op.index)
        elif isinstance(op, Backward):
            start, stop = op.start, op.stop
            if stop != frontier or not 0 <= start < stop:
                raise PlanError(f"op {n} {op}: the next step to back-propagate is {frontier}")
            if in_first_sweep:
                if first_sweep_end != T:
                    raise PlanError(f"op {n} {op}: the first sweep ended at {first_sweep_end}, not {T}")
                in_first_sweep = False
            # every step of (start, stop] must be kept, in whole runs: walk them down
            covered: list[int] = []
            at = stop
            while at > start:
                begin = run_at(at)
                if begin is None or stop_of[begin] != at:
                    raise PlanError(f"op {n} {op}: internal state {at} was not kept")
                if begin < start:
                    raise PlanError(f"op {n} {op}: stops inside the run kept from {begin}")
                covered.append(begin)
                at = begin
            # the memory while the runs are back-propagated, before they are freed
            transient = max(chain.backward_transient(stop_of[b] - b) for b in covered)
            during = held() + transient
            if during > peak:
                peak = during
            for b in covered:
                kept_steps -= stop_of[b] - b
                live_calls -= chain.calls(stop_of[b] - b)
                del stop_of[b]
                starts.remove(b)
                if b in run_inputs:
                    run_inputs.discard(b)
                    release(b)
            frontier = start
            cursor = None
        else:
            raise PlanError(f"op {n}: unknown op {op!r}")
        mem = held() + extra
        if mem > peak:
            peak = mem
        max_h = max(max_h, len(hidden))
        max_i = max(max_i, kept_steps - (1 if run_at(frontier) is not None else 0))
        max_live = max(max_live, live_calls)
    if frontier != 0:
        raise PlanError(f"plan ends with steps 1..{frontier} not back-propagated")
    if starts or hidden != {0}:
        kept = [(b, stop_of[b]) for b in starts]
        raise PlanError(f"plan ends holding hidden {sorted(hidden)} and internal runs {kept}")
    return Simulation(fwd, peak, runs, max_h, max_i, n, max_live, longest)
