"""Near-optimal ISM/MSM plans for sequences beyond the exact table's reach.

NOTE [ Hierarchical plans ]
The exact table ``C[t, m]`` is quadratic in ``T`` and linear in the budget, so past
``EXACT_LIMIT`` steps it is out of reach. We keep the same recurrence but restrict
where its moves may fall, on a ladder of *levels*:

- **Level 0** is the exact table for every length up to ``leaf`` (``EXACT_LIMIT``)
  steps: any ISM/MSM plan of a short subsequence.
- **Level i >= 1** cuts its span into units of ``g_i`` steps (``g_i`` a multiple of
  ``g_{i-1}``). A subsequence of ``j`` units is solved by, whichever is cheapest:
  a *leaf* (the level below solves it whole, if it is short enough), *storing it all*
  (if ``s + (len - 1) * a`` fits), or an *HSM move at a unit boundary*, exactly as in
  the exact recurrence: ``y + C(t - y, m - s) + C(y, m)`` with ``y`` a multiple of
  ``g_i``.

Memory is indexed by depth: a subproblem at depth ``k`` has ``m - k*s`` left, since each
enclosing HSM move holds one hidden state while its right part runs. So every
subsequence gets the memory actually left where it runs, short ones near the end of
the sequence get much of the budget, and long stretches can be stored whole when the
budget allows it. Each level's table is ``n x K`` (units by depths) with ``n <= nmax``
units, filled in ``O(n^2 K)`` vectorised operations.

A sequence whose length is not a multiple of ``g_i`` has a remainder ``r_i = T mod g_i``;
it is placed at the start. Subproblems that start at 0 (the left parts) are "prefix"
problems of ``r_i + j*g_i`` steps (table ``E``), the rest are whole units (table ``D``).
Because ``g_{i-1}`` divides ``g_i``, ``r_{i-1} = r_i mod g_{i-1}`` and the level below
can solve either kind as a leaf.

The plan is exact for the restricted moves: its cost is what the ops replay to, and its
peak stays within the budget (``simulate`` checks both in the tests). The gap to the
exact optimum is measured by ``scripts/bench_planner.py`` wherever the exact table runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np

from .emit import emit, merge
from .hsm import hsm_costs, hsm_decide
from .ops import Backward, Forward, ForwardKeep, FreeHidden, KeepHidden, Op
from .table import inf_of, tables

__all__ = ["EXACT_LIMIT", "NMIN", "WORK", "HierarchicalPlan", "hierarchical", "plan_levels",
           "units_per_level"]

#: Longest sequence the exact ISM/MSM table is built for by default.
EXACT_LIMIT: Final = 1024
#: Largest exact table (cells) a hierarchical plan builds for its pieces.
_LEAF_CELLS: Final = 6_000_000

#: Element operations one level's table may take, ``n^2 * K / 2`` for ``n`` units and
#: ``K`` depths: about half a second. It sets how fine the units are.
WORK: Final = 50_000_000
#: Fewest units per level (unless the sequence is shorter).
NMIN: Final = 256

_BIG: Final = np.iinfo(np.int64).max // 4  # infeasible; two of them still add safely

# how a subproblem is solved, besides an HSM move
_LEAF: Final = 0  # the level below solves it
_STORE: Final = -1  # store every internal state


@dataclass(frozen=True)
class _Level:
    g: int  # steps per unit
    r: int  # remainder: prefix problems are r + j*g steps
    D: np.ndarray  # D[j, k]: j units (j >= 1) at depth k; row 0 unused; column K+1 infeasible
    DL: np.ndarray  # the best leaf or store-all part of D (the rest are splits)
    Dc: np.ndarray  # which of the two DL is: _LEAF or _STORE
    E: np.ndarray  # E[j, k]: r + j*g steps from position 0 (r > 0 only)
    EL: np.ndarray
    Ec: np.ndarray

    def decide(self, prefix: bool, j: int, k: int) -> tuple[int, int]:
        """``(kind, y)`` for a subproblem: ``(_LEAF | _STORE, 0)``, or ``(1, y)`` for an
        HSM move at ``y`` steps. The table keeps costs only; the move is found again by
        matching its cost, for the few subproblems a plan visits."""
        g, r = self.g, self.r
        if prefix:
            target, leaf, kind = self.E[j, k], self.EL[j, k], self.Ec[j, k]
        else:
            target, leaf, kind = self.D[j, k], self.DL[j, k], self.Dc[j, k]
        if leaf == target:
            return int(kind), 0
        if prefix:
            u = np.arange(0, j)
            cost = (r + u * g) + self.D[j - u, k + 1] + self.E[u, k]
            return 1, r + int(u[np.flatnonzero(cost == target)[0]]) * g
        u = np.arange(1, j)
        cost = u * g + self.D[j - u, k + 1] + self.D[u, k]
        return 1, int(u[np.flatnonzero(cost == target)[0]]) * g


ExactEmit = Callable[[int, int, int], Iterator[Op]]  # (length, memory, offset) -> ops


@dataclass(frozen=True)
class HierarchicalPlan:
    cost: int
    factory: Callable[[], Iterator[Op]]


def units_per_level(T: int, depth_room: int, work: int = WORK) -> int:
    """Units per level: the most ``n`` with ``n^2 * min(n, depth_room) / 2 <= work``, at
    least ``NMIN``; ``depth_room = (m - s) // s`` bounds the depth a plan can reach."""
    cube = (2 * work) ** (1 / 3)  # when the depth can reach n
    n = cube if depth_room >= cube else math.sqrt(2 * work / max(1, depth_room))
    return min(T, max(NMIN, int(n)))


def _granularities(T: int, leaf: int, nmax: int) -> list[int]:
    """Unit sizes, finest first: the top level has at most ``nmax`` units, each level's
    unit is a multiple of the one below, and the finest unit is at most ``leaf``."""
    wanted = [-(-T // nmax)]  # top down: each finer level covers two units above it
    while wanted[-1] > leaf:
        wanted.append(-(-2 * wanted[-1] // nmax))
    gs = [wanted[-1]]
    for w in reversed(wanted[:-1]):  # bottom up: round up to whole units of the level below
        gs.append(-(-w // gs[-1]) * gs[-1])
    return gs


def plan_levels(
    T: int,
    m: int,
    s: int,
    a: int,
    exact_costs: Callable[[np.ndarray, np.ndarray], np.ndarray],
    exact_emit: ExactEmit,
    leaf: int,
    nmax: int | None = None,
) -> HierarchicalPlan | None:
    """The cheapest plan of the restricted recurrence (see the NOTE), or ``None``.

    Args:
        T, m, s, a: length, budget, hidden and internal sizes in integer units.
        exact_costs: ``(lengths, memories) -> C`` from the exact table, for lengths up to
            ``leaf`` (broadcasting), ``>= _BIG`` where infeasible.
        exact_emit: the exact plan's ops for ``(length, memory, offset)``.
        leaf: the longest subsequence the exact table solves.
        nmax: units per level (default: :func:`units_per_level`).
    """
    if m < 2 * s:
        return None
    if nmax is None:
        nmax = units_per_level(T, (m - s) // s)
    if nmax < 4:  # a finer level must cover two units above it in fewer units
        raise ValueError(f"plan_levels: nmax must be >= 4, got {nmax}")
    gs = _granularities(T, leaf, nmax)
    # deepest nesting: one hidden state per enclosing HSM move, at most one per unit
    spans = [min(T, 2 * gs[i + 1]) if i + 1 < len(gs) else T for i in range(len(gs))]
    depth = sum(-(-spans[i] // gs[i]) for i in range(len(gs))) + 1
    K = min(depth, (m - s) // s)  # depths 0..K have m - k*s >= s
    mem = m - s * np.arange(K + 1, dtype=np.int64)
    levels: list[_Level] = []

    def below_costs(i: int, length: int) -> np.ndarray | None:
        """Cost over depths of ``length`` steps solved by level ``i - 1`` (``None``: too
        long for it). Prefix problems (start 0) and unit problems differ above level 0."""
        if i == 0:
            if length > leaf:
                return None
            return exact_costs(np.full(K + 1, length), mem)
        lv = levels[i - 1]
        return None if length > spans[i - 1] else _lookup(lv, length)

    def store(length: int) -> np.ndarray:
        return np.where(mem >= s + (length - 1) * a, length, _BIG)

    for i, g in enumerate(gs):
        span = spans[i]
        r = T % g
        n = span // g
        ys = (np.arange(n + 1, dtype=np.int64) * g)[:, None]  # split positions, in steps
        D = np.full((n + 1, K + 2), _BIG, dtype=np.int64)  # column K + 1: too deep
        DL = np.full((n + 1, K + 1), _BIG, dtype=np.int64)  # the leaf-or-store part of D
        Dc = np.zeros((n + 1, K + 1), dtype=np.int8)
        for j in range(1, n + 1):
            best, Dc[j] = _leaf_or_store(below_costs(i, j * g), store(j * g), K)
            DL[j] = best
            if j >= 2:  # HSM move at unit boundary y = u*g, u = 1..j-1 (views, no copies)
                cand = ys[1:j] + D[j - 1 : 0 : -1, 1 : K + 2]
                cand += D[1:j, : K + 1]
                best = np.minimum(best, cand.min(0))
            D[j, : K + 1] = np.minimum(best, _BIG)
        nE = (span - r) // g if r else 0
        E = np.full((nE + 1, K + 1), _BIG, dtype=np.int64)
        EL = np.full((nE + 1, K + 1), _BIG, dtype=np.int64)
        Ec = np.zeros((nE + 1, K + 1), dtype=np.int8)
        if r:
            for j in range(nE + 1):
                length = r + j * g
                best, Ec[j] = _leaf_or_store(below_costs(i, length), store(length), K)
                EL[j] = best
                if j >= 1:  # HSM move at y = r + u*g, u = 0..j-1
                    cand = (r + ys[:j]) + D[j : 0 : -1, 1 : K + 2]
                    cand += E[:j]
                    best = np.minimum(best, cand.min(0))
                E[j] = np.minimum(best, _BIG)
        levels.append(_Level(g, r, D, DL, Dc, E, EL, Ec))

    top = levels[-1]
    cost = int(_lookup(top, T)[0])
    if cost >= _BIG:
        return None

    def factory() -> Iterator[Op]:
        yield from _emit_levels(levels, T, m, s, exact_emit)

    return HierarchicalPlan(cost, factory)


def _lookup(lv: _Level, length: int) -> np.ndarray:
    """Costs over depths of ``length`` steps at level ``lv``: a prefix problem (starting
    at 0) when it has the level's remainder, else whole units."""
    if lv.r and length % lv.g == lv.r:
        j = (length - lv.r) // lv.g
        return lv.E[j] if j < len(lv.E) else np.full(lv.E.shape[1], _BIG)
    if length % lv.g:
        raise AssertionError(f"length {length} is not whole units of {lv.g}")  # pragma: no cover
    j = length // lv.g
    return lv.D[j, :-1] if j < len(lv.D) else np.full(lv.D.shape[1] - 1, _BIG)


def _leaf_or_store(
    leaf: np.ndarray | None, stored: np.ndarray, K: int
) -> tuple[np.ndarray, np.ndarray]:
    if leaf is None:
        return stored.astype(np.int64), np.full(K + 1, _STORE, dtype=np.int8)
    take_store = stored < leaf
    return np.where(take_store, stored, leaf), np.where(take_store, _STORE, _LEAF).astype(np.int8)


def _emit_levels(
    levels: list[_Level], T: int, m: int, s: int, exact_emit: ExactEmit
) -> Iterator[Op]:
    """Unfold the levels' choices into ops, depth first, with an explicit stack.

    A task ``(i, start, length, k)`` is ``length`` steps from ``h[start]`` solved at
    level ``i`` and depth ``k``; its start state is available (kept or the cursor).
    """
    stack: list[tuple[int, int, int, int] | Op] = [(len(levels) - 1, 0, T, 0)]
    while stack:
        task = stack.pop()
        if not isinstance(task, tuple):
            yield task
            continue
        i, p, t, k = task
        if i < 0:
            yield from exact_emit(t, m - k * s, p)
            continue
        lv = levels[i]
        prefix = bool(lv.r) and p == 0 and t % lv.g == lv.r
        choice, y = lv.decide(prefix, (t - lv.r) // lv.g if prefix else t // lv.g, k)
        if choice == _LEAF:
            stack.append((i - 1, p, t, k))
        elif choice == _STORE:
            yield ForwardKeep(p, p + t)
            yield Backward(p, p + t)
        else:  # keep h[p + y], solve the right part one level deeper, then the left part
            yield Forward(p, p + y)
            yield KeepHidden(p + y)
            stack.append((i, p, y, k))
            stack.append(FreeHidden(p + y))
            stack.append((i, p + y, t - y, k + 1))


# Equal segments, and the better of the two


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
        total = L * (hsm_costs(n, cs) - n) + inner
        total[inner >= inf_of(C)] = np.iinfo(np.int64).max
        i = int(np.argmin(total))
        cost = int(total[i])
        if cost < np.iinfo(np.int64).max and (best is None or cost < best[0]):
            best = (cost, L, int(cs[i]))
    if best is None:
        return None
    cost, L, c = best
    n = -(-T // L)
    m_in = min(m - c * s, Min)
    decide = tables.decider(C, s, a, hsm, True)

    def seg_pos(P: int) -> int:
        return min(P * L, T)

    def factory() -> Iterator[Op]:
        def raw() -> Iterator[Op]:
            kept = {0}
            for op in emit(n, c, hsm_decide):
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
                    yield from emit(seg_pos(op.stop) - p, m_in, decide, offset=p)
                    if own:
                        yield FreeHidden(p)
                # the macro Backward is inside the segment's own plan

        return merge(raw())

    return cost, factory


def hierarchical(
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
    C = tables(Lmax, Min, s, a, hsm, True)
    inf = inf_of(C)
    decide = tables.decider(C, s, a, hsm, True)

    def exact_costs(lengths: np.ndarray, mems: np.ndarray) -> np.ndarray:
        c = C[lengths, np.minimum(mems, Min)].astype(np.int64)
        return np.where(c >= inf, np.iinfo(np.int64).max // 4, c)

    def exact_emit(t: int, mm: int, p: int) -> Iterator[Op]:
        return emit(t, min(mm, Min), decide, offset=p)

    cands: list[tuple[int, Callable[[], Iterator[Op]]]] = []
    ladder = plan_levels(T, m, s, a, exact_costs, exact_emit, Lmax, nmax)
    if ladder is not None:
        f = ladder.factory
        cands.append((ladder.cost, lambda: merge(f())))
    seg = _segments(T, m, s, a, hsm, C, Min)
    if seg is not None:
        cands.append(seg)
    if not cands:
        raise AssertionError("no hierarchical plan")  # pragma: no cover; m >= 2s checked
    return min(cands, key=lambda c: c[0])
