"""Fit a plan to a budget in bytes: the one loop, and the one ``auto``, of every front end.

:func:`fit` is pure: it takes a :class:`~mbrnn.plan.Chain` in bytes (the probed sizes
and the executor's terms), a budget, a policy and the executor's measured working set,
and returns the plan to run. ``Recurrent``, ``LSTM``/``GRU``/``RNN`` and the zoo's models
all plan through it, so the same sizes, budget and policy give the same plan everywhere.

The prediction is, for every plan::

    predicted_peak = simulate(plan).peak + working.for_stats(...) + slack

``simulate`` counts the kept states, the run inputs and the chain's executor terms
(:mod:`mbrnn.plan.simulate`); ``working`` is what the executor holds besides (the step
being back-propagated, the running state, autograd's temporaries, the gradients a run
returns and their running sum), measured by :func:`mbrnn.runtime.probe.measure_working`;
``slack`` is one hidden state, within which measured peaks agree with the prediction
(when the running state is released relative to a run's backward).

NOTE [ Fitting a plan ]
The dynamic programs plan for the paper's two sizes (and run inputs); the executor's
terms (memory per kept call, a sweep's transient, a kept call's backward transient) are
not in their recurrences. So the planner's budget, the *target*, starts at what the
budget leaves after the working set, and is lowered while the plan it gives does not fit:
first by the excess (usually one round), then by bisection between the largest target
that fitted and the smallest that did not, keeping the best plan that fitted. A plan's
forward steps never rise as the target grows, so the largest target that fits is the one
to find. Invariants: the plan returned always fits (``predicted_peak <= budget``); ``msm``
is never worse than ``hsm`` at the same budget (an HSM plan is an MSM plan, so both are
fitted and the better kept); a named policy runs that policy or raises
:class:`~mbrnn.errors.InfeasibleBudgetError`; ``auto`` fits every candidate and keeps the
best by :func:`mbrnn.plan.rank`. Tested against a brute-force search over targets in
``tests/test_fit.py``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache

from ..errors import InfeasibleBudgetError
from ..plan import EXACT_LIMIT, Chain, Plan, Simulation, rank, solve, summary
from ..plan.baselines import chen_segment, chen_stats, store_all_stats
from ..plan.buckets import bucket_length, restrict
from ..plan.policy import check_policy
from ..plan.solver import candidates
from ..sizes import format_size

__all__ = ["ModulePlan", "RecurrencePlan", "Working", "fit", "minimum_budget"]

#: Targets tried one planner unit apart below the first (each is one solve with a cached
#: table): an exact search this far, the excess and bisection beyond.
_SCAN = 48
#: The same beyond the exact table's reach, where each solve builds a hierarchical plan.
_SCAN_LONG = 4
#: Rounds of lowering by the excess, and of bisection, beyond the scan.
_ROUNDS = 6


@dataclass(frozen=True)
class Working:
    """The executor's working set in bytes, for plans whose kept runs are one step long
    (``single``) and for plans with longer runs (``multi``)."""

    single: int
    multi: int

    def for_stats(self, sim: Simulation) -> int:
        """The figure that applies to a plan with these statistics."""
        return self.multi if sim.longest_run > 1 else self.single


@dataclass(frozen=True)
class RecurrencePlan:
    """A plan with its byte figures: what one budgeted recurrence runs.

    Attributes:
        plan: the planner's plan over the chain in bytes.
        budget: the budget it was fitted to (bytes).
        working: the working set and slack that apply to it (bytes).
        kept_peak: ``simulate(plan).peak``: kept states, run inputs and executor terms.
    """

    plan: Plan
    budget: int
    working: int
    kept_peak: int

    @property
    def predicted_peak(self) -> int:
        """``kept_peak + working``: what the budget bounds."""
        return self.kept_peak + self.working

    @property
    def forward_steps(self) -> int:
        return self.plan.forward_steps

    @property
    def runs(self) -> int:
        """Forward runs (each at least one kernel call)."""
        return summary(self.plan).runs

    def time_overhead(self, beta: float = 2.0) -> float:
        return self.plan.time_overhead(beta)

    def summary(self) -> str:
        p = self.plan
        return (
            f"policy={p.policy} T={p.chain.length} forward_steps={p.forward_steps} "
            f"(x{p.recompute_factor:.2f}) predicted_peak={format_size(self.predicted_peak)} "
            f"of budget {format_size(self.budget)}"
        )


@dataclass(frozen=True)
class ModulePlan:
    """What a budgeted module call runs: one plan per recurrence.

    A unidirectional module is one recurrence over all its layers; a bidirectional one
    has ``2 * num_layers``, in the order ``l0, l0_reverse, l1, ...``, each fitted to an
    equal share of the budget.

    Attributes:
        plans: each recurrence's :class:`RecurrencePlan`.
        chunks: per recurrence, the steps per fused call of a sweep that keeps nothing.
        keep_chunks: per recurrence, the most steps per fused call of a kept run.
        budget: the whole budget in bytes.
    """

    plans: tuple[RecurrencePlan, ...]
    chunks: tuple[int, ...]
    keep_chunks: tuple[int, ...]
    budget: int

    @property
    def predicted_peak(self) -> int:
        """Sum of the recurrences' predicted peaks: what ``memory_budget`` bounds."""
        return sum(rp.predicted_peak for rp in self.plans)

    @property
    def forward_steps(self) -> int:
        return sum(rp.forward_steps for rp in self.plans)

    @property
    def runs(self) -> int:
        """Forward runs of all plans: kernel calls, sweeps' pieces aside."""
        return sum(rp.runs for rp in self.plans)

    def time_overhead(self, beta: float = 2.0) -> float:
        """Predicted time against storing everything (the mean over recurrences)."""
        return sum(rp.time_overhead(beta) for rp in self.plans) / len(self.plans)

    def summary(self) -> str:
        p = self.plans[0].plan
        policies = ",".join(sorted({rp.plan.policy for rp in self.plans}))
        return (
            f"{len(self.plans)} recurrence(s), policy={policies} T={p.chain.length} "
            f"forward_steps={self.forward_steps} (time x{self.time_overhead():.3f}) "
            f"predicted_peak={format_size(self.predicted_peak)} of budget "
            f"{format_size(self.budget)}"
        )


# ---------------------------------------------------------------------------------------


def _slack(chain: Chain) -> int:
    return math.ceil(chain.state_size)


def _fitted(plan: Plan, budget: int, working: Working) -> RecurrencePlan:
    sim = summary(plan)
    return RecurrencePlan(plan, budget, working.for_stats(sim) + _slack(plan.chain),
                          math.ceil(sim.peak))


def _key(rp: RecurrencePlan, run_cost: float) -> tuple[float, int]:
    return rank(rp.forward_steps, rp.runs, run_cost)


def _fit_policy(chain: Chain, budget: int, policy: str, working: Working,
                run_cost: float) -> RecurrencePlan | None:
    """The best plan of ``policy`` that fits ``budget``, or ``None``: NOTE [ Fitting a plan ]."""
    # the planner's grid: plans change only from one unit of budget to the next
    unit = chain.state_size if policy == "hsm" else chain.discretise(budget).unit

    def attempt(target: float) -> tuple[RecurrencePlan | None, float, Plan | None]:
        if target < chain.state_size:
            return None, math.inf, None
        try:
            plan = solve(chain, target, policy)
        except InfeasibleBudgetError:
            return None, math.inf, None
        rp = _fitted(plan, budget, working)
        excess = rp.predicted_peak - budget
        return (rp if excess <= 0 else None), excess, plan

    top = float(budget - working.single - _slack(chain))
    best, excess, plan = attempt(top)
    if best is not None or policy not in _DYNAMIC:  # the baselines' plans have one shape
        return best
    if plan is None or plan.forward_steps == _quadratic(chain):
        return _least(chain, budget, policy, working)
    # 1. the next _SCAN targets down, one planner unit at a time: exact, for the largest
    #    target that fits is the cheapest (a plan's cost never rises with its budget)
    scan = _SCAN if chain.length <= EXACT_LIMIT else _SCAN_LONG
    for k in range(1, scan + 1):
        got, excess, again = attempt(top - k * unit)
        if got is not None:
            return got
        if again is None:
            return _least(chain, budget, policy, working)
        plan = again
    # 2. further down: lower by the excess (doubling the step while the plan does not move)
    hi, lo, below = top - scan * unit, None, None  # no fit at hi; a fit at lo; no plan
    target, step, same = hi, 0.0, False
    for _ in range(2 * _ROUNDS):
        step = max(excess, unit, 2 * step) if same else max(excess, unit)
        target -= step
        got, excess, again = attempt(target)
        if got is not None:
            best, lo = got, target
            break
        if again is None:
            below = target
            break
        same = summary(again) == summary(plan)  # discrete: plans move in whole units
        hi, plan = target, again
    # 3. overshot below every plan: look for one between there and the last that missed
    if best is None and below is not None:
        a, b = below, hi
        for _ in range(_ROUNDS):
            if b - a <= unit:
                break
            mid = (a + b) / 2
            got, _, again = attempt(mid)
            if got is not None:
                best, lo = got, mid
                break
            if again is None:
                a = mid
            else:
                b = hi = mid
    if best is None or lo is None:
        return _least(chain, budget, policy, working)
    # 4. a larger target that fits: bisect up
    for _ in range(_ROUNDS):
        if hi - lo <= unit:
            break
        mid = (lo + hi) / 2
        got, _, _ = attempt(mid)
        if got is None:
            hi = mid
        else:
            lo = mid
            if _key(got, run_cost) < _key(best, run_cost):
                best = got
    return best


#: The policies of the dynamic programs: running to the end and back-propagating one
#: step at a time (recomputing everything) is one of each one's plans, the least memory's.
_DYNAMIC = ("hsm", "ism", "msm")


def _quadratic(chain: Chain) -> int:
    return chain.length * (chain.length + 1) // 2


def _least(chain: Chain, budget: int, policy: str, working: Working) -> RecurrencePlan | None:
    """The least-memory plan of a dynamic program's ``policy`` if it fits, else ``None``.

    Where the planner's budget is just above its minimum, its optimum can keep runs of
    several steps, whose working set is larger; recomputing everything is a plan of the
    same policy that keeps one step at a time."""
    if policy not in _DYNAMIC:
        return None
    try:
        plan = solve(chain, 1e300, "recompute_all")
    except InfeasibleBudgetError:  # pragma: no cover - recompute_all fits any budget >= 2 s
        return None
    rp = _fitted(_relabel(plan, policy), budget, working)
    return rp if rp.predicted_peak <= budget else None


def _fit_chen_segments(chain: Chain, budget: int, working: Working) -> RecurrencePlan | None:
    """Chen's plan with the longest segments shorter than ``ceil(sqrt(T))`` that fit, its
    peak in closed form for each segment length (no solve)."""
    T = chain.length
    for k in range(chen_segment(T) - 1, 0, -1):
        sim = chen_stats(chain, k)
        if sim.peak + working.for_stats(sim) + _slack(chain) <= budget:
            plan = solve(chain, 1e300, "chen", segment=k)
            return _fitted(plan, budget, working)
    return None


def minimum_budget(chain: Chain, policy: str, working: Working) -> int:
    """The smallest budget (bytes) at which :func:`fit` finds a plan for ``policy``."""
    least = chain.store_all_peak if policy == "store_all" else chain.state_size * 2
    plan = solve(chain, 1e300 if policy in ("store_all", "chen") else least,
                 "recompute_all" if policy in ("auto", "hsm", "ism", "msm") else policy)
    return _fitted(plan, 0, working).predicted_peak


def fit(
    chain: Chain,
    budget: int,
    policy: str,
    working: Working,
    *,
    run_cost: float = 0.0,
    owner: str = "fit",
    context: str = "",
    bucket_ratio: float = 1.0,
) -> RecurrencePlan:
    """The plan to run for ``chain`` within ``budget`` bytes: NOTE [ Fitting a plan ].

    Args:
        chain: sizes in bytes, the executor's terms included.
        budget: bytes that the predicted peak may not exceed.
        policy: a planner policy or ``"auto"``.
        working: the executor's measured working set.
        run_cost: what ``auto`` charges per run, in forward steps (a fused call's fixed
            time; ``0`` for a per-step loop). With ``run_cost > 0`` Chen's plan with
            shorter segments is a candidate too.
        owner, context: name the call in error messages (``"LSTM"``,
            ``"seq_len=1000, batch 32"``).
        bucket_ratio: plan for the length's bucket on this geometric grid and run the
            plan's last ``T`` steps (:mod:`mbrnn.plan.buckets`): one plan per bucket
            serves variable-length data, within the budget. ``1`` plans each length.

    Returns:
        A :class:`RecurrencePlan` with ``predicted_peak <= budget``.

    Raises:
        InfeasibleBudgetError: no plan of ``policy`` fits; ``.minimum`` is the least budget
            that would, and the message names the policies that fit this one.

    Warns:
        UserWarning: a named policy fits only by recomputing far more than ``auto``
            would (more than twice its cost); the plan is still the named policy's.
    """
    policy = check_policy(owner, policy)
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise TypeError(f"{owner}: budget must be an int (bytes), got {type(budget).__name__}")
    T, run_cost = chain.length, float(run_cost)
    got: RecurrencePlan | None = None
    longer = bucket_length(T, bucket_ratio)
    if longer > T and policy not in _BASELINES and not _stores_all(chain, budget, working):
        bucket = _fit_cached(chain.with_length(longer), budget, policy, working, run_cost)
        if bucket is not None:  # else the bucket's length needs more: plan T itself
            got = _restricted(bucket, T)
    if got is None:
        got = _fit_cached(chain, budget, policy, working, run_cost)
    if got is None:
        raise _infeasible(chain, budget, policy, working, run_cost, owner, context)
    if policy not in ("auto", "recompute_all") and got.forward_steps > 4 * T:
        # shown once per shape by Python's default warning filter (the text names it)
        auto = fit(chain, budget, "auto", working, run_cost=run_cost, bucket_ratio=bucket_ratio)
        _warn_if_auto_is_far_better(policy, budget, got, auto, owner, context or f"seq_len={T}")
    return got


#: Policies whose plan has one shape for a length (no budget to spend): never bucketed.
_BASELINES = ("store_all", "recompute_all", "chen")


def _stores_all(chain: Chain, budget: int, working: Working) -> bool:
    """Whether storing everything fits: then no bucket's plan can beat it."""
    sim = store_all_stats(chain)
    return sim.peak + working.for_stats(sim) + _slack(chain) <= budget


@lru_cache(maxsize=1024)
def _restricted(rp: RecurrencePlan, length: int) -> RecurrencePlan:
    """``rp``'s plan for its last ``length`` steps, with its own (lower) prediction."""
    plan = restrict(rp.plan, length)
    return _fitted(plan, rp.budget, Working(rp.working - _slack(rp.plan.chain),
                                            rp.working - _slack(rp.plan.chain)))


@lru_cache(maxsize=256)
def _fit_cached(chain: Chain, budget: int, policy: str, working: Working, run_cost: float
                ) -> RecurrencePlan | None:
    """The best plan of ``policy`` that fits, or ``None``; remembered, so that a training
    loop plans each shape (or bucket) once. The arguments are frozen values, so a hit is
    the same plan."""
    if policy == "auto":
        return _fit_auto(chain, budget, working, run_cost)
    got = _fit_policy(chain, budget, policy, working, run_cost)
    if policy == "msm":  # never worse than hsm: an HSM plan is an MSM plan
        hsm = _fit_policy(chain, budget, "hsm", working, run_cost)
        if hsm is not None and (got is None or hsm.forward_steps < got.forward_steps):
            got = RecurrencePlan(_relabel(hsm.plan, "msm"), hsm.budget, hsm.working,
                                 hsm.kept_peak)
    return got


def _relabel(plan: Plan, policy: str) -> Plan:
    return replace(plan, policy=policy)


def _fit_auto(chain: Chain, budget: int, working: Working, run_cost: float
              ) -> RecurrencePlan | None:
    store = _fit_policy(chain, budget, "store_all", working, run_cost)
    if store is not None:  # the fewest steps and runs there are
        return store
    found: list[RecurrencePlan] = []
    for name in candidates(chain.length):
        got = _fit_policy(chain, budget, name, working, run_cost)
        if got is not None:
            found.append(got)
    if run_cost > 0 and not any(rp.plan.policy == "chen" for rp in found):
        shorter = _fit_chen_segments(chain, budget, working)
        if shorter is not None:
            found.append(shorter)
    return min(found, key=lambda rp: _key(rp, run_cost)) if found else None


def _infeasible(chain: Chain, budget: int, policy: str, working: Working, run_cost: float,
                owner: str, context: str) -> InfeasibleBudgetError:
    least = minimum_budget(chain, policy, working)
    where = f" for {context}" if context else f" for seq_len={chain.length}"
    others = [p for p in ("store_all", "chen", "hsm", "msm", "ism")
              if p != policy and _fit_policy(chain, budget, p, working, run_cost) is not None]
    hint = ""
    if policy != "auto" and others:
        hint = f", or use policy='auto' ({', '.join(others)} fit this budget)"
    return InfeasibleBudgetError(
        f"{owner}: memory_budget={format_size(budget)} is below the minimum "
        f"{format_size(least)} that policy {policy!r} needs{where} (state "
        f"{format_size(chain.state_size)}, internal {format_size(chain.internal_size)} per "
        f"step); raise the budget to at least {format_size(least)}{hint} or shorten the "
        "sequence",
        minimum=least,
    )


def _warn_if_auto_is_far_better(policy: str, budget: int, got: RecurrencePlan,
                                auto: RecurrencePlan, owner: str, context: str) -> None:
    if 2 * auto.forward_steps < got.forward_steps:
        warnings.warn(
            f"{owner}: policy={policy!r} fits memory_budget={format_size(budget)} for "
            f"{context} only with {got.forward_steps:,} forward steps; policy='auto' would "
            f"run {auto.forward_steps:,} ({auto.plan.policy}). The named policy runs as asked",
            UserWarning,
            stacklevel=4,  # the module call that asked for the plan
        )
