"""The planner against an exhaustive oracle, closed forms and properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import brute_force_cost
from hypothesis import given
from hypothesis import strategies as st

from mbrnn.errors import InfeasibleBudgetError
from mbrnn.plan import (
    Backward,
    Chain,
    Forward,
    ForwardKeep,
    FreeHidden,
    KeepHidden,
    hsm_cost,
    hsm_split,
    simulate,
    solve,
)
from mbrnn.plan.table import tables

SIZES = [(1, 1), (1, 2), (1, 3), (2, 3), (2, 5)]


def _cost_or_none(T: int, s: int, a: int, m: int, policy: str) -> int | None:
    try:
        plan = solve(Chain(T, float(s), float(a)), float(m), policy, resolution=s)
    except InfeasibleBudgetError:
        return None
    sim = simulate(plan)
    assert sim.forward_steps == plan.forward_steps
    assert sim.peak <= m
    return plan.forward_steps


def _check_against_oracle(T: int, s: int, a: int, m: int, policy: str) -> None:
    assert _cost_or_none(T, s, a, m, policy) == brute_force_cost(T, s, a, m, policy)


@pytest.mark.parametrize("policy", ["hsm", "ism", "msm"])
@pytest.mark.parametrize("T", range(1, 7))
def test_exhaustive_against_brute_force(T: int, policy: str) -> None:
    for s, a in SIZES:
        for m in range(0, s + (T - 1) * a + 2):
            _check_against_oracle(T, s, a, m, policy)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["hsm", "ism", "msm"])
@pytest.mark.parametrize("T", [7, 8])
def test_exhaustive_against_brute_force_longer(T: int, policy: str) -> None:
    s, a = 1, 2
    for m in range(1, s + (T - 1) * a + 1, 1 if T == 7 else 3):
        _check_against_oracle(T, s, a, m, policy)


@given(
    T=st.integers(1, 7),
    sa=st.sampled_from(SIZES),
    extra=st.integers(0, 12),
    policy=st.sampled_from(["hsm", "ism", "msm"]),
)
def test_brute_force_hypothesis(T: int, sa: tuple[int, int], extra: int, policy: str) -> None:
    s, a = sa
    _check_against_oracle(T, s, a, s + extra, policy)


def test_hsm_closed_form_equals_table() -> None:
    """With run inputs counted, c slots hold c - 1 checkpoints beside the input of the
    step being back-propagated: the table's HSM column c is Revolve with c - 1."""
    C = tables(2000, 60, 1, 1, True, False)
    assert (C[1, 1:] == 1).all() and (C[2:, 1] >= C[0, 0]).all()  # t >= 2 needs 2 slots
    for c in range(2, 61):
        closed = np.array([0, 1, *(hsm_cost(t, c - 1) for t in range(2, 2001))])
        assert (C[:, c] == closed).all(), f"c={c}"


def test_hsm_split_is_optimal() -> None:
    for t in range(2, 400):
        for c in range(2, 12):
            y = hsm_split(t, c)
            assert 1 <= y < t
            assert y + hsm_cost(t - y, c - 1) + hsm_cost(y, c) == hsm_cost(t, c)


def test_hsm_recompute_all_and_store_all_limits() -> None:
    assert hsm_cost(10, 1) == 55
    # with a slot per step, HSM re-runs every step once except the last
    assert hsm_cost(10, 10) == 19


@given(
    T=st.integers(1, 120),
    alpha=st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0, 7.25]),
    frac=st.floats(0.0, 1.05),
    policy=st.sampled_from(["hsm", "ism", "msm", "chen", "store_all", "recompute_all", "auto"]),
)
def test_properties(T: int, alpha: float, frac: float, policy: str) -> None:
    chain = Chain(T, 1.0, alpha)
    least = 1.0 if T == 1 else 2.0
    budget = least + frac * max(0.0, chain.store_all_peak - least)
    try:
        plan = solve(chain, budget, policy)
    except InfeasibleBudgetError as e:
        assert policy in ("chen", "store_all")
        assert e.minimum > budget
        return
    sim = simulate(plan, chain)
    assert sim.forward_steps == plan.forward_steps
    assert sim.peak <= budget + 1e-9
    assert T <= plan.forward_steps <= T * (T + 1) // 2


@given(T=st.integers(2, 80), alpha=st.sampled_from([1.0, 2.0, 3.5, 5.0]))
def test_cost_never_rises_with_budget(T: int, alpha: float) -> None:
    chain = Chain(T, 1.0, alpha)
    for policy in ("hsm", "ism", "msm", "auto"):
        costs = [solve(chain, b, policy).forward_steps  # from the least budget, 2 s
                 for b in np.linspace(2.0, chain.store_all_peak + 1, 12)]
        assert all(x >= y for x, y in itertools.pairwise(costs)), (policy, costs)


@given(T=st.integers(1, 80), alpha=st.sampled_from([1.0, 2.0, 4.0]), frac=st.floats(0, 1))
def test_msm_dominates(T: int, alpha: float, frac: float) -> None:
    chain = Chain(T, 1.0, alpha)
    least = 1.0 if T == 1 else 2.0
    budget = least + frac * max(0.0, chain.store_all_peak - least)
    msm = solve(chain, budget, "msm").forward_steps
    assert msm <= solve(chain, budget, "hsm").forward_steps
    assert msm <= solve(chain, budget, "ism").forward_steps
    assert solve(chain, budget, "auto").forward_steps == msm


def test_auto_prefers_store_all_when_it_fits() -> None:
    chain = Chain(50, 1.0, 3.0)
    plan = solve(chain, chain.store_all_peak, "auto")
    assert plan.policy == "store_all" and simulate(plan).runs == 1 and plan.forward_steps == 50


def test_auto_ties_prefer_fewer_runs() -> None:
    chain = Chain(40, 1.0, 2.0)
    for budget in (3.0, 10.0, 30.0, 60.0):
        auto = solve(chain, budget, "auto")
        for policy in ("hsm", "ism", "msm", "recompute_all"):
            other = solve(chain, budget, policy)
            if other.forward_steps == auto.forward_steps:
                assert simulate(auto).runs <= simulate(other).runs


# --- golden traces ------------------------------------------------------------------------


def test_golden_hsm_two_slots() -> None:
    # T=6, three hidden states: h[0], one checkpoint and the input of the step being
    # back-propagated, so Revolve with two slots: r=2 (binom(4,2)=6),
    # C = 6 + 2*6 - binom(4,1) = 14; first split y = max(beta(2,0), 6 - beta(1,2)) = 3;
    # the left part (t=3, c=2) has r=1 and y=1.
    plan = solve(Chain(6, 1.0, 1.0), 3.0, "hsm")
    assert plan.forward_steps == 14 and simulate(plan).peak == 3.0
    assert list(plan.ops) == [
        Forward(0, 3), KeepHidden(3),
        Forward(3, 5), ForwardKeep(5, 6), Backward(5, 6),
        Forward(3, 4), ForwardKeep(4, 5), Backward(4, 5),
        ForwardKeep(3, 4), Backward(3, 4),
        FreeHidden(3),
        Forward(0, 1), KeepHidden(1),
        Forward(1, 2), ForwardKeep(2, 3), Backward(2, 3),
        ForwardKeep(1, 2), Backward(1, 2),
        FreeHidden(1),
        ForwardKeep(0, 1), Backward(0, 1),
    ]


def test_golden_msm_one_internal_slot() -> None:
    # s=1, a=2, m=4: h[0] (1), then steps 3..4 as one run from the sweep's running state
    # h[2]: the run holds its input (1) and internal state 3 (2; step 4's is being
    # back-propagated), 4 in all. Then steps 1..2 again from h[0], kept: 1 + 2. Six
    # forward steps. Keeping step 2 alone first (the optimum without run inputs) would
    # also hold h[1], its run's input: 5 > 4.
    plan = solve(Chain(4, 1.0, 2.0), 4.0, "msm")
    assert plan.forward_steps == 6 == brute_force_cost(4, 1, 2, 4, "msm")
    assert simulate(plan).peak == 4.0
    assert list(plan.ops) == [
        Forward(0, 2), ForwardKeep(2, 4), Backward(2, 4),
        ForwardKeep(0, 2), Backward(0, 2),
    ]
    # at m=3 only HSM fits: keep h[2], run step 4 then step 3 from it, then steps 1..2
    three = solve(Chain(4, 1.0, 2.0), 3.0, "msm")
    assert three.forward_steps == 7 == brute_force_cost(4, 1, 2, 3, "msm")


# --- long sequences -----------------------------------------------------------------------


def test_hsm_million_steps_is_lazy_and_exact() -> None:
    chain = Chain(10**6, 1.0, 4.0)
    plan = solve(chain, 100.0, "hsm")  # 99 checkpoints beside the running step's input
    assert plan.forward_steps == hsm_cost(10**6, 99)
    assert plan.stats is not None and plan.stats.peak == 100.0  # in closed form, no replay
    first = []
    for op in plan.ops:  # only the first few ops are generated
        first.append(op)
        if len(first) == 5:
            break
    assert isinstance(first[0], Forward) and first[0].start == 0


def test_hierarchical_is_valid_and_close() -> None:
    chain = Chain(3000, 1.0, 3.0)
    budget = 400.0
    plan = solve(chain, budget, "msm")
    assert not plan.exact
    sim = simulate(plan)
    assert sim.forward_steps == plan.forward_steps and sim.peak <= budget
    assert plan.forward_steps <= solve(chain, budget, "hsm").forward_steps


def test_non_integer_sizes_never_exceed_budget() -> None:
    chain = Chain(300, 1000.5, 4321.25)
    for budget in (2001.0, 5000.0, 40_000.0, 200_000.0, 900_000.0):
        for policy in ("hsm", "ism", "msm", "auto"):
            plan = solve(chain, budget, policy)
            assert simulate(plan).peak <= budget


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"budget": float("nan")}, ValueError, "finite"),
        ({"budget": -1.0}, ValueError, "budget"),
        ({"budget": "10"}, TypeError, "budget"),
        ({"budget": 10.0, "policy": "fastest"}, ValueError, "unknown policy 'fastest'"),
        ({"budget": 10.0, "policy": 3}, TypeError, "policy"),
    ],
)
def test_bad_arguments(kwargs: dict, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        solve(Chain(10, 1.0, 2.0), **kwargs)


def test_infeasible_budget_states_minimum() -> None:
    chain = Chain(10, 4.0, 8.0)
    with pytest.raises(InfeasibleBudgetError, match="minimum 8") as info:
        solve(chain, 3.0, "msm")  # h[0] and the input of the step being back-propagated
    assert info.value.minimum == 8.0
    assert isinstance(info.value, ValueError)
    with pytest.raises(InfeasibleBudgetError) as info2:
        solve(chain, 20.0, "store_all")
    assert info2.value.minimum == chain.store_all_peak


def test_segment_is_chens_alone() -> None:
    chain = Chain(100, 1.0, 3.0)
    with pytest.raises(ValueError, match="segment=5 needs policy='chen'"):
        solve(chain, 50.0, "msm", segment=5)
    with pytest.raises(ValueError, match="segment=0"):
        solve(chain, 50.0, "chen", segment=0)


@pytest.mark.parametrize(("T", "budget"), [(1100, 43.97), (1500, 9.0), (2500, 30.0), (4000, 200.0)])
def test_hierarchical_plans_are_valid(T: int, budget: float) -> None:
    chain = Chain(T, 1.0, 4.0)
    for policy in ("ism", "msm", "auto"):
        plan = solve(chain, budget, policy)
        sim = simulate(plan)
        assert sim.forward_steps == plan.forward_steps and sim.peak <= budget
        assert plan.forward_steps <= solve(chain, budget, "recompute_all").forward_steps


def test_tiny_budget_long_sequence_is_recompute_all() -> None:
    plan = solve(Chain(100_000, 1.0, 4.0), 2.5, "msm")  # below three hidden states
    assert plan.forward_steps == 100_000 * 100_001 // 2
