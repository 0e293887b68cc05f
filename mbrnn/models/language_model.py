r"""A recurrent language model whose training memory is bounded by a budget.

``embedding -> stacked LSTM or GRU -> decoder`` (tied to the embedding when the sizes
match), with the regularisers of Merity et al., "Regularizing and Optimizing LSTM
Language Models" (2017): embedding dropout, variational ("locked") dropout between
layers (Gal & Ghahramani, 2016) and optional weight dropout on the hidden-to-hidden
weights. Back-propagation through time runs under a memory budget (Gruslys et al.,
"Memory-Efficient Backpropagation Through Time", NeurIPS 2016).

NOTE [ The loss inside the recurrence ]
A language model's largest activation is not the recurrent state but the output
projection: (T, B, vocab) logits and their softmax. With targets, :class:`LanguageModel`
runs :class:`LanguageModelCell` through :class:`~mbrnn.nn.Recurrent`: one step embeds the
token ids of step t, runs the stack, projects to the vocabulary and returns the
per-example cross-entropy as ``y`` of shape (B, 1). The input is the ids and the targets
stacked as a (T, B, 2) long tensor. The executor keeps or recomputes a step's logits
like any other internal tensor, so the (T, B, vocab) logits are never all held at once
and the planner's budget covers them.

NOTE [ Dropout masks under recomputation ]
The executor re-runs steps during the backward pass and replays each step's RNG (seeded
per step), so anything drawn inside a step is reproduced exactly. Per-step draws are used
for embedding dropout (a whole token embedding is dropped, independently per position)
and weight dropout (a DropConnect mask on ``weight_hh``, redrawn every step; Merity et
al. draw one per sequence). Locked dropout needs one mask per sequence, the same at every
step, which a per-step seed cannot give; those masks are drawn once per call and carried
in the recurrent state as bool tensors, so every checkpointed state holds them and a
recomputed step sees exactly the masks of its first run. They cost ``B * (E + L * H)``
bytes per checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.cell import Cell, State
from ..nn.cells import GRUCell, LSTMCell
from ..nn.recurrent import Recurrent

__all__ = ["LanguageModel", "LanguageModelCell", "LanguageModelConfig"]

CELLS = ("lstm", "gru")
LEVELS = ("word", "char", "byte")


def _check_type(owner: str, name: str, value: object, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise TypeError(f"{owner}: {name} must be {getattr(kind, '__name__', kind)}, got bool")
    if not isinstance(value, kind):
        raise TypeError(f"{owner}: {name} must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")


@dataclass
class LanguageModelConfig:
    """Architecture of a :class:`LanguageModel` (what ``config.json`` holds).

    Args:
        vocab_size: number of tokens (``len(vocab)``).
        level: ``"word"``, ``"char"`` or ``"byte"``: recorded for evaluation (ppl or bpc).
        cell: ``"lstm"`` or ``"gru"``.
        embedding_size, hidden_size, num_layers: the sizes.
        dropout: locked dropout on the embedding output, between layers and before the
            decoder (one mask per sequence).
        embedding_dropout: drops whole token embeddings.
        weight_dropout: DropConnect on the hidden-to-hidden weights.
        tie_weights: share the decoder's weight with the embedding when
            ``embedding_size == hidden_size``.
        memory_budget: budget for training BPTT (``None``: keep everything); a size in
            bytes or a string like ``"64MiB"``.
        policy: the planner policy (``"auto"``).
    """

    model_type: ClassVar[str] = "language_model"

    vocab_size: int
    level: str = "char"
    cell: str = "lstm"
    embedding_size: int = 128
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.0
    embedding_dropout: float = 0.0
    weight_dropout: float = 0.0
    tie_weights: bool = True
    memory_budget: int | str | None = None
    policy: str = "auto"

    def __post_init__(self) -> None:
        owner = "LanguageModelConfig"
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            _check_type(owner, name, value, int)
            if value < 1:
                raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
        for name in ("dropout", "embedding_dropout", "weight_dropout"):
            value = getattr(self, name)
            _check_type(owner, name, value, (int, float))
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{owner}: {name} must be in [0, 1), got {value}")
            setattr(self, name, float(value))
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {CELLS}, got {self.cell!r}")
        if self.level not in LEVELS:
            raise ValueError(f"{owner}: level must be one of {LEVELS}, got {self.level!r}")
        _check_type(owner, "tie_weights", self.tie_weights, bool)
        if self.memory_budget is not None:
            _check_type(owner, "memory_budget", self.memory_budget, (int, str))

    @property
    def tied(self) -> bool:
        """Whether the decoder shares the embedding's weight."""
        return self.tie_weights and self.embedding_size == self.hidden_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LanguageModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"LanguageModelConfig: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


# (layer states, locked-dropout masks): masks are () when config.dropout == 0.
LMState = tuple[tuple[State, ...], tuple[Tensor, ...]]


class LanguageModelCell(Cell[LMState]):  # pyright: ignore[reportInvalidTypeArguments]
    r"""One step of the language model, loss included: see NOTE [ The loss inside the recurrence ].

    Inputs: x, state
        - **x** of shape ``(B, 2)``, int64: column 0 the token ids of this step, column 1
          their targets.
        - **state**: ``(layer_states, masks)`` from :meth:`init_state`.

    Outputs: y, new_state
        - **y** of shape ``(B, 1)``: the cross-entropy of each example at this step.
        - **new_state**: the next ``(layer_states, masks)``; the masks pass through.
    """

    accepts_integer_input: ClassVar[bool] = True

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__(2, 1)
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size)
        make = LSTMCell if c.cell == "lstm" else GRUCell
        sizes = [c.embedding_size] + [c.hidden_size] * c.num_layers
        self.layers = nn.ModuleList(make(sizes[i], sizes[i + 1]) for i in range(c.num_layers))
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if c.tied:
            self.decoder.weight = self.embedding.weight

    # --- state ---------------------------------------------------------------------------

    def mask_sizes(self) -> list[int]:
        """Feature sizes of the locked-dropout masks: embedding, between layers, output."""
        c = self.config
        return [c.embedding_size] + [c.hidden_size] * c.num_layers if c.dropout > 0 else []

    def init_layer_states(self, batch_size: int, *, device: torch.device | str | None = None,
                          dtype: torch.dtype | None = None) -> tuple[State, ...]:
        return tuple(cast(State, cast(Cell, layer).init_state(batch_size, device=device, dtype=dtype))
                     for layer in self.layers)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> LMState:
        """Zero layer states and all-keep masks."""
        if dtype is not None and not dtype.is_floating_point:
            dtype = None  # the input is token ids; the state follows the parameters
        if device is None:
            device = self.embedding.weight.device
        masks = tuple(torch.ones(batch_size, n, dtype=torch.bool, device=device)
                      for n in self.mask_sizes())
        return self.init_layer_states(batch_size, device=device, dtype=dtype), masks

    def draw_masks(self, batch_size: int, device: torch.device) -> tuple[Tensor, ...]:
        """Fresh locked-dropout masks (keep = True) for one call, from the global RNG."""
        p = self.config.dropout
        if not self.training:
            return tuple(torch.ones(batch_size, n, dtype=torch.bool, device=device)
                         for n in self.mask_sizes())
        return tuple(torch.rand(batch_size, n, device=device) >= p for n in self.mask_sizes())

    def example_input(self, batch_size: int, *, device: torch.device | str | None = None) -> Tensor:
        """A valid ``x`` for probing the step's memory: ids and targets, (B, 2) int64."""
        gen = torch.Generator().manual_seed(0)
        return torch.randint(0, self.config.vocab_size, (batch_size, 2), generator=gen).to(device)

    def validate(self, x: Tensor, state: object) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 2 or x.is_floating_point():
            raise ValueError(
                "LanguageModelCell: Expected x to be a (batch, 2) integer tensor of ids and "
                f"targets, got {getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}"
            )

    # --- one step ------------------------------------------------------------------------

    def hidden(self, ids: Tensor, state: LMState) -> tuple[Tensor, LMState]:
        """Embed ``ids`` (B,) and run the stack: the top hidden (B, H) and the next state."""
        c = self.config
        layer_states, masks = state
        x = self.embedding(ids)  # (B, E)
        if self.training and c.embedding_dropout > 0:
            keep = torch.rand(ids.shape[0], 1, device=x.device) >= c.embedding_dropout
            x = x * keep / (1.0 - c.embedding_dropout)
        scale = 1.0 / (1.0 - c.dropout) if self.training else 1.0
        if masks:
            x = x * masks[0] * scale
        new_states: list[State] = []
        for i, (layer, s) in enumerate(zip(self.layers, layer_states, strict=True)):
            if self.training and c.weight_dropout > 0:
                layer = cast(Any, layer)  # an LSTMCell or GRUCell
                w_hh = F.dropout(layer.weight_hh, c.weight_dropout, training=True)
                if c.cell == "lstm":
                    h, cc = torch.lstm_cell(x, cast(tuple[Tensor, Tensor], s), layer.weight_ih,
                                            w_hh, layer.bias_ih, layer.bias_hh)
                    y, s = h, (h, cc)
                else:
                    y = torch.gru_cell(x, cast(Tensor, s), layer.weight_ih, w_hh,
                                       layer.bias_ih, layer.bias_hh)
                    s = y
            else:
                y, s = layer(x, s)
            new_states.append(s)
            x = y * masks[i + 1] * scale if masks else y
        return x, (tuple(new_states), masks)

    def forward(self, x: Tensor, state: LMState) -> tuple[Tensor, LMState]:
        ids, targets = x[:, 0], x[:, 1]
        h, new_state = self.hidden(ids, state)
        logits = self.decoder(h)  # (B, V): only this step's
        loss = F.cross_entropy(logits.float(), targets, reduction="none")
        return loss.to(h.dtype).unsqueeze(1), new_state  # (B, 1)


class LanguageModel(nn.Module):
    r"""Embedding, stacked LSTM/GRU and a (tied) decoder, trained with budgeted BPTT.

    Args:
        config: a :class:`LanguageModelConfig`.
        vocab: optionally, the :class:`~mbrnn.data.Vocab` (saved with the weights).

    Inputs: input_ids, targets=None, state=None
        - **input_ids**: ``(T, B)`` int64 token ids.
        - **targets**: ``(T, B)`` int64 next tokens, or ``None``.
        - **state**: the layer states from a previous call (carried across BPTT windows),
          or ``None`` for zeros.

    Outputs: (loss or logits), final_state
        - with targets: the mean cross-entropy (a scalar), computed inside the budgeted
          recurrence (NOTE [ The loss inside the recurrence ]);
        - without: logits ``(T, B, vocab_size)``.
        - **final_state**: one state per layer (``(h, c)`` for LSTM, ``h`` for GRU).

    Example::

        >>> model = LanguageModel(LanguageModelConfig(vocab_size=65, memory_budget="16MiB"))
        >>> ids = torch.randint(0, 65, (100, 8))
        >>> loss, state = model(ids[:-1], ids[1:])
        >>> loss.backward()
    """

    def __init__(self, config: LanguageModelConfig, vocab: Any = None) -> None:
        super().__init__()
        if not isinstance(config, LanguageModelConfig):
            raise TypeError(f"LanguageModel: config must be a LanguageModelConfig, got {type(config).__name__}")
        if vocab is not None and len(vocab) != config.vocab_size:
            raise ValueError(
                f"LanguageModel: the vocabulary has {len(vocab)} tokens but "
                f"config.vocab_size={config.vocab_size}"
            )
        self.config = config
        self.vocab = vocab
        self.cell = LanguageModelCell(config)
        self.recurrent = Recurrent(self.cell, memory_budget=config.memory_budget, policy=config.policy)

    @property
    def device(self) -> torch.device:
        return self.cell.embedding.weight.device

    def _check_ids(self, name: str, ids: Tensor) -> None:
        if not isinstance(ids, Tensor) or ids.dtype != torch.int64 or ids.dim() != 2:
            raise TypeError(
                f"LanguageModel: {name} must be a (T, B) int64 tensor, got "
                f"{getattr(ids, 'dtype', type(ids).__name__)} of {ids.dim() if isinstance(ids, Tensor) else '?'}D"
            )

    def forward(self, input_ids: Tensor, targets: Tensor | None = None,
                state: tuple[State, ...] | None = None) -> tuple[Tensor, tuple[State, ...]]:
        self._check_ids("input_ids", input_ids)
        T, B = input_ids.shape
        layer_states = self.cell.init_layer_states(B, device=input_ids.device) if state is None else state
        full: LMState = (tuple(layer_states), self.cell.draw_masks(B, input_ids.device))
        if targets is not None:
            self._check_ids("targets", targets)
            if targets.shape != input_ids.shape:
                raise ValueError(
                    f"LanguageModel: targets have shape {tuple(targets.shape)}, expected "
                    f"{tuple(input_ids.shape)} like input_ids"
                )
            x = torch.stack([input_ids, targets], dim=-1)  # (T, B, 2)
            losses, final = self.recurrent(x, full)  # (T, B, 1)
            return losses.mean(), cast(LMState, final)[0]
        logits = []
        s = full
        for t in range(T):
            h, s = self.cell.hidden(input_ids[t], s)
            logits.append(self.cell.decoder(h))
        return torch.stack(logits), s[0]  # (T, B, V)

    @torch.no_grad()
    def generate(self, prompt_ids: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """Sample a continuation of ``prompt_ids`` (1-D, at least one token).

        ``temperature=0`` is greedy decoding; ``top_k`` keeps the k most likely tokens.
        Returns the prompt followed by ``max_new_tokens`` sampled ids (1-D int64).
        """
        if not isinstance(prompt_ids, Tensor) or prompt_ids.dim() != 1 or prompt_ids.numel() == 0:
            raise ValueError("LanguageModel.generate: prompt_ids must be a non-empty 1-D tensor")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"LanguageModel.generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if temperature < 0:
            raise ValueError(f"LanguageModel.generate: temperature must be >= 0, got {temperature}")
        if top_k is not None and not top_k >= 1:
            raise ValueError(f"LanguageModel.generate: top_k must be >= 1, got {top_k}")
        was_training = self.training
        self.eval()
        ids = prompt_ids.to(self.device, torch.int64)
        logits, state = self(ids[:-1].unsqueeze(1)) if ids.numel() > 1 else (None, None)
        out = [ids]
        token = ids[-1:]
        for _ in range(max_new_tokens):
            logits, state = self(token.unsqueeze(1), state=state)
            last = logits[-1, 0].float()  # (V,)
            if temperature == 0:
                token = last.argmax().view(1)
            else:
                last = last / temperature
                if top_k is not None and top_k < last.numel():
                    cutoff = torch.topk(last, top_k).values[-1]
                    last = last.masked_fill(last < cutoff, float("-inf"))
                token = torch.multinomial(F.softmax(last, dim=-1), 1, generator=generator)
            out.append(token)
        self.train(was_training)
        return torch.cat(out)
