"""Helpers shared by the tests of mbrnn.LSTM / GRU / RNN and of their fused segments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mbrnn import GRU, LSTM, RNN

F64 = torch.float64

# name -> (our class, torch class, constructor keywords)
CONFIGS: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    "lstm": (LSTM, nn.LSTM, {}),
    "lstm3": (LSTM, nn.LSTM, {"num_layers": 3}),
    "lstm_proj2": (LSTM, nn.LSTM, {"num_layers": 2, "proj_size": 3}),
    "lstm_bi2": (LSTM, nn.LSTM, {"num_layers": 2, "bidirectional": True}),
    "gru2": (GRU, nn.GRU, {"num_layers": 2}),
    "gru_bi": (GRU, nn.GRU, {"bidirectional": True}),
    "rnn_tanh": (RNN, nn.RNN, {}),
    "rnn_relu_bi2": (RNN, nn.RNN, {"num_layers": 2, "nonlinearity": "relu",
                                   "bidirectional": True}),
}


def _pair(name: str, F: int, H: int, dtype: torch.dtype = F64, **extra: Any):
    ours, theirs, kw = CONFIGS[name]
    ref = theirs(F, H, **kw, **extra).to(dtype)
    return ours.from_torch(ref, memory_budget=1, policy="auto"), ref


def _flat(state: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _loss(y: Tensor, state: Tensor | tuple[Tensor, ...], w: Tensor) -> Tensor:
    """Every output step and every final state tensor get a distinct gradient."""
    return (y * w).sum() + sum(((i + 2) * s.sin()).sum() for i, s in enumerate(_flat(state)))


def _max_diff(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))
