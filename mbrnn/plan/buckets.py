"""Length buckets: one plan serves every sequence length in a bucket.

Variable-length data (raw audio, documents, packed batches) brings a new length on
nearly every batch. Rather than planning each, a front end rounds the length ``T`` up
to its bucket ``T' = bucket_length(T, ratio)`` on a geometric grid, plans for ``T'``
once, and runs :func:`restrict` of that plan to ``T``.

NOTE [ A plan restricted to a shorter sequence ]
:func:`restrict` runs the longer plan's last ``T`` steps: with ``D = T' - T``, the state
``h[D]`` of the longer plan is the shorter sequence's initial state. Every op of steps
after ``D`` stays, shifted by ``D``; a run ``(j, k]`` with ``j < D < k`` starts at the
initial state instead, ``(D, k]``, and so does a ``Backward``; what lies wholly before
``D`` goes (the prefix's sweep, its checkpoints and its back-propagation, which the
longer plan does last). What remains is a plan for ``T`` steps in the same order: the
first sweep visits steps ``1..T`` once, in order, and each step is back-propagated
once, after the steps after it; a run that started from a state before ``D`` now starts
from the initial state, which is always held.

It fits the budget the longer plan was made for. At every op, what the restricted plan
holds is at most what the longer plan holds at the corresponding op: the same kept
states after ``D``, none before (the initial state stands in for the longer plan's
``h[0]``), no run input that the longer plan did not hold (a run moved to the initial
state has none), no more calls per run and no longer backward transients. So every term
of :func:`~mbrnn.plan.simulate.simulate` is at most the longer plan's, and so is the
cost. How much more than the best plan for ``T`` it costs is the bucket's loss, bounded
by the grid's ratio and measured by ``scripts/bench_planning.py``;
``tests/test_buckets.py`` checks validity and the budget over random plans and lengths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Final

from .emit import merge
from .ops import Backward, Forward, ForwardKeep, FreeHidden, KeepHidden, Op, OpSequence, Plan

__all__ = ["BUCKET_MIN", "BUCKET_RATIO", "bucket_length", "restrict"]

#: The default grid: lengths round up by at most this factor (2^(1/8), about 9 %).
BUCKET_RATIO: Final = 2 ** (1 / 8)
#: Lengths up to this are planned exactly, not bucketed.
BUCKET_MIN: Final = 64


def bucket_length(length: int, ratio: float = BUCKET_RATIO, minimum: int = BUCKET_MIN) -> int:
    """The bucket's length for ``length``: the least ``ceil(minimum * ratio**k) >= length``.

    Lengths up to ``minimum`` are their own bucket, and ``ratio = 1`` turns bucketing off.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"bucket_length: length must be an int >= 1, got {length!r}")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 1.0):
        raise ValueError(f"bucket_length: ratio must be a number >= 1, got {ratio!r}")
    if length <= minimum or ratio == 1.0:
        return length
    k = math.ceil(math.log(length / minimum) / math.log(ratio) - 1e-12)
    while math.ceil(minimum * ratio**k) < length:  # float rounding
        k += 1
    while k > 0 and math.ceil(minimum * ratio ** (k - 1)) >= length:
        k -= 1
    return max(length, math.ceil(minimum * ratio**k))


def _restricted(ops: Iterator[Op], D: int) -> Iterator[Op]:
    """The ops of steps after ``D``, shifted to start at 0."""
    for op in ops:
        if isinstance(op, (Forward, ForwardKeep, Backward)):
            if op.stop <= D:
                continue
            yield type(op)(max(op.start, D) - D, op.stop - D)
        elif isinstance(op, (KeepHidden, FreeHidden)):
            if op.index > D:  # h[D] is the initial state now, always held
                yield type(op)(op.index - D)
        else:  # pragma: no cover - the vocabulary is closed
            raise TypeError(f"restrict: unknown op {op!r}")


def restrict(plan: Plan, length: int) -> Plan:
    """``plan``'s last ``length`` steps, as a plan of their own: NOTE [ A plan restricted
    to a shorter sequence ]. It fits ``plan.budget`` and costs no more than ``plan``."""
    T = plan.chain.length
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= T:
        raise ValueError(f"restrict: length must be an int in [1, {T}], got {length!r}")
    if length == T:
        return plan
    ops, D = plan.ops, T - length
    steps = sum(op.stop - op.start for op in _restricted(iter(ops), D)
                if isinstance(op, (Forward, ForwardKeep)))
    return replace(plan, chain=plan.chain.with_length(length), forward_steps=steps,
                   ops=OpSequence(lambda: merge(_restricted(iter(ops), D))), exact=False,
                   stats=None)
