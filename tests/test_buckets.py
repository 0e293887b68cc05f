"""Length buckets: a plan for T' >= T restricted to T is valid, fits, and costs little more."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrnn.errors import InfeasibleBudgetError
from mbrnn.plan import Chain, simulate, solve
from mbrnn.plan.buckets import BUCKET_MIN, BUCKET_RATIO, bucket_length, restrict


@pytest.mark.parametrize("ratio", [BUCKET_RATIO, 2 ** (1 / 16), 1.5])
def test_buckets_round_up_within_the_ratio(ratio: float) -> None:
    previous = 0
    for T in range(1, 20_000, 7):
        b = bucket_length(T, ratio)
        assert b >= T and b >= previous  # monotone, never shorter
        if T > BUCKET_MIN:
            assert b <= T * ratio + 1
            assert bucket_length(b, ratio) == b  # a bucket's length is its own bucket
        else:
            assert b == T
        previous = b
    assert len({bucket_length(T, ratio) for T in range(1000, 5001)}) <= 1 + 4 / (ratio - 1)
    assert bucket_length(5000, 1.0) == 5000
    with pytest.raises(ValueError, match="ratio must be a number >= 1"):
        bucket_length(100, 0.5)
    with pytest.raises(ValueError, match="length must be an int >= 1"):
        bucket_length(0)


@settings(max_examples=150, deadline=None)
@given(T=st.integers(2, 300), cut=st.integers(0, 299), alpha=st.sampled_from([1.0, 2.0, 3.5]),
       frac=st.floats(0.0, 1.0), policy=st.sampled_from(["msm", "ism", "hsm", "chen", "auto"]),
       run=st.sampled_from([0.0, 1.5]), sweep=st.sampled_from([0.0, 2.0]))
def test_a_restricted_plan_is_valid_and_within_the_budget(
        T: int, cut: int, alpha: float, frac: float, policy: str, run: float,
        sweep: float) -> None:
    chain = Chain(T, 1.0, alpha, run_size=run, sweep_size=sweep, backward_step_size=0.5,
                  call_steps=16)
    budget = 2.0 + frac * chain.store_all_peak
    try:
        plan = solve(chain, budget, policy)
    except InfeasibleBudgetError:
        return
    full = simulate(plan)
    length = max(1, T - cut)
    short = restrict(plan, length)
    sim = simulate(short)  # raises PlanError if the restricted plan is not executable
    assert short.chain.length == length and sim.forward_steps == short.forward_steps
    assert sim.peak <= full.peak  # every term is at most the longer plan's
    assert sim.forward_steps <= full.forward_steps
    assert sim.forward_steps >= length


@pytest.mark.parametrize(("lo", "hi"), [(200, 1000), (1000, 5000)])
def test_bucketing_costs_under_two_percent(lo: int, hi: int) -> None:
    """The benchmark's range: each length planned through its bucket, against its own
    optimum at the same budget."""
    import random

    rng = random.Random(0)
    plans: dict[int, object] = {}
    worst = 0.0
    for _ in range(12):
        T = rng.randint(lo, hi)
        b = bucket_length(T)
        budget = 0.05 * Chain(b, 1.0, 4.0).store_all_peak
        if b not in plans:
            plans[b] = solve(Chain(b, 1.0, 4.0), budget, "msm")
        short = restrict(plans[b], T)  # type: ignore[arg-type]
        assert simulate(short).peak <= budget
        own = solve(Chain(T, 1.0, 4.0), budget, "msm")
        worst = max(worst, short.forward_steps / own.forward_steps - 1)
    assert worst <= 0.02


def test_restrict_keeps_the_whole_plan_at_full_length() -> None:
    plan = solve(Chain(50, 1.0, 3.0), 20.0, "msm")
    assert restrict(plan, 50) is plan
    with pytest.raises(ValueError, match="length must be an int in"):
        restrict(plan, 51)
