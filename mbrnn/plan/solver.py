"""Optimal schedules for back-propagation through time under a memory budget.

After Gruslys, Munos, Danihelka, Lanctot and Graves, "Memory-Efficient Backpropagation
Through Time" (NeurIPS 2016), and Griewank and Walther, "Algorithm 799: Revolve" (ACM
TOMS 2000).

With integer sizes ``s`` (hidden state), ``a`` (internal state) and budget ``m``, the
fewest forward steps ``C(t, m)`` for ``t`` steps are::

    C(0, m) = 0                                            (m >= s)
    C(t, m) = min( t + C(t-1, m),                          run to t, back-propagate t
                   y + C(t-y, m-s) + C(y, m),   1<=y<t     keep h[y]          (HSM)
                   y + C(t-y, m-a) + C(y-1, m), 1<=y<t     keep step y inside (ISM) )

The first line is the minimal-memory plan: unrolled it is ``t(t+1)/2``, the
"recompute everything" cost, allowed for any ``m >= s``. HSM moves need ``m - s >= s``,
ISM moves ``m - a >= s``. ``"hsm"`` uses the closed form of Griewank and Walther,
``C(t, c) = t + r*t - binom(c+r, r-1)`` for ``c = floor(m/s)`` slots and the smallest
``r`` with ``binom(c+r, r) >= t``, with an O(1) optimal split (no table). ``"ism"`` and
``"msm"`` solve the table exactly, vectorised over the budget axis; for sequences longer
than ``EXACT_LIMIT`` they use a hierarchical plan (``NOTE [ Hierarchical plans ]`` in
:mod:`mbrnn.plan.hierarchy`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Final, Literal

import numpy as np

from ..errors import InfeasibleBudgetError
from .baselines import chen_cost, chen_ops, recompute_all_ops, store_all_ops
from .chain import Chain
from .hierarchy import plan_levels
from .ops import Backward, Forward, ForwardKeep, FreeHidden, KeepHidden, Op, OpSequence, Plan

__all__ = [
    "EXACT_LIMIT",
    "POLICIES",
    "hsm_cost",
    "hsm_split",
    "solve",
]

POLICIES: Final = ("store_all", "recompute_all", "chen", "hsm", "ism", "msm", "auto")
Policy = Literal["store_all", "recompute_all", "chen", "hsm", "ism", "msm", "auto"]

#: Longest sequence the exact ISM/MSM table is built for by default.
EXACT_LIMIT: Final = 1024
#: Largest exact table (cells) a hierarchical plan builds for its pieces.
_LEAF_CELLS: Final = 6_000_000

_INF: Final = 1 << 29  # fits int32 even when two are added
_INF64: Final = 1 << 61


def _inf_of(C: np.ndarray) -> int:
    return _INF64 if C.dtype == np.int64 else _INF
_CHUNK: Final = 32

# A decision for subproblem (t, m): ("work", 0, m) | ("hsm", y, m_right) | ("ism", y, m_right)
Decision = tuple[str, int, int]
Decide = Callable[[int, int], Decision]


# ---------------------------------------------------------------------------------------
# HSM: Griewank and Walther's closed form
# ---------------------------------------------------------------------------------------


def _beta(c: int, r: int) -> int:
    """binom(c + r, c): steps that c slots cover with at most r repetitions."""
    return math.comb(c + r, c) if r >= 0 else 0


def _reps(t: int, c: int) -> int:
    """Smallest r with binom(c + r, r) >= t (c >= 1)."""
    if t <= 1:
        return 0
    if c == 1:
        return t - 1
    if c >= t - 1:
        return 1
    r, beta = 1, c + 1
    while beta < t:
        r += 1
        beta = beta * (c + r) // r
    return r


def hsm_cost(t: int, c: int) -> int:
    """Fewest forward steps for ``t`` steps with ``c >= 1`` hidden-state slots.

    ``t + numforw(t, c)`` with ``numforw(l, c) = r*l - binom(c+r, r-1)``.
    """
    if t <= 0:
        return 0
    r = _reps(t, c)
    return t + r * t - (math.comb(c + r, r - 1) if r >= 1 else 0)


def hsm_split(t: int, c: int) -> int:
    """An optimal first checkpoint position for ``t >= 2`` steps and ``c >= 2`` slots.

    The cost of keeping ``h[y]`` is convex in ``y`` with slope
    ``1 + r(y+1, c) - r(t-y, c-1)``; ``y = max(beta(c, r-2), t - beta(c-1, r))`` with
    ``r = r(t, c)`` is where it turns non-negative (Pascal's rule
    ``beta(c, r) = beta(c, r-1) + beta(c-1, r)`` makes the range non-empty).
    """
    r = _reps(t, c)
    y = max(_beta(c, r - 2), t - _beta(c - 1, r))
    return min(max(y, 1), t - 1)


def _hsm_decide(t: int, c: int) -> Decision:
    if t == 1 or c == 1:
        return ("work", 0, c)
    return ("hsm", hsm_split(t, c), c - 1)


# ---------------------------------------------------------------------------------------
# ISM / MSM: the exact table
# ---------------------------------------------------------------------------------------


class _TableCache:
    """The last few tables. ``C[t, m]`` does not depend on how far a table reaches, so a
    table for ``(T, M)`` answers every smaller request with a view: planning at several
    budgets (the runtime lowers the budget to fit what the planner does not model)
    builds the table once."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.tables: list[tuple[tuple[int, int, bool, bool], np.ndarray]] = []
        self.deciders: dict[int, tuple[np.ndarray, Decide]] = {}  # id(table) -> decide

    def __call__(self, T: int, M: int, s: int, a: int, hsm: bool, ism: bool) -> np.ndarray:
        key = (s, a, hsm, ism)
        for i, (k, C) in enumerate(self.tables):
            if k == key and C.shape[0] > T and C.shape[1] > M:
                self.tables.append(self.tables.pop(i))  # most recently used last
                return C[: T + 1, : M + 1]
        C = _build_table(T, M, s, a, hsm, ism)
        self.tables = [(k, D) for k, D in self.tables  # drop the tables this one covers
                       if not (k == key and D.shape[0] <= C.shape[0] and D.shape[1] <= C.shape[1])]
        self.tables = [*self.tables[-(self.size - 1):], (key, C)]
        live = {id(D) for _, D in self.tables}
        self.deciders = {i: d for i, d in self.deciders.items() if i in live}
        return C

    def decider(self, C: np.ndarray, s: int, a: int, hsm: bool, ism: bool) -> Decide:
        """:func:`_table_decide` for ``C`` or a view of a cached table, shared by every
        view of that table (its decisions do not depend on the view)."""
        base = C if C.base is None else C.base
        hit = self.deciders.get(id(base))
        if hit is not None and hit[0] is base:
            return hit[1]
        decide = _table_decide(base if isinstance(base, np.ndarray) else C, s, a, hsm, ism)
        if any(D is base for _, D in self.tables):
            self.deciders[id(base)] = (base, decide)
        return decide

    def cache_clear(self) -> None:
        self.tables = []
        self.deciders = {}


def _build_table(T: int, M: int, s: int, a: int, hsm: bool, ism: bool) -> np.ndarray:
    """``C[t, m]`` for ``t <= T``, ``m <= M`` (integer units); ``_INF`` where infeasible.

    Vectorised over ``m``. Rows below ``s + (t-1)*a`` are computed; from there on the
    store-everything cost ``t`` is optimal. A move whose first split is ``y`` costs at
    least ``t + y - 1``, so once ``y`` exceeds the best cost found so far minus ``t``
    the remaining splits are skipped; the best cost is non-increasing in ``m``, so the
    columns still worth visiting are a prefix (found by binary search).
    """
    # int32 while every cost fits (recompute-all, T(T+1)/2, is the largest); else int64
    wide = T * (T + 1) // 2 >= _INF
    dt = np.int64 if wide else np.int32
    C = np.full((T + 1, M + 1), _INF64 if wide else _INF, dtype=dt)
    C[0, s:] = 0
    for t in range(1, T + 1):
        # keeping every internal state needs ISM moves; HSM alone never reaches cost t
        full = s + (t - 1) * a if (ism or t == 1) else M + 1
        row = C[t]
        lo, hi = s, min(M, full - 1) + 1
        if full <= M:
            row[full:] = t
        if hi <= lo:
            continue
        best = C[t - 1, lo:hi] + dt(t)  # run to t, back-propagate it
        moves: list[tuple[int, int, int]] = []
        if hsm and t >= 2 and max(lo, 2 * s) < hi:
            moves.append((max(lo, 2 * s), s, 0))
        if ism and t >= 2 and max(lo, s + a) < hi:
            moves.append((max(lo, s + a), a, 1))
        for mlo, d, k in moves:  # y = 1 first: tightens the bound cheaply
            cand = C[1 - k, mlo:hi] + C[t - 1, mlo - d : hi - d] + dt(1)
            np.minimum(best[mlo - lo :], cand, out=best[mlo - lo :])
        for y0 in range(2, t, _CHUNK):
            y1 = min(t, y0 + _CHUNK)
            cut = lo + int(np.searchsorted(t + y0 - 1 - best, 1))
            if cut <= lo:
                break
            ys = np.arange(y0, y1, dtype=dt)[:, None]
            for mlo, d, k in moves:
                if mlo >= cut:
                    continue
                cand = C[y0 - k : y1 - k, mlo:cut] + C[t - y0 : t - y1 : -1, mlo - d : cut - d]
                cand += ys
                np.minimum(best[mlo - lo : cut - lo], cand.min(0), out=best[mlo - lo : cut - lo])
        row[lo:hi] = best
    C.setflags(write=False)
    return C


_table = _TableCache()


def _table_decide(C: np.ndarray, s: int, a: int, hsm: bool, ism: bool) -> Decide:
    """Reconstruct an optimal move from the table.

    Ties prefer keeping internal states at the smallest ``y`` (long contiguous runs that
    execute as one fused call), then running to the end, then the largest hidden split.
    """

    @cache  # segments of a hierarchical plan repeat the same subproblems
    def decide(t: int, m: int) -> Decision:
        target = int(C[t, m])
        if ism and t >= 2 and m - a >= s:
            ys = np.arange(1, t)
            cost = ys + C[ys - 1, m] + C[t - ys, m - a]
            hit = np.flatnonzero(cost == target)
            if hit.size:
                return ("ism", int(ys[hit[0]]), m - a)
        if t + int(C[t - 1, m]) == target:
            return ("work", 0, m)
        if hsm and t >= 2 and m - s >= s:
            ys = np.arange(1, t)
            cost = ys + C[ys, m] + C[t - ys, m - s]
            hit = np.flatnonzero(cost == target)
            if hit.size:
                return ("hsm", int(ys[hit[-1]]), m - s)
        raise AssertionError(f"no move reaches C[{t}, {m}] = {target}")  # pragma: no cover

    return decide


# ---------------------------------------------------------------------------------------
# Emission: decisions -> ops
# ---------------------------------------------------------------------------------------


def _emit(T: int, m: int, decide: Decide, offset: int = 0) -> Iterator[Op]:
    """Unfold decisions into raw ops, depth first, with an explicit stack."""
    stack: list[tuple[int, int, int] | Op] = [(offset, T, m)]
    while stack:
        task = stack.pop()
        if not isinstance(task, tuple):
            yield task
            continue
        p, t, mm = task
        if t == 0:
            continue
        kind, y, mr = decide(t, mm)
        if kind == "work":
            if t > 1:
                yield Forward(p, p + t - 1)
            yield ForwardKeep(p + t - 1, p + t)
            yield Backward(p + t - 1, p + t)
            stack.append((p, t - 1, mm))
        elif kind == "hsm":
            yield Forward(p, p + y)
            yield KeepHidden(p + y)
            stack.append((p, y, mm))
            stack.append(FreeHidden(p + y))
            stack.append((p + y, t - y, mr))
        else:  # ism
            if y > 1:
                yield Forward(p, p + y - 1)
            yield ForwardKeep(p + y - 1, p + y)
            stack.append((p, y - 1, mm))
            stack.append(Backward(p + y - 1, p + y))
            stack.append((p + y, t - y, mr))


def _merge(ops: Iterable[Op]) -> Iterator[Op]:
    """Fuse adjacent contiguous runs of the same kind into one op."""
    pending: Op | None = None
    for op in ops:
        if pending is not None:
            if type(op) is type(pending) and isinstance(op, (Forward, ForwardKeep)):
                assert isinstance(pending, (Forward, ForwardKeep))
                if pending.stop == op.start:
                    pending = type(op)(pending.start, op.stop)
                    continue
            elif (
                isinstance(op, Backward)
                and isinstance(pending, Backward)
                and op.stop == pending.start
            ):
                pending = Backward(op.start, pending.stop)
                continue
            yield pending
        pending = op
    if pending is not None:
        yield pending


# ---------------------------------------------------------------------------------------
# Hierarchical plans for long sequences
# ---------------------------------------------------------------------------------------


def _hsm_costs(n: int, cs: np.ndarray) -> np.ndarray:
    """Vectorised :func:`hsm_cost` of ``n`` steps for every slot count in ``cs`` (>= 1)."""
    cs = cs.astype(np.int64)
    out = np.empty(cs.shape, dtype=np.int64)
    tri = cs == 1
    out[tri] = n * (n + 1) // 2
    c = cs[~tri]
    if c.size:
        r = np.zeros_like(c)
        beta = np.ones_like(c)  # binom(c + r, r)
        if n > 1:
            active = beta < n
            while active.any():
                r[active] += 1
                beta[active] = beta[active] * (c[active] + r[active]) // r[active]
                active = beta < n
        below = beta * r // (c + 1)  # binom(c + r, r - 1)
        out[~tri] = n + r * n - below
    return out


def _segments(
    T: int, m: int, s: int, a: int, hsm: bool, C: np.ndarray, Min: int
) -> tuple[int, Callable[[], Iterator[Op]]] | None:
    """Equal segments of ``L`` steps, HSM's closed form across them with ``c`` slots, and
    the exact plan inside each with ``m - c*s``. Cost, exactly::

        L * (C_hsm(n, c) - n) + (n-1) * C(L, m - c*s) + C(L_last, m - c*s)

    ``L`` is searched over a geometric grid up to the table's length and ``c`` over every
    value, vectorised. A fallback beside :func:`plan_levels`, cheaper when the budget is
    a handful of hidden states.
    """
    Lmax = C.shape[0] - 1
    best: tuple[int, int, int] | None = None  # (cost, L, c)
    Ls = sorted({max(1, round(Lmax / 1.25**k)) for k in range(40)} | {Lmax})
    for L in Ls:
        n = -(-T // L)
        last = T - (n - 1) * L
        cmax = min(n, (m - s) // s)
        if cmax < 1:
            continue
        cs = np.arange(1, cmax + 1)
        m_in = np.minimum(m - cs * s, Min)
        inner = (n - 1) * C[L, m_in].astype(np.int64) + C[last, m_in].astype(np.int64)
        total = L * (_hsm_costs(n, cs) - n) + inner
        total[inner >= _inf_of(C)] = np.iinfo(np.int64).max
        i = int(np.argmin(total))
        cost = int(total[i])
        if cost < np.iinfo(np.int64).max and (best is None or cost < best[0]):
            best = (cost, L, int(cs[i]))
    if best is None:
        return None
    cost, L, c = best
    n = -(-T // L)
    m_in = min(m - c * s, Min)
    decide = _table.decider(C, s, a, hsm, True)

    def seg_pos(P: int) -> int:
        return min(P * L, T)

    def factory() -> Iterator[Op]:
        def raw() -> Iterator[Op]:
            kept = {0}
            for op in _emit(n, c, _hsm_decide):
                if isinstance(op, Forward):
                    yield Forward(seg_pos(op.start), seg_pos(op.stop))
                elif isinstance(op, KeepHidden):
                    kept.add(op.index)
                    yield KeepHidden(seg_pos(op.index))
                elif isinstance(op, FreeHidden):
                    kept.discard(op.index)
                    yield FreeHidden(seg_pos(op.index))
                elif isinstance(op, ForwardKeep):  # the macro step being back-propagated
                    p = seg_pos(op.start)
                    # its plan re-runs from its start: keep it if the macro plan did not
                    # (that is the extra slot m_in = m - c*s leaves for it)
                    own = op.start not in kept
                    if own:
                        yield KeepHidden(p)
                    yield from _emit(seg_pos(op.stop) - p, m_in, decide, offset=p)
                    if own:
                        yield FreeHidden(p)
                # the macro Backward is inside the segment's own plan

        return _merge(raw())

    return cost, factory


def _hierarchical(
    T: int, m: int, s: int, a: int, hsm: bool, leaf: int = EXACT_LIMIT, nmax: int | None = None
) -> tuple[int, Callable[[], Iterator[Op]]]:
    """The better of the level ladder (``NOTE [ Hierarchical plans ]`` in
    :mod:`mbrnn.plan.hierarchy`) and equal segments (:func:`_segments`), both over the
    exact table for up to ``leaf`` steps. Where that table would exceed ``_LEAF_CELLS``
    (budgets of thousands of units, from a fine discretisation), the pieces are made
    shorter instead, down to 128 steps: a coarser plan (see ``tests/test_hierarchy.py``
    for the gap with 128-step pieces), planned in a fraction of the time."""
    Lmax = min(T, leaf)
    wide = 1 << (m - 1).bit_length()  # the same pieces for budgets within a factor of 2,
    while Lmax > 128 and Lmax * min(wide, s + (Lmax - 1) * a) > _LEAF_CELLS:  # one table
        Lmax = max(128, Lmax * 3 // 4)
    Min = min(m, s + (Lmax - 1) * a)
    C = _table(Lmax, Min, s, a, hsm, True)
    inf = _inf_of(C)
    decide = _table.decider(C, s, a, hsm, True)

    def exact_costs(lengths: np.ndarray, mems: np.ndarray) -> np.ndarray:
        c = C[lengths, np.minimum(mems, Min)].astype(np.int64)
        return np.where(c >= inf, np.iinfo(np.int64).max // 4, c)

    def exact_emit(t: int, mm: int, p: int) -> Iterator[Op]:
        return _emit(t, min(mm, Min), decide, offset=p)

    cands: list[tuple[int, Callable[[], Iterator[Op]]]] = []
    ladder = plan_levels(T, m, s, a, exact_costs, exact_emit, Lmax, nmax)
    if ladder is not None:
        f = ladder.factory
        cands.append((ladder.cost, lambda: _merge(f())))
    seg = _segments(T, m, s, a, hsm, C, Min)
    if seg is not None:
        cands.append(seg)
    if not cands:
        raise AssertionError("no hierarchical plan")  # pragma: no cover; m >= 2s checked
    return min(cands, key=lambda c: c[0])


# ---------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------


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
                     lambda: _merge(_emit(T, c, _hsm_decide)))
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
        C = _table(T, m, u.s, u.a, hsm, True)
        decide = _table.decider(C, u.s, u.a, hsm, True)
        return _plan(policy, chain, budget, int(C[T, m]),
                     lambda: _merge(_emit(T, m, decide)))
    cost, factory = _hierarchical(T, m, u.s, u.a, hsm, leaf)
    if hsm:  # msm includes hsm's moves: never do worse than its closed form
        c = math.floor(budget / s + 1e-9)
        if hsm_cost(T, c) < cost:
            return _plan(policy, chain, budget, hsm_cost(T, c),
                         lambda: _merge(_emit(T, c, _hsm_decide)), exact=False)
    return _plan(policy, chain, budget, cost, factory, exact=False)


def solve(
    chain: Chain,
    budget: float,
    policy: Policy | str = "auto",
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

        >>> from mbrnn.plan import Chain, solve
        >>> plan = solve(Chain(1000, 1.0, 4.0), budget=50.0, policy="msm")
        >>> plan.forward_steps, plan.peak <= 50.0
        (2660, True)
    """
    if not isinstance(chain, Chain):
        raise TypeError(f"solve: chain must be a Chain, got {type(chain).__name__}")
    b = _check_budget(budget)
    if not isinstance(policy, str):
        raise TypeError(f"solve: policy must be a str, got {type(policy).__name__}")
    if policy not in POLICIES:
        raise ValueError(f"solve: unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
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
        tied.sort(key=lambda p: p.runs)
    return tied[0]
