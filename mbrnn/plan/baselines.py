"""Baseline schedules in the planner's vocabulary: store-all, recompute-all, Chen.

They share the :class:`~mbrnn.plan.ops.Plan` type with the optimal policies, so they can
be simulated, executed and compared directly, and they serve as test oracles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .ops import Backward, Forward, ForwardKeep, FreeHidden, KeepHidden, Op, Simulation

if TYPE_CHECKING:
    from .chain import Chain

__all__ = [
    "chen_cost",
    "chen_ops",
    "chen_segment",
    "chen_stats",
    "recompute_all_ops",
    "recompute_all_stats",
    "store_all_ops",
    "store_all_stats",
]


def store_all_ops(T: int) -> Iterator[Op]:
    """One sweep keeping every internal state, then one backward: ``C = T``."""
    yield ForwardKeep(0, T)
    yield Backward(0, T)


def recompute_all_ops(T: int) -> Iterator[Op]:
    """Keep only ``h[0]``; re-run from it for every step: ``C = T(T+1)/2``, peak ``s``."""
    for k in range(T, 0, -1):
        if k > 1:
            yield Forward(0, k - 1)
        yield ForwardKeep(k - 1, k)
        yield Backward(k - 1, k)


def chen_segment(T: int) -> int:
    """Chen et al. (2016) segment length: ``ceil(sqrt(T))``."""
    return max(1, math.isqrt(T - 1) + 1) if T > 1 else 1


def chen_cost(T: int, s: float, a: float, segment: int | None = None) -> tuple[int, float]:
    """Chen's forward steps and peak in closed form (see :func:`chen_ops`), in the
    paper's accounting with run inputs (:mod:`mbrnn.plan.simulate`)."""
    k = chen_segment(T) if segment is None else min(T, segment)
    n = -(-T // k)
    last = (n - 1) * k
    if n == 1:
        return T, s + a * (T - 1)
    # the largest moment: the last segment, run from the sweep's running state (its input
    # held), or the second-to-last one's re-run; n-1 hidden states kept either way
    return T + last, s * (n - 1) + max(a * (k - 1), a * (T - last - 1) + s)


def store_all_stats(chain: Chain) -> Simulation:
    """``simulate`` of :func:`store_all_ops` on ``chain``, in closed form."""
    T, s = chain.length, chain.state_size
    peak = s + chain.internal_size * (T - 1) + chain.run_size * chain.calls(T)
    return Simulation(T, max(s, peak + chain.backward_transient(T)), 1, 1, T - 1, 2,
                      chain.calls(T), T)


def recompute_all_stats(chain: Chain) -> Simulation:
    """``simulate`` of :func:`recompute_all_ops` on ``chain``, in closed form."""
    T, s, r = chain.length, chain.state_size, chain.run_size
    peak = s + r if T == 1 else max(2 * s + r, s + chain.sweep_size)
    return Simulation(T * (T + 1) // 2, max(s, peak), 2 * T - 1, 1, 0, 3 * T - 1, 1, 1)


def chen_stats(chain: Chain, segment: int | None = None) -> Simulation:
    """``simulate`` of :func:`chen_ops` on ``chain``, in closed form."""
    T, s, a = chain.length, chain.state_size, chain.internal_size
    k = chen_segment(T) if segment is None else min(T, segment)
    n = -(-T // k)
    if n == 1:
        return store_all_stats(chain)
    last = (n - 1) * k
    tail = T - last

    def kept(steps: int) -> float:  # one kept run being back-propagated, its frontier step free
        return (a * (steps - 1) + chain.run_size * chain.calls(steps)
                + chain.backward_transient(steps))

    peak = max(s * (n - 1) + chain.sweep_size, s * n + kept(tail), s * (n - 1) + kept(k))
    return Simulation(T + last, peak, 2 * n - 1, n - 1, k - 1, 5 * n - 5, chain.calls(k), k)


def chen_ops(T: int, segment: int | None = None) -> Iterator[Op]:
    """Chen et al. (2016) sqrt(T) checkpointing.

    Segments of ``k = ceil(sqrt(T))`` steps, or ``segment`` steps where given (shorter
    segments keep more hidden states and fewer internal states at once). The first
    sweep keeps ``h`` at every segment start except ``0`` and the last one, and runs
    the last segment keeping its internal
    states. Each earlier segment is then re-run once from its start keeping internal
    states, and back-propagated. With ``B`` the start of the last segment,
    ``C = T + B``; while segment ``i`` (0-based) is back-propagated, ``i + 1`` hidden
    states are kept (``i`` for the last segment) plus ``len_i - 1`` internal states.
    """
    k = chen_segment(T) if segment is None else min(T, segment)
    starts = list(range(0, T, k))
    last = starts[-1]
    for b in starts[1:-1]:
        yield Forward(b - k, b)
        yield KeepHidden(b)
    if last > 0:
        yield Forward(last - k, last)
    yield ForwardKeep(last, T)
    yield Backward(last, T)
    for b in reversed(starts[:-1]):
        yield ForwardKeep(b, b + k)
        yield Backward(b, b + k)
        if b > 0:
            yield FreeHidden(b)
