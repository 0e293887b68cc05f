"""mbrnn.runtime.fused: a fused segment runs each plan run as few kernel calls as its pieces
allow, never a loop per step, and a kept run cut into pieces is exact."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from rnn_helpers import F64, _flat, _loss, _max_diff, _pair
from torch import Tensor

from mbrnn import LSTM
from mbrnn.nn import rnn as rnn_mod
from mbrnn.plan import Forward, ForwardKeep
from mbrnn.runtime.fused import FusedSegment

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny calls on 2 cores


def test_every_run_is_fused_calls_of_at_most_its_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept run is one call per ``keep_chunk`` steps, a sweep one per ``chunk`` steps:
    never a loop per step (NOTE [ Kept runs in pieces ])."""
    calls: list[int] = []
    kernel = FusedSegment._kernel

    def counting(self: Any, x: Tensor, *args: Any) -> Any:
        calls.append(x.shape[0])
        return kernel(self, x, *args)

    monkeypatch.setattr(FusedSegment, "_kernel", counting)
    torch.manual_seed(0)
    T, B = 200, 2
    m = LSTM(4, 8, num_layers=2, dtype=F64, memory_budget=1, policy="msm")
    x = torch.randn(T, B, 4, dtype=F64)
    store = m.plan_for(T, B, memory_budget=2**40)
    # 20 %: at 10 % a sweep's share of the budget allows pieces of 2 steps for this tiny
    # module, and the test is about calls per run and per piece
    m.memory_budget = int(0.2 * store.predicted_peak)
    fp = m.plan_for(T, B, input_requires_grad=False)  # x needs no gradient
    assert fp.plans[0].plan.policy == "msm"
    calls.clear()
    y, _ = m(x)
    assert m.last_plan == fp
    y.sum().backward()
    plan = fp.plans[0].plan
    chunk, keep = fp.chunks[0], fp.keep_chunks[0]
    expected = 0
    for i, op in enumerate(plan.ops):
        if isinstance(op, ForwardKeep):
            expected += math.ceil((op.stop - op.start) / keep)
        elif isinstance(op, Forward):
            if i == 0:  # the executor runs step 1 alone first, to learn the output's shape
                expected += 1 + math.ceil((op.stop - 1) / chunk)
            else:
                expected += math.ceil((op.stop - op.start) / chunk)
    assert len(calls) == expected
    assert len(calls) < plan.forward_steps / 4  # runs, not steps
    assert sum(calls) == plan.forward_steps
    m.memory_budget = 2**40
    calls.clear()
    m(x)[0].sum().backward()
    assert calls == [T]  # store-all: the whole sequence in one call, as nn.LSTM


def test_kept_runs_in_pieces_are_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept run cut into 7-step calls (Pieces) gives torch's outputs and gradients."""
    calls: list[int] = []
    kernel = FusedSegment._kernel

    def counting(self: Any, x: Tensor, *args: Any) -> Any:
        if torch.is_grad_enabled():
            calls.append(x.shape[0])
        return kernel(self, x, *args)

    monkeypatch.setattr(FusedSegment, "_kernel", counting)
    monkeypatch.setattr(rnn_mod, "MAX_CHUNK", 7)
    torch.manual_seed(0)
    m, ref = _pair("lstm_proj2", 3, 5)
    m.memory_budget, m.policy = 2**40, "store_all"
    T, B = 30, 2
    x = torch.randn(T, B, 3, dtype=F64, requires_grad=True)
    w = torch.randn(T, B, 3, dtype=F64)
    m.plan_for(T, B)  # the probe's own calls
    calls.clear()
    y, state = m(x)
    assert m.last_plan is not None and m.last_plan.keep_chunks == (7,)
    g = torch.autograd.grad(_loss(y, state, w), [x, *m.parameters()])
    assert calls == [7, 7, 7, 7, 2]  # one kept run of 30 steps, in pieces
    y_ref, state_ref = ref(x)
    g_ref = torch.autograd.grad(_loss(y_ref, state_ref, w), [x, *ref.parameters()])
    assert _max_diff([y, *_flat(state), *g], [y_ref, *_flat(state_ref), *g_ref]) <= 1e-10

