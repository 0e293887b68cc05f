from __future__ import annotations

import pytest

from mbrnn.errors import PlanError
from mbrnn.plan import (
    Backward,
    Chain,
    Forward,
    ForwardKeep,
    FreeHidden,
    KeepHidden,
    simulate_ops,
)

CHAIN = Chain(4, 1.0, 3.0)


def test_accounting_excludes_the_step_being_backpropagated() -> None:
    sim = simulate_ops([ForwardKeep(0, 4), Backward(0, 4)], CHAIN)
    assert sim.peak == 1.0 + 3 * 3.0 and sim.forward_steps == 4 and sim.runs == 1


def test_hidden_and_internal_counted() -> None:
    ops = [
        Forward(0, 2), KeepHidden(2), ForwardKeep(2, 4), Backward(2, 4), FreeHidden(2),
        ForwardKeep(0, 2), Backward(0, 2),
    ]
    sim = simulate_ops(ops, CHAIN)
    assert sim.peak == 2 * 1.0 + 1 * 3.0  # h0, h2 and internal 3 (4 is being back-propagated)
    assert sim.max_hidden == 2 and sim.max_internal == 1 and sim.forward_steps == 6


@pytest.mark.parametrize(
    ("ops", "match"),
    [
        ([Forward(1, 4)], "first sweep must continue at 0|not available"),
        ([ForwardKeep(0, 3), Backward(0, 3)], "next step to back-propagate is 4"),
        ([ForwardKeep(0, 3), Backward(2, 3)], "next step"),
        ([Forward(0, 4), Backward(3, 4)], "internal state 4 was not kept"),
        ([Forward(0, 2), KeepHidden(1)], "cursor is at 2"),
        ([FreeHidden(0)], "not a kept checkpoint"),
        ([ForwardKeep(0, 4)], "not back-propagated"),
        ([Forward(0, 2), KeepHidden(2), ForwardKeep(2, 4), Backward(2, 4), ForwardKeep(0, 2),
          Backward(0, 2)], "ends holding hidden"),
        ([Forward(0, 5)], "stop <= 4"),
        ([ForwardKeep(0, 4), Backward(2, 4), Backward(0, 2)], "inside the run kept from 0"),
        ([Forward(0, 3), ForwardKeep(3, 4), Backward(3, 4), Forward(3, 4)], "stop <= 3"),
    ],
)
def test_illegal_plans_are_rejected(ops: list, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        simulate_ops(ops, CHAIN)


def test_run_inputs_counted_on_request() -> None:
    # a run started from the running state of a sweep: autograd also holds h[2]
    ops = [Forward(0, 2), ForwardKeep(2, 4), Backward(2, 4), ForwardKeep(0, 2), Backward(0, 2)]
    assert simulate_ops(ops, CHAIN).peak == 1.0 + 3.0
    assert simulate_ops(ops, CHAIN, count_run_inputs=True).peak == 1.0 + 3.0 + 1.0
