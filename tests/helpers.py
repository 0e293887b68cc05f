"""Shared test oracles and strategies."""

from __future__ import annotations

import heapq
import importlib.util
import itertools
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrnn.nn.cell import Cell
from mbrnn.runtime.state import State, state_flatten


@cache
def brute_force_cost(T: int, s: int, a: int, m: int, policy: str) -> int | None:
    """Fewest forward steps by exhaustive search over schedules, no dynamic program.

    A Dijkstra search over the states of an execution machine: the next step to
    back-propagate ``b``, the kept hidden states ``H`` (``h[0]`` always), the kept
    internal states ``I``, the *run inputs* ``R`` and the cursor (the running state of a
    sweep). Actions:

    - step from any available state ``p < b`` (``h[0]``, kept hidden, output of a kept
      internal state, the cursor) to ``p+1``, optionally keeping step ``p+1``'s internal
      state (cost 1). Keeping it from a state that is not itself inside a kept internal
      state starts a run whose input ``p`` autograd holds: ``p`` joins ``R`` until step
      ``p+1`` is back-propagated, even if ``p`` was a checkpoint that is dropped;
    - keep the cursor as a hidden state; drop any kept hidden state (cost 0);
    - back-propagate step ``b`` when its internal state is kept (cost 0).

    Memory ``s*|H union R| + a*|I minus {b}|`` may never exceed ``m``. "hsm" keeps internal
    states only for step ``b`` (the step about to be back-propagated, which is working
    memory), "ism" keeps no hidden states but ``h[0]``. Returns ``None`` when no schedule
    fits.
    """
    if m < s:
        return None
    hsm_ok = policy in ("hsm", "msm")
    ism_ok = policy in ("ism", "msm")
    empty: frozenset[int] = frozenset()
    start = (T, frozenset({0}), empty, empty, 0)
    dist = {start: 0}
    counter = itertools.count()
    heap = [(0, next(counter), start)]

    def mem(b: int, H: frozenset[int], I: frozenset[int], R: frozenset[int]) -> int:
        return s * len(H | R) + a * len(I - {b})

    while heap:
        d, _, state = heapq.heappop(heap)
        if dist.get(state, 1 << 60) < d:
            continue
        b, H, I, R, cur = state
        if b == 0:
            return d
        nexts: list[tuple[int, tuple]] = []
        avail = {p for p in (H | I | ({cur} if cur is not None else set())) if p < b}
        for p in avail:
            q = p + 1
            nexts.append((1, (b, H, I, R, q)))
            if q not in I and (ism_ok or q == b):
                # a run's input: the cursor, or a kept hidden state the run holds even
                # once the checkpoint is dropped; none inside a kept internal state
                nexts.append((1, (b, H, I | {q}, R if p in I else R | {p}, q)))
        if hsm_ok and cur is not None and cur not in H and 0 < cur < b:
            nexts.append((0, (b, H | {cur}, I, R, cur)))
        for p in H:
            if p != 0:
                nexts.append((0, (b, H - {p}, I, R, cur)))
        if b in I:
            nb = b - 1
            nexts.append((0, (nb, frozenset(p for p in H if p < nb or p == 0), I - {b},
                              frozenset(r for r in R if r < nb), None)))
        for cost, ns in nexts:
            nb, nH, nI, nR, _ = ns
            if mem(nb, nH, nI, nR) > m:
                continue
            nd = d + cost
            if nd < dist.get(ns, 1 << 60):
                dist[ns] = nd
                heapq.heappush(heap, (nd, next(counter), ns))
    return None


LSTMState = tuple[Tensor, Tensor]


class PeepholeLSTM(Cell[LSTMState]):
    """A user cell: LSTM with peephole connections (Gers & Schmidhuber, 2000)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.weight_peep = nn.Parameter(torch.empty(3, hidden_size))
        bound = hidden_size**-0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> LSTMState:
        h = self.state_zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return (h, torch.zeros_like(h))

    def forward(self, x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        self.check_input(x, state)
        h, c = state
        gates = F.linear(x, self.weight_ih, self.bias) + F.linear(h, self.weight_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        i = torch.sigmoid(i + self.weight_peep[0] * c)
        f = torch.sigmoid(f + self.weight_peep[1] * c)
        c_next = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.weight_peep[2] * c_next)
        h_next = o * torch.tanh(c_next)
        return h_next, (h_next, c_next)


def leaves(state: State) -> list[Tensor]:
    return state_flatten(state)[0]


def load_script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``scripts/<name>.py`` as a module, registered in ``sys.modules`` for the test."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module
