"""ISM and MSM: the exact table of Gruslys et al. (2016), vectorised over the budget.

With integer sizes ``s`` (hidden state), ``a`` (internal state) and budget ``m``, the
fewest forward steps ``C(t, m)`` for ``t`` steps are::

    C(0, m) = 0                                              (m >= s)
    C(t, m) = min( t + C(t-1, m),                            run to t, back-propagate t
                   y + C(t-y, m-s) + C(y, m),     1<=y<t     keep h[y]          (HSM)
                   1 + C(t-1, m-a),                          keep step 1 inside (ISM)
                   y + C(t-y, m-a-s) + C(y-1, m), 2<=y<t     keep step y inside (ISM) )

The first line is the minimal-memory plan: unrolled it is ``t(t+1)/2``, the
"recompute everything" cost. Memory counts what autograd really holds (see
:mod:`mbrnn.plan.simulate`), *run inputs* included: a kept run that starts at the
running state of a sweep holds that state until it is back-propagated. So running to
``t > 1`` needs ``m >= 2s`` (``h[0]`` and the last step's input), and an ISM move at
``y >= 2`` leaves ``m - a - s`` to its right part; at ``y = 1`` the run starts at the
subproblem's own (kept) start, and the right part gets ``m - a``. HSM moves need
``m - s >= s``, ISM moves ``m - a >= s`` (``m - a - s >= s`` for ``y >= 2``). :class:`TableCache` keeps the last few tables: a table for
``(T, M)`` answers every smaller request with a view.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import numpy as np

from .emit import Decide, Decision

__all__ = ["INF", "INF64", "TableCache", "build_table", "inf_of", "table_decide", "tables"]

INF: Final = 1 << 29  # fits int32 even when two are added
INF64: Final = 1 << 61
_CHUNK: Final = 32


def inf_of(C: np.ndarray) -> int:
    """The infeasible marker of table ``C`` (int32 or int64)."""
    return INF64 if C.dtype == np.int64 else INF


class TableCache:
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
        C = build_table(T, M, s, a, hsm, ism)
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
        decide = table_decide(base if isinstance(base, np.ndarray) else C, s, a, hsm, ism)
        if any(D is base for _, D in self.tables):
            self.deciders[id(base)] = (base, decide)
        return decide

    def clear(self) -> None:
        """Drop every table (and its decisions)."""
        self.tables = []
        self.deciders = {}


def build_table(T: int, M: int, s: int, a: int, hsm: bool, ism: bool) -> np.ndarray:
    """``C[t, m]`` for ``t <= T``, ``m <= M`` (integer units); ``INF`` where infeasible.

    Vectorised over ``m``. Rows below ``s + (t-1)*a`` are computed; from there on the
    store-everything cost ``t`` is optimal. A move whose first split is ``y`` costs at
    least ``t + y - 1``, so once ``y`` exceeds the best cost found so far minus ``t``
    the remaining splits are skipped; the best cost is non-increasing in ``m``, so the
    columns still worth visiting are a prefix (found by binary search).
    """
    # int32 while every cost fits (recompute-all, T(T+1)/2, is the largest); else int64
    wide = T * (T + 1) // 2 >= INF
    dt = np.int64 if wide else np.int32
    inf = INF64 if wide else INF
    C = np.full((T + 1, M + 1), inf, dtype=dt)
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
        if t >= 2:  # ... which holds the last step's input beside h[0]: m >= 2 s
            best[: max(0, min(hi, 2 * s) - lo)] = inf
        # (first column, right part's memory, left part's offset) per move; an ISM move at
        # y >= 2 runs from the sweep's running state, whose copy the kept run holds: s more
        moves1: list[tuple[int, int, int]] = []
        moves: list[tuple[int, int, int]] = []
        if hsm and t >= 2 and max(lo, 2 * s) < hi:
            moves1.append((max(lo, 2 * s), s, 0))
            moves.append((max(lo, 2 * s), s, 0))
        if ism and t >= 2 and max(lo, s + a) < hi:
            moves1.append((max(lo, s + a), a, 1))
            if max(lo, 2 * s + a) < hi:
                moves.append((max(lo, 2 * s + a), a + s, 1))
        for mlo, d, k in moves1:  # y = 1 first: tightens the bound cheaply
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



#: The process-wide cache the solver and the plots share.
tables = TableCache()


def table_decide(C: np.ndarray, s: int, a: int, hsm: bool, ism: bool) -> Decide:
    """Reconstruct an optimal move from the table.

    Ties prefer keeping internal states at the smallest ``y`` (long contiguous runs that
    execute as one fused call), then running to the end, then the largest hidden split.
    """

    @cache  # segments of a hierarchical plan repeat the same subproblems
    def decide(t: int, m: int) -> Decision:
        target = int(C[t, m])
        if ism and t >= 2 and m - a >= s:
            if 1 + int(C[t - 1, m - a]) == target:  # y = 1: the run starts at h[0 of t]
                return ("ism", 1, m - a)
            if m - a - s >= s:  # y >= 2: the run's input is held too
                ys = np.arange(2, t)
                cost = ys + C[ys - 1, m] + C[t - ys, m - a - s]
                hit = np.flatnonzero(cost == target)
                if hit.size:
                    return ("ism", int(ys[hit[0]]), m - a - s)
        if (t == 1 or m >= 2 * s) and t + int(C[t - 1, m]) == target:
            return ("work", 0, m)
        if hsm and t >= 2 and m - s >= s:
            ys = np.arange(1, t)
            cost = ys + C[ys, m] + C[t - ys, m - s]
            hit = np.flatnonzero(cost == target)
            if hit.size:
                return ("hsm", int(ys[hit[-1]]), m - s)
        raise AssertionError(f"no move reaches C[{t}, {m}] = {target}")  # pragma: no cover

    return decide
