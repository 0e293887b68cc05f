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

from ..errors import InfeasibleBudgetError
from .baselines import chen_cost, chen_ops, recompute_all_ops, store_all_ops
from .chain import Chain
from .emit import emit, merge
from .hierarchy import EXACT_LIMIT, hierarchical
from .hsm import hsm_cost, hsm_decide
from .ops import Op, OpSequence, Plan
from .policy import POLICIES, PolicyName, check_policy
from .simulate import summary
from .table import tables

__all__ = ["EXACT_LIMIT", "POLICIES", "solve"]


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
          factory: Callable[[], Iterator[Op]], exact: bool = True) -> Plan:
    return Plan(policy, chain, budget, cost, OpSequence(factory), exact)


def _solve_one(chain: Chain, budget: float, policy: str, resolution: int | None,
               exact: bool | None, leaf: int = EXACT_LIMIT, segment: int | None = None
               ) -> Plan:
    T, s = chain.length, chain.state_size
    if budget < s * (1 - 1e-12):
        raise _infeasible(chain, budget, s, policy)
    if policy == "store_all":
        need = chain.store_all_peak
        if budget < need * (1 - 1e-12):
            raise _infeasible(chain, budget, need, policy)
        return _plan(policy, chain, budget, T, lambda: store_all_ops(T))
    if policy == "recompute_all":
        return _plan(policy, chain, budget, T * (T + 1) // 2, lambda: recompute_all_ops(T))
    if policy == "chen":
        cost, peak = chen_cost(T, s, chain.internal_size, segment)
        if budget < peak * (1 - 1e-12):
            raise _infeasible(chain, budget, peak, policy)
        return _plan(policy, chain, budget, cost, lambda: chen_ops(T, segment))
    if policy == "hsm":
        c = math.floor(budget / s + 1e-9)
        return _plan(policy, chain, budget, hsm_cost(T, c),
                     lambda: merge(emit(T, c, hsm_decide)))
    # ism / msm
    u = chain.discretise(budget, resolution)
    hsm = policy == "msm"
    m = u.m
    if m >= u.s + (T - 1) * u.a:  # everything fits
        return _plan(policy, chain, budget, T, lambda: store_all_ops(T))
    if m < u.s + u.a and (not hsm or m < 2 * u.s):  # no move but running to the end
        return _plan(policy, chain, budget, T * (T + 1) // 2, lambda: recompute_all_ops(T))
    use_exact = leaf >= T if exact is None else exact
    if use_exact:
        C = tables(T, m, u.s, u.a, hsm, True)
        decide = tables.decider(C, u.s, u.a, hsm, True)
        return _plan(policy, chain, budget, int(C[T, m]),
                     lambda: merge(emit(T, m, decide)))
    cost, factory = hierarchical(T, m, u.s, u.a, hsm, leaf)
    if hsm:  # msm includes hsm's moves: never do worse than its closed form
        c = math.floor(budget / s + 1e-9)
        if hsm_cost(T, c) < cost:
            return _plan(policy, chain, budget, hsm_cost(T, c),
                         lambda: merge(emit(T, c, hsm_decide)), exact=False)
    return _plan(policy, chain, budget, cost, factory, exact=False)


def solve(
    chain: Chain,
    budget: float,
    policy: PolicyName | str = "auto",
    *,
    resolution: int | None = None,
    exact: bool | None = None,
    leaf: int = EXACT_LIMIT,
    segment: int | None = None,
) -> Plan:
    """Plan back-propagation through ``chain`` within ``budget``.

    Args:
        chain: the per-step sizes and the length ``T``.
        budget: peak memory allowed by the accounting in :mod:`mbrnn.plan.simulate`,
            in the chain's unit.
        policy: ``"store_all"``, ``"recompute_all"``, ``"chen"``, ``"hsm"``, ``"ism"``,
            ``"msm"``, or ``"auto"`` (the cheapest feasible plan of all; ties go to fewer,
            longer runs).
        resolution: units per hidden state for the ISM/MSM tables (see
            :meth:`Chain.discretise`).
        exact: force (``True``) or forbid (``False``) the exact ISM/MSM table; by default
            it is used up to ``leaf`` steps and a hierarchical plan beyond.
        leaf: the longest subsequence a hierarchical plan solves with the exact table
            (default ``EXACT_LIMIT``); smaller values plan faster and coarser.
        segment: ``"chen"`` only: the segment length (default ``ceil(sqrt(T))``).

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
    leaf = _check_leaf(leaf)
    if b < chain.state_size * (1 - 1e-12):
        raise _infeasible(chain, b, chain.state_size, "auto")
    if b >= chain.store_all_peak * (1 - 1e-12):
        best = _solve_one(chain, b, "store_all", resolution, exact, leaf)
        return _plan("store_all", chain, b, best.forward_steps, best.ops._factory)
    cands: list[Plan] = []
    # msm's moves include ism's, so ism is never cheaper; it can tie with fewer runs, which
    # is worth a look where the exact table is cheap
    names = ["chen", "hsm", "msm", "recompute_all"]
    if chain.length <= leaf:
        names.insert(3, "ism")
    for p in names:
        try:
            cands.append(_solve_one(chain, b, p, resolution, exact, leaf))
        except InfeasibleBudgetError:
            continue
    low = min(p.forward_steps for p in cands)
    tied = [p for p in cands if p.forward_steps == low]
    if len(tied) > 1 and chain.length <= 100_000:
        tied.sort(key=lambda p: summary(p).runs)
    return tied[0]
