"""HSM: keep hidden states only, Griewank and Walther's closed form.

After Griewank and Walther, "Algorithm 799: Revolve" (ACM TOMS 2000). With ``c >= 1``
hidden-state slots the fewest forward steps for ``t`` steps are

    C(t, c) = t + r*t - binom(c + r, r - 1),   r the smallest with binom(c + r, r) >= t,

and an optimal first checkpoint has a closed form too (:func:`hsm_split`), so an HSM
plan needs no table: cost, split and the plan's statistics come in microseconds.
"""

from __future__ import annotations

import math

import numpy as np

from .emit import Decision

__all__ = ["hsm_cost", "hsm_costs", "hsm_decide", "hsm_split"]


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
