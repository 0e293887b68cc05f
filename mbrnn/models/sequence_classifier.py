r"""A recurrent classifier for long sequences, trained with full BPTT under a budget.

A stacked LSTM or GRU reads a long sequence of feature vectors (784 pixels of a
Fashion-MNIST image, a recording's frames) and a linear head maps its last output to
class logits. Gradients flow through every step (full back-propagation through time),
and the memory that takes is bounded by ``memory_budget`` (Gruslys et al.,
"Memory-Efficient Backpropagation Through Time", NeurIPS 2016).

Bidirectional: a second recurrence reads the reversed sequence; the head sees both last
outputs. Each direction has its own :class:`~mbrnn.nn.Recurrent` and its own budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.cell import Cell
from ..nn.cells import GRUCell, LSTMCell, StackedCell
from ..nn.recurrent import Recurrent

__all__ = ["SequenceClassifier", "SequenceClassifierConfig"]

CELLS = ("lstm", "gru")


@dataclass
class SequenceClassifierConfig:
    """Architecture of a :class:`SequenceClassifier` (what ``config.json`` holds).

    Args:
        input_size: features per step (1 for pixel sequences).
        num_classes: number of labels.
        cell: ``"lstm"`` or ``"gru"``.
        hidden_size, num_layers: the recurrent sizes.
        dropout: dropout between layers and before the head.
        bidirectional: also read the sequence backwards.
        memory_budget: budget of each direction's BPTT (``None``: keep everything).
        policy: the planner policy (``"auto"``).
    """

    model_type: ClassVar[str] = "sequence_classifier"

    input_size: int
    num_classes: int
    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = False
    memory_budget: int | str | None = None
    policy: str = "auto"

    def __post_init__(self) -> None:
        owner = "SequenceClassifierConfig"
        for name in ("input_size", "num_classes", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
        if self.num_classes < 2:
            raise ValueError(f"{owner}: num_classes must be >= 2, got {self.num_classes}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise TypeError(f"{owner}: dropout must be a float, got {type(self.dropout).__name__}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1), got {self.dropout}")
        self.dropout = float(self.dropout)
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {CELLS}, got {self.cell!r}")
        if not isinstance(self.bidirectional, bool):
            raise TypeError(f"{owner}: bidirectional must be a bool, got {type(self.bidirectional).__name__}")
        if self.memory_budget is not None and (
            isinstance(self.memory_budget, bool) or not isinstance(self.memory_budget, (int, str))
        ):
            raise TypeError(f"{owner}: memory_budget must be an int, a str or None")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SequenceClassifierConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"SequenceClassifierConfig: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


def _stack(config: SequenceClassifierConfig) -> Cell:
    make = LSTMCell if config.cell == "lstm" else GRUCell
    sizes = [config.input_size] + [config.hidden_size] * config.num_layers
    cells = [make(sizes[i], sizes[i + 1]) for i in range(config.num_layers)]
    if len(cells) == 1:
        return cells[0]
    return StackedCell(cells, dropout=config.dropout)


class SequenceClassifier(nn.Module):
    r"""Long sequence of feature vectors to a label.

    Args:
        config: a :class:`SequenceClassifierConfig`.

    Inputs: x, labels=None, *, truncate=0
        - **x**: ``(T, B, input_size)`` floating point.
        - **labels**: ``(B,)`` int64, or ``None``.
        - **truncate**: ``0`` for full BPTT; ``K`` to back-propagate through the last
          ``K`` steps only (truncated BPTT, to compare against).

    Outputs:
        - with labels: ``(loss, logits)``, the mean cross-entropy and ``(B, num_classes)``;
        - without: ``logits`` ``(B, num_classes)``.

    Example::

        >>> model = SequenceClassifier(SequenceClassifierConfig(1, 10, memory_budget="32MiB"))
        >>> loss, logits = model(torch.randn(784, 16, 1), torch.randint(0, 10, (16,)))
        >>> loss.backward()
    """

    def __init__(self, config: SequenceClassifierConfig) -> None:
        super().__init__()
        if not isinstance(config, SequenceClassifierConfig):
            raise TypeError(
                f"SequenceClassifier: config must be a SequenceClassifierConfig, got {type(config).__name__}"
            )
        self.config = config
        kw: dict[str, Any] = {"memory_budget": config.memory_budget, "policy": config.policy}
        self.forward_rnn = Recurrent(_stack(config), **kw)
        self.backward_rnn = Recurrent(_stack(config), **kw) if config.bidirectional else None
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(directions * config.hidden_size, config.num_classes)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def _last(self, rnn: Recurrent, x: Tensor, truncate: int) -> Tensor:
        """The last output of ``rnn`` over ``x``, back-propagating through ``truncate`` steps
        only when ``0 < truncate < T`` (truncated BPTT, for comparison)."""
        if 0 < truncate < x.shape[0]:
            with torch.no_grad():
                _, state = rnn(x[:-truncate])
            y, _ = rnn(x[-truncate:], state)
        else:
            y, _ = rnn(x)  # (T, B, H)
        return y[-1]

    def forward(self, x: Tensor, labels: Tensor | None = None, *,
                truncate: int = 0) -> Tensor | tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor) or x.dim() != 3:
            raise ValueError(
                "SequenceClassifier: Expected x to be 3D (T, B, input_size), got "
                f"{x.dim() if isinstance(x, Tensor) else type(x).__name__}"
                f"{'D' if isinstance(x, Tensor) else ''} instead"
            )
        features = self._last(self.forward_rnn, x, truncate)  # (B, H)
        if self.backward_rnn is not None:
            backward = self._last(self.backward_rnn, x.flip(0), truncate)
            features = torch.cat([features, backward], dim=1)  # (B, 2H)
        features = F.dropout(features, self.config.dropout, self.training)
        logits = self.head(features)  # (B, C)
        if labels is None:
            return logits
        if labels.shape != (x.shape[1],):
            raise ValueError(
                f"SequenceClassifier: labels have shape {tuple(labels.shape)}, expected ({x.shape[1]},)"
            )
        return F.cross_entropy(logits, labels), logits
