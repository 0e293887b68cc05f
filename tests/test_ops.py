"""mbrnn.plan.ops: the ops of a plan, and OpSequence, which generates them lazily."""

from __future__ import annotations

from collections.abc import Iterator

from mbrnn.plan import Chain, solve
from mbrnn.plan.ops import Op, OpSequence


def test_a_complete_iteration_of_the_ops_is_kept() -> None:
    calls = []

    def factory() -> Iterator[Op]:
        calls.append(1)
        yield from solve(Chain(50, 1.0, 3.0), 20.0, "msm").ops

    ops = OpSequence(factory)
    first = [op for op in ops]  # (list() would ask len() too, which materialises)
    assert [op for op in ops] == first and len(calls) == 1
    partial = OpSequence(factory)
    next(iter(partial))  # an abandoned pass keeps nothing
    assert [op for op in partial] == first and len(calls) == 3
