from __future__ import annotations

import pytest

from mbrnn.errors import InfeasibleBudgetError, PlanError
from mbrnn.plan import (
    Backward,
    Chain,
    Forward,
    ForwardKeep,
    FreeHidden,
    KeepHidden,
    simulate_ops,
)

CHAIN = Chain(4, 1.0, 3.0)


def test_accounting_excludes_the_step_being_backpropagated() -> None:
    sim = simulate_ops([ForwardKeep(0, 4), Backward(0, 4)], CHAIN)
    assert sim.peak == 1.0 + 3 * 3.0 and sim.forward_steps == 4 and sim.runs == 1


def test_hidden_and_internal_counted() -> None:
    ops = [
        Forward(0, 2), KeepHidden(2), ForwardKeep(2, 4), Backward(2, 4), FreeHidden(2),
        ForwardKeep(0, 2), Backward(0, 2),
    ]
    sim = simulate_ops(ops, CHAIN)
    assert sim.peak == 2 * 1.0 + 1 * 3.0  # h0, h2 and internal 3 (4 is being back-propagated)
    assert sim.max_hidden == 2 and sim.max_internal == 1 and sim.forward_steps == 6


@pytest.mark.parametrize(
    ("ops", "match"),
    [
        ([Forward(1, 4)], "first sweep must continue at 0|not available"),
        ([ForwardKeep(0, 3), Backward(0, 3)], "next step to back-propagate is 4"),
        ([ForwardKeep(0, 3), Backward(2, 3)], "next step"),
        ([Forward(0, 4), Backward(3, 4)], "internal state 4 was not kept"),
        ([Forward(0, 2), KeepHidden(1)], "cursor is at 2"),
        ([FreeHidden(0)], "not a kept checkpoint"),
        ([ForwardKeep(0, 4)], "not back-propagated"),
        ([Forward(0, 2), KeepHidden(2), ForwardKeep(2, 4), Backward(2, 4), ForwardKeep(0, 2),
          Backward(0, 2)], "ends holding hidden"),
        ([Forward(0, 5)], "stop <= 4"),
        ([ForwardKeep(0, 4), Backward(2, 4), Backward(0, 2)], "inside the run kept from 0"),
        ([Forward(0, 3), ForwardKeep(3, 4), Backward(3, 4), Forward(3, 4)], "stop <= 3"),
    ],
)
def test_illegal_plans_are_rejected(ops: list, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        simulate_ops(ops, CHAIN)


def test_run_inputs_are_counted() -> None:
    # a run started from the running state of a sweep: autograd also holds h[2]
    ops = [Forward(0, 2), ForwardKeep(2, 4), Backward(2, 4), ForwardKeep(0, 2), Backward(0, 2)]
    assert simulate_ops(ops, CHAIN).peak == 1.0 + 3.0 + 1.0
    # ... and a run from a checkpoint holds it even once the plan frees the checkpoint
    freed = [Forward(0, 2), KeepHidden(2), ForwardKeep(2, 4), FreeHidden(2), Backward(2, 4),
             ForwardKeep(0, 2), Backward(0, 2)]
    assert simulate_ops(freed, CHAIN).peak == 2 * 1.0 + 3.0
    # a run that starts inside a kept internal state holds nothing more
    inside = [ForwardKeep(0, 2), ForwardKeep(2, 4), Backward(2, 4), Backward(0, 2)]
    assert simulate_ops(inside, CHAIN).peak == 1.0 + 3 * 3.0


def test_executor_terms_are_counted_where_they_arise() -> None:
    """run_size per kept call, sweep_size while a Forward runs, backward_step_size per
    step of the call being back-propagated (its first step aside)."""
    chain = Chain(8, 1.0, 3.0, run_size=10.0, sweep_size=100.0, backward_step_size=1000.0,
                  call_steps=3)
    assert chain.calls(8) == 3 and chain.backward_transient(8) == 2 * 1000.0
    sweep = simulate_ops([Forward(0, 7), ForwardKeep(7, 8), Backward(7, 8),
                          *[op for k in range(7, 0, -1) for op in
                            ([Forward(0, k - 1)] if k > 1 else []) + [ForwardKeep(k - 1, k),
                                                                      Backward(k - 1, k)]]],
                         chain.with_length(8))
    assert sweep.peak == 1.0 + 100.0 and sweep.max_live_runs == 1
    store = simulate_ops([ForwardKeep(0, 8), Backward(0, 8)], chain)
    # h0, 7 internal states, 3 calls of <= 3 steps, and the backward of a 3-step call
    assert store.peak == 1.0 + 7 * 3.0 + 3 * 10.0 + 2 * 1000.0
    assert store.max_live_runs == 3 and store.longest_run == 8
    zero = Chain(8, 1.0, 3.0)
    assert simulate_ops([ForwardKeep(0, 8), Backward(0, 8)], zero).peak == zero.store_all_peak


@pytest.mark.parametrize("seed", range(4))
def test_closed_form_stats_equal_the_replay(seed: int) -> None:
    """store_all, recompute_all, chen and hsm plans carry their statistics from closed
    forms (Plan.stats); they must be what replaying the ops gives, executor terms too."""
    import random

    from mbrnn.plan import simulate, solve

    rng = random.Random(seed)
    for _ in range(60):
        T = rng.randint(1, 300)
        chain = Chain(T, rng.choice([1.0, 2.0]), rng.choice([2.0, 5.0]),
                      run_size=rng.choice([0.0, 0.5, 7.0]), sweep_size=rng.choice([0.0, 3.0]),
                      backward_step_size=rng.choice([0.0, 1.0]), call_steps=rng.choice([0, 4]))
        budget = rng.uniform(1.5, 3.0) * chain.state_size + rng.random() * chain.store_all_peak
        for policy in ("store_all", "recompute_all", "chen", "hsm"):
            try:
                plan = solve(chain, budget, policy)
            except InfeasibleBudgetError:
                continue
            assert plan.stats is not None and plan.stats == simulate(plan), (policy, chain)
