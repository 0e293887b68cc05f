r"""A recurrent classifier for long sequences, trained with full BPTT under a budget.

A stacked LSTM or GRU reads a long sequence of feature vectors (784 pixels of a
Fashion-MNIST image, a recording's frames) and a linear head maps its last output to
class logits. Gradients flow through every step (full back-propagation through time),
and the memory that takes is bounded by ``memory_budget`` (Gruslys et al.,
"Memory-Efficient Backpropagation Through Time", NeurIPS 2016).

Bidirectional: a second direction reads the sequence backwards; the head sees both
directions' last hidden states. The two share ``memory_budget``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..nn.rnn import GRU, LSTM

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
        memory_budget: budget of the BPTT (``None``: keep everything), as in
            :class:`mbrnn.LSTM`.
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


class SequenceClassifier(nn.Module):
    r"""Long sequence of feature vectors to a label.

    The recurrence is a drop-in :class:`mbrnn.LSTM` or :class:`mbrnn.GRU`: every run of
    steps is one call of PyTorch's fused kernel, and its backward runs within
    ``memory_budget`` (for a bidirectional model, shared by the two directions).

    Args:
        config: a :class:`SequenceClassifierConfig`.

    Inputs: x, labels=None, *, truncate=0
        - **x**: ``(T, B, input_size)`` floating point, or a ``PackedSequence`` of
          sequences of different lengths (:func:`~mbrnn.data.collate_sequences` with
          ``packed=True``): each sequence is classified from its own last step.
        - **labels**: ``(B,)`` int64, or ``None``.
        - **truncate**: ``0`` for full BPTT; ``K`` to back-propagate through the last
          ``K`` steps only (truncated BPTT, to compare against; unidirectional, padded
          input only).

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
        make = LSTM if config.cell == "lstm" else GRU
        self.rnn = make(
            config.input_size, config.hidden_size, config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
            memory_budget=config.memory_budget, policy=config.policy,
        )
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(directions * config.hidden_size, config.num_classes)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def _features(self, x: Tensor | PackedSequence, truncate: int) -> Tensor:
        """The top layer's last hidden state of each direction, ``(B, directions * H)``:
        after step ``T`` forwards and after step 1 backwards (each sequence's own last
        step for packed input). Back-propagates through the last ``truncate`` steps only
        when ``0 < truncate < T``."""
        state = None
        if isinstance(x, Tensor) and 0 < truncate < x.shape[0]:
            if self.config.bidirectional:
                raise ValueError(
                    f"SequenceClassifier: truncate={truncate} needs a unidirectional model "
                    "(the backward direction reads the sequence from its end); use truncate=0")
            with torch.no_grad():
                state = self.rnn.final_state(x[:-truncate])
            x = x[-truncate:]
        elif isinstance(x, PackedSequence) and truncate:
            raise ValueError(f"SequenceClassifier: truncate={truncate} needs padded input, "
                             "not a PackedSequence; use truncate=0")
        hn = self.rnn.final_state(x, state)  # no (T, B, H) output: only the last state is read
        h = hn[0] if isinstance(hn, tuple) else hn  # LSTM: (h_n, c_n)
        directions = 2 if self.config.bidirectional else 1
        return torch.cat(list(h[-directions:]), dim=1)

    def forward(self, x: Tensor | PackedSequence, labels: Tensor | None = None, *,
                truncate: int = 0) -> Tensor | tuple[Tensor, Tensor]:
        if isinstance(x, PackedSequence):
            batch = int(x.batch_sizes[0])
        elif isinstance(x, Tensor) and x.dim() == 3:
            batch = x.shape[1]
        else:
            raise ValueError(
                "SequenceClassifier: Expected x to be 3D (T, B, input_size) or a PackedSequence, got "
                f"{x.dim() if isinstance(x, Tensor) else type(x).__name__}"
                f"{'D' if isinstance(x, Tensor) else ''} instead"
            )
        features = self._features(x, truncate)
        features = F.dropout(features, self.config.dropout, self.training)
        logits = self.head(features)  # (B, C)
        if labels is None:
            return logits
        if labels.shape != (batch,):
            raise ValueError(
                f"SequenceClassifier: labels have shape {tuple(labels.shape)}, expected ({batch},)"
            )
        return F.cross_entropy(logits, labels), logits
