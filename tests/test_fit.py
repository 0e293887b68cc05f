"""The fitting loop against a brute-force search over planner budgets: pure, no kernels.

``fit`` lowers the planner's budget until ``simulate(plan).peak + working`` fits the
byte budget (NOTE [ Fitting a plan ] in ``mbrnn/runtime/fit.py``). The oracle tries every
planner budget on the planner's own grid, for the policy and the plans it contains
(an HSM plan is an MSM plan; recomputing everything is a plan of every dynamic
program), and keeps the cheapest that fits.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrnn.errors import InfeasibleBudgetError
from mbrnn.plan import Chain, rank, solve, summary
from mbrnn.runtime.fit import Working, fit, minimum_budget

WORKING = Working(single=3, multi=5)
CONTAINS = {"hsm": ("hsm",), "ism": ("ism",), "msm": ("msm", "hsm")}


def _predicted(plan, working: Working) -> float:
    sim = summary(plan)
    return sim.peak + working.for_stats(sim) + plan.chain.state_size


def oracle(chain: Chain, budget: int, policy: str, working: Working) -> int | None:
    """Fewest forward steps of any plan of ``policy`` that fits, over every planner budget."""
    best = None
    unit = chain.state_size  # integer sizes: the planner's grid
    for k in range(int(budget / unit) + 1):
        for p in (*CONTAINS[policy], "recompute_all"):
            try:
                plan = solve(chain, k * unit, p)
            except InfeasibleBudgetError:
                continue
            if _predicted(plan, working) <= budget and (best is None or plan.forward_steps < best):
                best = plan.forward_steps
    return best


def _fit_or_none(chain: Chain, budget: int, policy: str, working: Working) -> int | None:
    try:
        rp = fit(chain, budget, policy, working)
    except InfeasibleBudgetError as e:
        assert e.minimum > budget
        return None
    assert rp.predicted_peak <= budget
    assert rp.predicted_peak == _predicted(rp.plan, working)
    return rp.forward_steps


CHAINS = [
    Chain(T, 1.0, 2.0, **terms)
    for T in range(1, 9)
    for terms in ({}, {"run_size": 1.0}, {"run_size": 2.0, "sweep_size": 1.0},
                  {"backward_step_size": 1.0, "call_steps": 3})
]


@pytest.mark.filterwarnings("ignore:.*only with .* forward steps:UserWarning")
@pytest.mark.parametrize("policy", ["hsm", "ism", "msm"])
@pytest.mark.parametrize("chain", CHAINS, ids=repr)
def test_exhaustive_against_a_search_over_planner_budgets(chain: Chain, policy: str) -> None:
    top = int(chain.store_all_peak + 3 * chain.length + 12)
    for budget in range(0, top):
        assert _fit_or_none(chain, budget, policy, WORKING) == oracle(
            chain, budget, policy, WORKING), (budget, policy)


@pytest.mark.filterwarnings("ignore:.*only with .* forward steps:UserWarning")
@settings(max_examples=60, deadline=None)
@given(T=st.integers(2, 60), alpha=st.sampled_from([1, 2, 4]), run=st.sampled_from([0, 1, 3]),
       sweep=st.sampled_from([0, 2]), back=st.sampled_from([0, 1]),
       policy=st.sampled_from(["hsm", "ism", "msm", "auto"]), run_cost=st.sampled_from([0, 2]))
def test_a_fitted_plan_always_fits_and_more_memory_never_costs_more(
        T: int, alpha: int, run: int, sweep: int, back: int, policy: str, run_cost: int) -> None:
    chain = Chain(T, 2.0, 2.0 * alpha, run_size=float(run), sweep_size=float(sweep),
                  backward_step_size=float(back), call_steps=8)
    working = Working(single=4, multi=7)
    least = minimum_budget(chain, policy, working)
    previous = None
    for budget in sorted({least, least + 1, *range(least, int(chain.store_all_peak) + 40, 5)}):
        rp = fit(chain, budget, policy, working, run_cost=run_cost)
        assert rp.predicted_peak <= budget
        cost = rank(rp.forward_steps, rp.runs, run_cost)[0]
        if previous is not None and policy != "auto":
            assert rp.forward_steps <= previous, (budget, policy)
        previous = rp.forward_steps
        assert cost >= chain.length
    with pytest.raises(InfeasibleBudgetError) as e:
        fit(chain, least - 1, policy, working)
    assert e.value.minimum == least


@pytest.mark.parametrize("T", [5, 40, 300, 3000])
def test_msm_and_auto_are_never_worse_than_hsm(T: int) -> None:
    """MSM's moves contain HSM's: at any budget the fitted MSM (and auto) plan costs no
    more forward steps than the fitted HSM plan, executor terms or not."""
    for alpha, run in itertools.product((1.0, 1.05, 3.0), (0.0, 2.0)):
        chain = Chain(T, 2.0, 2.0 * alpha, run_size=run)
        least = minimum_budget(chain, "hsm", WORKING)
        for budget in (least, int(1.5 * least), 4 * least, int(chain.store_all_peak * 0.3)):
            if budget < least:
                continue
            hsm = fit(chain, budget, "hsm", WORKING).forward_steps
            assert fit(chain, budget, "msm", WORKING).forward_steps <= hsm
            assert fit(chain, budget, "auto", WORKING).forward_steps <= hsm


def test_named_policies_run_as_named() -> None:
    chain = Chain(100, 1.0, 3.0)
    budget = int(0.3 * chain.store_all_peak)
    for policy in ("hsm", "ism", "msm", "chen", "recompute_all"):
        assert fit(chain, budget, policy, WORKING).plan.policy == policy
    with pytest.raises(InfeasibleBudgetError, match=r"policy 'store_all' needs .* or use "
                                                    r"policy='auto' \(.*\)") as e:
        fit(chain, budget, "store_all", WORKING)
    assert e.value.minimum == minimum_budget(chain, "store_all", WORKING)


def test_auto_ranks_runs_at_their_cost() -> None:
    """With a cost per run, auto prefers fewer, longer runs; without, the fewest steps."""
    chain = Chain(400, 1.0, 4.0, run_size=0.5)
    budget = int(0.06 * chain.store_all_peak)
    steps = fit(chain, budget, "auto", WORKING)
    calls = fit(chain, budget, "auto", WORKING, run_cost=50.0)
    assert steps.forward_steps <= calls.forward_steps
    assert calls.runs <= steps.runs
    assert rank(calls.forward_steps, calls.runs, 50.0) <= rank(steps.forward_steps, steps.runs, 50.0)


def test_a_named_policy_far_worse_than_auto_warns() -> None:
    chain = Chain(200, 1.0, 1.0)
    with pytest.warns(UserWarning, match=r"policy='ism' fits .* only with 20,100 forward steps; "
                                         r"policy='auto' would run"):
        rp = fit(chain, int(minimum_budget(chain, "ism", WORKING) + 1), "ism", WORKING)
    assert rp.plan.policy == "ism" and rp.forward_steps == 200 * 201 // 2
