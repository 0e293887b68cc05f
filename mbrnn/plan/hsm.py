"""HSM: keep hidden states only, Griewank and Walther's closed form.

After Griewank and Walther, "Algorithm 799: Revolve" (ACM TOMS 2000). With ``c >= 1``
hidden-state slots the fewest forward steps for ``t`` steps are

    C(t, c) = t + r*t - binom(c + r, r - 1),   r the smallest with binom(c + r, r) >= t,

and an optimal first checkpoint has a closed form too (:func:`hsm_split`), so an HSM
plan needs no table: cost, split and the plan's statistics come in microseconds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .emit import Decision
from .ops import Simulation

if TYPE_CHECKING:
    from .chain import Chain

__all__ = ["hsm_cost", "hsm_costs", "hsm_decide", "hsm_split", "hsm_stats"]


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


def hsm_decide(t: int, c: int) -> Decision:
    """The move for ``t`` steps with ``c`` slots: run to the end, or keep ``h[split]``."""
    if t == 1 or c == 1:
        return ("work", 0, c)
    return ("hsm", hsm_split(t, c), c - 1)


def hsm_costs(n: int, cs: np.ndarray) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------
# The statistics of an HSM plan, from its decisions (no ops)
# ---------------------------------------------------------------------------------------

_NONE = -(1 << 40)  # "no such moment" in a profile; stays negative when small ints are added

# A subproblem's profile, relative to the hidden states held when it starts:
# (most hidden at a Forward, at a ForwardKeep from the running state, at a ForwardKeep
#  from a kept state, most hidden at all, Forward ops, ops)
_Profile = tuple[int, int, int, int, int, int]


def _base(t: int) -> _Profile:
    """``t`` steps with one slot (or one step): run to the end, back-propagate, repeat."""
    if t == 1:
        return (_NONE, _NONE, 0, 0, 0, 2)  # ForwardKeep from the kept start, Backward
    return (0, 0, 0, 0, t - 1, 3 * (t - 1) + 2)


def _ones(t: int, c: int) -> int:
    """How many moves from ``(t, c)`` down split at ``y = 1`` in a row (``>= 1``).

    ``hsm_split(t - i, c - i) == 1`` holds for a prefix of ``i`` (it needs ``r <= 2``,
    and along the chain ``r`` only grows and ``t - binom(c + 1, 2)`` only rises), so the
    end of the prefix is found by bisection.
    """
    lo, hi = 1, min(t - 2, c - 2) + 1  # the predicate holds at lo - 1 = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if hsm_split(t - mid, c - mid) == 1:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _profile(T: int, c: int) -> _Profile:
    memo: dict[tuple[int, int], _Profile] = {}
    stack = [(T, c)]
    while stack:
        t, cc = key = stack[-1]
        if key in memo:
            stack.pop()
            continue
        if t == 1 or cc == 1:
            memo[key] = _base(t)
            stack.pop()
            continue
        y = hsm_split(t, cc)
        if y == 1:  # keep h[1], solve t-1 steps with one slot fewer, then step 1: k times
            k = _ones(t, cc)
            end = (t - k, cc - k)
            if end not in memo:
                stack.append(end)
                continue
            F, K1, K0, H, nF, n = memo[end]
            memo[key] = (max(k - 1, k + F), k + K1, max(k - 1, k + K0), k + H, k + nF, 5 * k + n)
        else:
            right, left = (t - y, cc - 1), (y, cc)
            todo = [q for q in (right, left) if q not in memo]
            if todo:
                stack.extend(todo)
                continue
            R, L = memo[right], memo[left]
            memo[key] = (max(0, 1 + R[0], L[0]), max(1 + R[1], L[1]), max(1 + R[2], L[2]),
                         max(1 + R[3], L[3]), 1 + R[4] + L[4], 3 + R[5] + L[5])
        stack.pop()
    return memo[(T, c)]


def hsm_stats(chain: Chain, c: int) -> Simulation:
    """``simulate`` of the HSM plan with ``c`` slots on ``chain``, from its decisions.

    Every kept run of an HSM plan is one step, back-propagated at once, so memory is the
    hidden states held plus, at a ``ForwardKeep``, the run (``run_size``) and its input
    where it starts at the running state; at a ``Forward``, ``sweep_size``. The profile
    of a subproblem does not depend on where it starts, so each distinct ``(t, c)`` is
    solved once, and runs of ``y = 1`` splits are summed in closed form: a plan of a
    million steps in milliseconds.
    """
    T, s, r = chain.length, chain.state_size, chain.run_size
    F, K1, K0, H, nF, n = _profile(T, c)
    peak = max(s, s * (1 + K0) + r)
    if F >= 0:
        peak = max(peak, s * (1 + F) + chain.sweep_size)
    if K1 >= 0:
        peak = max(peak, s * (2 + K1) + r)
    return Simulation(hsm_cost(T, c), peak, nF + T, 1 + H, 0, n, 1, 1)
