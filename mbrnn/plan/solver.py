"""Plan back-propagation through time under a memory budget: the planner's entry point.

After Gruslys, Munos, Danihelka, Lanctot and Graves, "Memory-Efficient Backpropagation
Through Time" (NeurIPS 2016), and Griewank and Walther, "Algorithm 799: Revolve" (ACM
TOMS 2000). :func:`solve` validates its arguments and dispatches to a policy:

- ``"hsm"``: the closed form of :mod:`mbrnn.plan.hsm` (no table);
- ``"ism"`` and ``"msm"``: the exact table of :mod:`mbrnn.plan.table` up to
  ``EXACT_LIMIT`` steps, the hierarchical plan of :mod:`mbrnn.plan.hierarchy` beyond;
- ``"store_all"``, ``"recompute_all"``, ``"chen"``: :mod:`mbrnn.plan.baselines`;
- ``"auto"``: every candidate, ranked by :func:`mbrnn.plan.policy.rank`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace

from ..errors import InfeasibleBudgetError
from .baselines import (
    chen_cost,
    chen_ops,
    chen_segment,
    chen_stats,
    recompute_all_ops,
    recompute_all_stats,
    store_all_ops,
    store_all_stats,
)
from .chain import Chain
from .emit import emit, merge
from .hierarchy import EXACT_LIMIT, hierarchical
from .hsm import hsm_cost, hsm_decide, hsm_stats
from .ops import Op, OpSequence, Plan, Simulation
from .policy import POLICIES, PolicyName, check_policy, rank
from .simulate import summary
from .table import tables

__all__ = ["EXACT_LIMIT", "POLICIES", "candidates", "chen_segments", "minimum_budget", "solve"]


def _check_budget(budget: object) -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise TypeError(f"solve: budget must be a number, got {type(budget).__name__}")
    b = float(budget)
    if not math.isfinite(b) or b < 0:
        raise ValueError(f"solve: budget must be finite and >= 0, got {budget!r}")
    return b


def _check_leaf(leaf: object) -> int:
    if isinstance(leaf, bool) or not isinstance(leaf, int) or leaf < 1:
        raise ValueError(f"solve: leaf must be an int >= 1, got {leaf!r}")
    return leaf


def minimum_budget(chain: Chain) -> float:
    """The least budget any policy plans ``chain`` in: ``h[0]``, and for ``T >= 2`` the
    input of the step being back-propagated (``2 * state_size``)."""
    return chain.state_size * (1 if chain.length == 1 else 2)


def _infeasible(chain: Chain, budget: float, minimum: float, policy: str) -> InfeasibleBudgetError:
    return InfeasibleBudgetError(
        f"budget={budget:g} is below the minimum {minimum:g} that policy {policy!r} needs for "
        f"T={chain.length} (state_size={chain.state_size:g}, internal_size="
        f"{chain.internal_size:g}); raise the budget to at least {minimum:g}"
        + ("" if policy in ("auto", "hsm", "ism", "msm", "recompute_all")
           else " or use policy='auto'"),
        minimum=minimum,
    )


def _plan(policy: str, chain: Chain, budget: float, cost: int,
          factory: Callable[[], Iterator[Op]], exact: bool = True,
          stats: Simulation | None = None) -> Plan:
    return Plan(policy, chain, budget, cost, OpSequence(factory), exact, stats)


def _store_all(policy: str, chain: Chain, budget: float) -> Plan:
    T = chain.length
    return _plan(policy, chain, budget, T, lambda: store_all_ops(T), stats=store_all_stats(chain))


def _recompute_all(policy: str, chain: Chain, budget: float) -> Plan:
    T = chain.length
    return _plan(policy, chain, budget, T * (T + 1) // 2, lambda: recompute_all_ops(T),
                 stats=recompute_all_stats(chain))


def _hsm(chain: Chain, budget: float, exact: bool = True) -> Plan:
    """Revolve with the slots the budget holds, one kept for the input of the step being
    back-propagated (``T >= 2``): ``C(t, c) = hsm_cost(t, c - 1)`` in this accounting."""
    T = chain.length
    c = math.floor(budget / chain.state_size + 1e-9) - (0 if T == 1 else 1)
    return _plan("hsm", chain, budget, hsm_cost(T, c), lambda: merge(emit(T, c, hsm_decide)),
                 exact, hsm_stats(chain, c))


def _chen(chain: Chain, budget: float, segment: int | None) -> Plan:
    T = chain.length
    cost, peak = chen_cost(T, chain.state_size, chain.internal_size, segment)
    if budget < peak * (1 - 1e-12):
        raise _infeasible(chain, budget, peak, "chen")
    return _plan("chen", chain, budget, cost, lambda: chen_ops(T, segment),
                 stats=chen_stats(chain, segment))


def _solve_one(chain: Chain, budget: float, policy: str, resolution: int | None,
               exact: bool | None, leaf: int = EXACT_LIMIT, segment: int | None = None
               ) -> Plan:
    T = chain.length
    least = minimum_budget(chain)
    if budget < least * (1 - 1e-12):
        raise _infeasible(chain, budget, least, policy)
    if policy == "store_all":
        need = chain.store_all_peak
        if budget < need * (1 - 1e-12):
            raise _infeasible(chain, budget, need, policy)
        return _store_all(policy, chain, budget)
    if policy == "recompute_all":
        return _recompute_all(policy, chain, budget)
    if policy == "chen":
        return _chen(chain, budget, segment)
    if policy == "hsm":
        return _hsm(chain, budget)
    # ism / msm
    u = chain.discretise(budget, resolution)
    hsm = policy == "msm"
    m = u.m
    if m >= u.s + (T - 1) * u.a:  # everything fits
        return _store_all(policy, chain, budget)
    if m < u.s + u.a and not hsm:  # no ISM move fits: run to the end every time
        return _recompute_all(policy, chain, budget)
    use_exact = leaf >= T if exact is None else exact
    if use_exact:
        C = tables(T, m, u.s, u.a, hsm, True)
        decide = tables.decider(C, u.s, u.a, hsm, True)
        return _plan(policy, chain, budget, int(C[T, m]),
                     lambda: merge(emit(T, m, decide)))
    cost, factory = hierarchical(T, m, u.s, u.a, hsm, leaf)
    if hsm:  # msm includes hsm's moves: never do worse than its closed form
        closed = _hsm(chain, budget, exact=False)
        if closed.forward_steps < cost:
            return replace(closed, policy=policy)
    return _plan(policy, chain, budget, cost, factory, exact=False)


def chen_segments(chain: Chain, budget: float) -> Plan | None:
    """Chen's plan with the longest segments that fit ``budget`` (the fewest runs), or
    ``None``: where ``ceil(sqrt(T))`` segments do not fit, shorter ones keep more hidden
    and fewer internal states at once, for the same ``~2T`` forward steps."""
    T, s, a = chain.length, chain.state_size, chain.internal_size
    for k in range(chen_segment(T), 0, -1):
        if chen_cost(T, s, a, k)[1] <= budget * (1 + 1e-12):
            return _chen(chain, budget, k)
    return None


def solve(
    chain: Chain,
    budget: float,
    policy: PolicyName | str = "auto",
    *,
    resolution: int | None = None,
    exact: bool | None = None,
    leaf: int = EXACT_LIMIT,
    segment: int | None = None,
    run_cost: float = 0.0,
) -> Plan:
    """Plan back-propagation through ``chain`` within ``budget``.

    Args:
        chain: the per-step sizes and the length ``T``.
        budget: peak memory allowed by the accounting in :mod:`mbrnn.plan.simulate`,
            in the chain's unit.
        policy: ``"store_all"``, ``"recompute_all"``, ``"chen"``, ``"hsm"``, ``"ism"``,
            ``"msm"``, or ``"auto"`` (the feasible plan of the least forward steps plus
            ``run_cost`` per run; ties go to fewer, longer runs).
        resolution: units per hidden state for the ISM/MSM tables (see
            :meth:`Chain.discretise`).
        exact: force (``True``) or forbid (``False``) the exact ISM/MSM table; by default
            it is used up to ``leaf`` steps and a hierarchical plan beyond.
        leaf: the longest subsequence a hierarchical plan solves with the exact table
            (default ``EXACT_LIMIT``); smaller values plan faster and coarser.
        segment: ``"chen"`` only: the segment length (default ``ceil(sqrt(T))``).
        run_cost: ``"auto"`` only: what a run costs in forward steps, beside its steps
            (a fused kernel call's fixed time); with ``run_cost > 0`` Chen's plan with
            shorter segments is a candidate too.

    Raises:
        InfeasibleBudgetError: the budget is below what the policy needs; ``.minimum``
            says how much would do.

    Example::

        >>> from mbrnn.plan import Chain, simulate, solve
        >>> plan = solve(Chain(1000, 1.0, 4.0), budget=50.0, policy="msm")
        >>> plan.forward_steps, simulate(plan).peak <= 50.0
        (2660, True)
    """
    if not isinstance(chain, Chain):
        raise TypeError(f"solve: chain must be a Chain, got {type(chain).__name__}")
    b = _check_budget(budget)
    policy = check_policy("solve", policy)
    if segment is not None and (policy != "chen" or not isinstance(segment, int)
                                or isinstance(segment, bool) or segment < 1):
        raise ValueError(f"solve: segment={segment!r} needs policy='chen' and an int >= 1 "
                         f"(got policy={policy!r}); leave it out for the other policies")
    if policy != "auto":
        return _solve_one(chain, b, policy, resolution, exact, _check_leaf(leaf), segment)
    return _auto(chain, b, resolution, exact, _check_leaf(leaf), _check_run_cost(run_cost))


def _check_run_cost(run_cost: object) -> float:
    if isinstance(run_cost, bool) or not isinstance(run_cost, (int, float)) or not (
            math.isfinite(run_cost) and run_cost >= 0):
        raise ValueError(f"solve: run_cost must be a finite number >= 0, got {run_cost!r}")
    return float(run_cost)


def _auto(chain: Chain, budget: float, resolution: int | None, exact: bool | None, leaf: int,
          run_cost: float) -> Plan:
    """Every candidate that fits, ranked by :func:`~mbrnn.plan.policy.rank`."""
    least = minimum_budget(chain)
    if budget < least * (1 - 1e-12):
        raise _infeasible(chain, budget, least, "auto")
    if budget >= chain.store_all_peak * (1 - 1e-12):
        return _store_all("store_all", chain, budget)
    cands: list[Plan] = []
    for p in candidates(chain.length, leaf):
        try:
            cands.append(_solve_one(chain, budget, p, resolution, exact, leaf))
        except InfeasibleBudgetError:
            continue
    if run_cost > 0 and not any(p.policy == "chen" for p in cands):
        shorter = chen_segments(chain, budget)  # fewer runs than the optimal plan's
        if shorter is not None:
            cands.append(shorter)
    best = min(cands, key=lambda p: p.forward_steps)
    if run_cost > 0 or sum(p.forward_steps == best.forward_steps for p in cands) > 1:
        best = min(cands, key=lambda p: rank(p.forward_steps, summary(p).runs, run_cost))
    return best


def candidates(T: int, leaf: int = EXACT_LIMIT) -> list[str]:
    """The policies ``auto`` compares. MSM's moves contain ISM's, so an ISM plan never has
    fewer steps; it can tie with fewer runs, but its table would double the planning
    time for that rare tie, so it is left out (``T`` and ``leaf`` are kept for callers
    that want the exact-table range)."""
    del T, leaf
    return ["chen", "hsm", "msm", "recompute_all"]
