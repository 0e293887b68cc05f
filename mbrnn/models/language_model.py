r"""A recurrent language model trained with exact BPTT on fused kernels, within a budget.

``embedding -> stacked LSTM or GRU -> decoder`` (tied to the embedding when the sizes
match), or an adaptive softmax (Grave et al., "Efficient softmax approximation for GPUs",
2017) for large vocabularies, with the regularisers of Merity et al., "Regularizing and
Optimizing LSTM Language Models" (2017): embedding dropout, locked (variational) dropout
(Gal & Ghahramani, 2016) and weight dropout on the hidden-to-hidden weights.
Back-propagation through time runs under ``memory_budget`` (Gruslys et al.,
"Memory-Efficient Backpropagation Through Time", NeurIPS 2016) on the fused multi-step
kernels ``nn.LSTM`` uses.

The training step's machinery (the readout inside the budget, the masks, the segment)
lives in :mod:`mbrnn.models.lm_segment`: NOTE [ The readout inside the budget ].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..budget import Budget, BudgetLike, resolve_budget
from ..errors import InfeasibleBudgetError
from ..nn.rnn import GRU, LSTM
from ..plan.buckets import BUCKET_RATIO
from ..runtime.executor import run_plan
from ..runtime.fit import RecurrencePlan, Working, fit
from ..runtime.fused import MAX_CHUNK, RUN_COST_STEPS, FusedSegment
from ..runtime.memory import MemoryMeter
from ..runtime.probe import FusedSizes, chain_for, measure_working, probe_fused
from ..sizes import format_size
from .lm_segment import (
    Eager,
    LMSegment,
    Masks,
    ReadoutGrad,
    Shape,
    manual_softmax,
    readout_rows,
    softmax_transient,
)

__all__ = ["LanguageModel", "LanguageModelConfig"]

CELLS = ("lstm", "gru")
LEVELS = ("word", "char", "byte")
READOUTS = ("auto", "eager", "graph")


def _check_type(owner: str, name: str, value: object, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise TypeError(f"{owner}: {name} must be {getattr(kind, '__name__', kind)}, got bool")
    if not isinstance(value, kind):
        raise TypeError(f"{owner}: {name} must be {getattr(kind, '__name__', kind)}, got "
                        f"{type(value).__name__}")


@dataclass
class LanguageModelConfig:
    """Architecture of a :class:`LanguageModel` (what ``config.json`` holds).

    Args:
        vocab_size: number of tokens (``len(vocab)``).
        level: ``"word"``, ``"char"`` or ``"byte"``: recorded for evaluation (ppl or bpc).
        cell: ``"lstm"`` or ``"gru"``.
        embedding_size, hidden_size, num_layers: the sizes.
        dropout: locked dropout on the embeddings, between layers and before the readout
            (one mask per sequence).
        embedding_dropout: drops whole words of the vocabulary (AWD-LSTM).
        weight_dropout: DropConnect on the hidden-to-hidden weights, drawn per call.
        tie_weights: share the decoder's weight with the embedding when
            ``embedding_size == hidden_size`` (not with an adaptive softmax).
        adaptive_cutoffs: the adaptive softmax's cluster cutoffs, e.g. ``[2000, 10000]``
            (``[]``: a full softmax); ``adaptive_div_value``: its size ratio.
        memory_budget: budget of a training step's BPTT (``None``: plain autograd): an
            int in bytes, a size such as ``"64MiB"``, ``"auto"`` or ``"10%"``.
        policy: the planner policy (``"auto"``).
        readout: how the budgeted path back-propagates the readout: ``"eager"``,
            ``"graph"`` or ``"auto"`` (eager where it fits): NOTE [ The readout inside
            the budget ].
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
    adaptive_cutoffs: list[int] = field(default_factory=list)
    adaptive_div_value: float = 4.0
    readout: str = "auto"

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
        Budget.parse(self.memory_budget, name=f"{owner}: memory_budget")
        cut = self.adaptive_cutoffs
        if not isinstance(cut, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in cut):
            raise TypeError(f"{owner}: adaptive_cutoffs must be a list of ints, got {cut!r}")
        if cut and (sorted(set(cut)) != cut or cut[0] < 1 or cut[-1] >= self.vocab_size):
            raise ValueError(f"{owner}: adaptive_cutoffs={cut} must increase strictly from >= 1 "
                             f"to below vocab_size={self.vocab_size}, e.g. [2000, 10000]")
        if self.readout not in READOUTS:
            raise ValueError(f"{owner}: readout must be one of {READOUTS}, got {self.readout!r}")
        _check_type(owner, "adaptive_div_value", self.adaptive_div_value, (int, float))
        if not self.adaptive_div_value > 0:
            raise ValueError(f"{owner}: adaptive_div_value must be > 0, "
                             f"got {self.adaptive_div_value}")

    @property
    def adaptive(self) -> bool:
        return bool(self.adaptive_cutoffs)

    @property
    def tied(self) -> bool:
        """Whether the decoder shares the embedding's weight."""
        return self.tie_weights and self.embedding_size == self.hidden_size and not self.adaptive

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LanguageModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"LanguageModelConfig: unknown keys {unknown}; expected some of "
                             f"{sorted(known)}")
        return cls(**data)


# A layer's state: (h, c) for LSTM, h for GRU, each (B, H).
LayerState = Any


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
        - with targets: the mean cross-entropy (a scalar). With ``memory_budget`` and
          gradients on, the whole training step (forward, loss, backward) stays within
          it: NOTE [ The readout inside the budget ].
        - without: logits ``(T, B, vocab_size)`` (log-probabilities with an adaptive
          softmax).
        - **final_state**: one state per layer (``(h, c)`` for LSTM, ``h`` for GRU).

    Attributes:
        last_plan: the last budgeted call's plan (``None`` after a plain call).

    Example::

        >>> model = LanguageModel(LanguageModelConfig(vocab_size=65, memory_budget="16MiB"))
        >>> ids = torch.randint(0, 65, (100, 8))
        >>> loss, state = model(ids[:-1], ids[1:])
        >>> loss.backward()
    """

    def __init__(self, config: LanguageModelConfig, vocab: Any = None) -> None:
        super().__init__()
        if not isinstance(config, LanguageModelConfig):
            raise TypeError(f"LanguageModel: config must be a LanguageModelConfig, got "
                            f"{type(config).__name__}")
        if vocab is not None and len(vocab) != config.vocab_size:
            raise ValueError(f"LanguageModel: the vocabulary has {len(vocab)} tokens but "
                             f"config.vocab_size={config.vocab_size}")
        self.config = config
        self.vocab = vocab
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size)
        make = LSTM if c.cell == "lstm" else GRU
        self.rnn = make(c.embedding_size, c.hidden_size, c.num_layers)
        self.decoder: nn.Linear | None = None
        self.adaptive: nn.AdaptiveLogSoftmaxWithLoss | None = None
        if c.adaptive:
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
                c.hidden_size, c.vocab_size, c.adaptive_cutoffs, div_value=c.adaptive_div_value)
        else:
            self.decoder = nn.Linear(c.hidden_size, c.vocab_size)
            nn.init.zeros_(self.decoder.bias)
            if c.tied:
                self.decoder.weight = self.embedding.weight
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self._register_load_state_dict_pre_hook(_upgrade_state_dict, with_module=True)
        self._sizes: dict[tuple[Any, ...], tuple[FusedSizes, Working, tuple[int, int]]] = {}
        self._budgets: dict[tuple[object, ...], int] = {}
        self.last_plan: RecurrencePlan | None = None
        self.bucket_ratio = BUCKET_RATIO

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "last_plan": None}  # pyright: ignore[reportAttributeAccessIssue]

    # --- pieces ----------------------------------------------------------------------------

    def _readout_params(self) -> list[Tensor]:
        head = self.adaptive if self.adaptive is not None else self.decoder
        assert head is not None
        return list(head.parameters())

    def readout(self, y: Tensor, targets: Tensor) -> Tensor:
        """Per-example cross-entropy of ``y`` (..., H) against ``targets`` (...)."""
        flat, tgt = y.reshape(-1, y.shape[-1]), targets.reshape(-1)
        if self.adaptive is not None:
            loss = -self.adaptive(flat, tgt).output
        else:
            assert self.decoder is not None
            logits = self.decoder(flat)
            if logits.dtype in (torch.float16, torch.bfloat16):  # a softmax in half overflows
                logits = logits.float()
            loss = F.cross_entropy(logits, tgt, reduction="none")
        return loss.to(y.dtype).view(targets.shape)

    def log_probs(self, y: Tensor) -> Tensor:
        """``(..., vocab)`` scores: logits, or log-probabilities with an adaptive softmax."""
        if self.adaptive is not None:
            return self.adaptive.log_prob(y.reshape(-1, y.shape[-1])).view(*y.shape[:-1], -1)
        assert self.decoder is not None
        return self.decoder(y)

    def _draw_masks(self, B: int) -> Masks:
        c = self.config
        if not self.training:
            return Masks(None, None, None, None)
        dev, dt = self.device, self.embedding.weight.dtype

        def locked(n: int) -> Tensor | None:
            if c.dropout == 0:
                return None
            return torch.empty(B, n, device=dev, dtype=dt).bernoulli_(1 - c.dropout) / (1 - c.dropout)

        words = None
        if c.embedding_dropout > 0:
            words = (torch.empty(c.vocab_size, device=dev, dtype=dt)
                     .bernoulli_(1 - c.embedding_dropout) / (1 - c.embedding_dropout))
        emb = locked(c.embedding_size)
        between = [locked(c.hidden_size) for _ in range(c.num_layers - 1)]
        layers = [m for m in between if m is not None] or None
        return Masks(emb, layers, locked(c.hidden_size), words)

    def _weights(self) -> list[list[Tensor]]:
        """Each layer's kernel weights, ``weight_hh`` dropped once per call in training."""
        p = self.config.weight_dropout
        out = []
        for names in self.rnn._all_weights:
            ws = [getattr(self.rnn, n) for n in names]
            if self.training and p > 0:
                ws[1] = F.dropout(ws[1], p, training=True)  # DropConnect (Wan et al., 2013)
            out.append(ws)
        return out

    def embed(self, ids: Tensor, masks: Masks, weight: Tensor | None = None) -> Tensor:
        """Embeddings of ``ids`` with the call's masks. With ``weight`` (the budgeted path)
        the lookup's gradient is sparse: a kept run's share is its rows, not a dense
        ``(vocab, E)`` tensor per run."""
        x = self.embedding(ids) if weight is None else F.embedding(ids, weight, sparse=True)
        if masks.words is not None:
            x = x * masks.words[ids].unsqueeze(-1)
        if masks.embedding is not None:
            x = x * masks.embedding
        return x

    def _segment(self, masks: Masks, weights: list[list[Tensor]]) -> FusedSegment:
        rnn = self.rnn
        return FusedSegment(rnn.mode, weights, has_biases=rnn.bias, hidden_out=rnn.hidden_size,
                            dropout=0.0, chunk=MAX_CHUNK, layer_masks=masks.layers,
                            quiet=True)

    # --- state -----------------------------------------------------------------------------

    def _flat_state(self, state: Sequence[LayerState] | None, B: int) -> tuple[Tensor, ...]:
        c = self.config
        if state is None:
            z = torch.zeros(c.num_layers, B, c.hidden_size, device=self.device,
                            dtype=self.embedding.weight.dtype)
            return (z, torch.zeros_like(z)) if c.cell == "lstm" else (z,)
        if len(state) != c.num_layers:
            raise ValueError(f"LanguageModel: state has {len(state)} layers, expected "
                             f"{c.num_layers}")
        if c.cell == "lstm":
            return (torch.stack([s[0] for s in state]), torch.stack([s[1] for s in state]))
        return (torch.stack(list(state)),)

    def _layer_states(self, flat: Sequence[Tensor]) -> tuple[LayerState, ...]:
        if self.config.cell == "lstm":
            h, c = flat
            return tuple((h[i], c[i]) for i in range(h.shape[0]))
        return tuple(flat[0][i] for i in range(flat[0].shape[0]))

    # --- forward ---------------------------------------------------------------------------

    def _check_ids(self, name: str, ids: object) -> Tensor:
        if not isinstance(ids, Tensor) or ids.dtype != torch.int64 or ids.dim() != 2:
            got = (f"{ids.dtype} of {ids.dim()}D" if isinstance(ids, Tensor)
                   else type(ids).__name__)
            raise TypeError(f"LanguageModel: {name} must be a (T, B) int64 tensor, got {got}")
        return ids

    def forward(self, input_ids: Tensor, targets: Tensor | None = None,
                state: Sequence[LayerState] | None = None
                ) -> tuple[Tensor, tuple[LayerState, ...]]:
        ids = self._check_ids("input_ids", input_ids)
        T, B = ids.shape
        flat = self._flat_state(state, B)
        masks = self._draw_masks(B)
        if targets is not None:
            targets = self._check_ids("targets", targets)
            if targets.shape != ids.shape:
                raise ValueError(f"LanguageModel: targets have shape {tuple(targets.shape)}, "
                                 f"expected {tuple(ids.shape)} like input_ids")
        budgeted = (targets is not None and self.config.memory_budget is not None
                    and torch.is_grad_enabled()
                    and any(p.requires_grad for p in self.parameters()))
        self.last_plan = None
        if budgeted:
            assert targets is not None
            loss, final = self._budgeted(ids, targets, flat, masks)
            return loss, self._layer_states(final)
        seg = self._segment(masks, self._weights())
        y, final = seg._piece(0, self.embed(ids, masks), flat, None)  # (T, B, H): fused
        if masks.output is not None:
            y = y * masks.output
        if targets is None:
            return self.log_probs(y), self._layer_states(final)
        if torch.is_grad_enabled():  # plain autograd, as plain PyTorch writes it
            return self.readout(y, targets).mean(), self._layer_states(final)
        # evaluation: a few steps of logits at a time, never (T, B, V) at once
        step = max(1, 2**24 // max(1, B * self.config.vocab_size))
        total = sum(self.readout(y[i:i + step], targets[i:i + step]).sum() for i in range(0, T, step))
        return cast(Tensor, total) / (T * B), self._layer_states(final)

    # --- the budgeted path -----------------------------------------------------------------

    def _budgeted(self, ids: Tensor, targets: Tensor, flat: tuple[Tensor, ...], masks: Masks
                  ) -> tuple[Tensor, tuple[Tensor, ...]]:
        T, B = ids.shape
        budget = resolve_budget("LanguageModel", self.config.memory_budget, ids.device,
                                self._budgets, (T, B, ids.device))
        assert budget is not None
        weights = self._weights()
        rp, eager, chunk, shape = self._choose(T, B, budget, masks)
        grads = Eager.make(self, T, B) if eager else None
        seg = LMSegment(self, masks, weights, grads, targets, shape)
        seg.chunk = chunk
        x = torch.stack([ids, targets], dim=-1)  # (T, B, 2)
        losses, final, _ = run_plan(seg, x, flat, seg.params, rp.plan, preserve_rng_state=False)
        self.last_plan = rp
        if grads is None:
            return losses.mean(), final
        # eager: the runs' zeros carry the readout's gradient, the buffer holds the losses
        loss = (losses.squeeze(-1) + grads.losses).mean()
        # and hand the readout's parameter gradients back
        return ReadoutGrad.apply(loss, grads, T * B, *self._readout_params()), final

    def _choose(self, T: int, B: int, budget: int, masks: Masks
                ) -> tuple[RecurrencePlan, bool, int, Shape | None]:
        """``(plan, eager, chunk, readout shape)``: the eager readout where its ``(T, B, H)``
        gradient takes at most a quarter of the budget and a plan fits beside it (it never
        recomputes the readout), else the readout in the kept runs' graph: NOTE [ The
        readout inside the budget ]."""
        elt = self.embedding.weight.element_size()
        fits = 4 * T * B * self.config.hidden_size * elt <= budget
        modes = {"eager": [True], "graph": [False]}.get(self.config.readout,
                                                         [True, False] if fits else [False])
        failed: list[InfeasibleBudgetError] = []
        for eager in modes:
            try:
                rp, chunk, shape = self._plan(T, B, budget, eager, masks)
            except InfeasibleBudgetError as e:
                failed.append(e)
                continue
            return rp, eager, chunk, shape
        raise min(failed, key=lambda e: e.minimum)

    def _fixed_bytes(self, T: int, B: int, eager: bool) -> int:
        """What a call holds outside the recurrence's plan: the ids and targets it runs on
        ``(T, B, 2)``, the per-example losses and their gradient, and with the eager readout
        its buffers: outputs (then their gradients), losses, and the gradients of the
        readout's parameters (accumulated, then handed back)."""
        elt = self.embedding.weight.element_size()
        io = T * B * (2 * 8 + 2 * elt)
        if not eager:
            return io
        params = sum(p.numel() * p.element_size() for p in self._readout_params())
        return io + T * B * (self.config.hidden_size + 2) * elt + params

    def _readout_shapes(self, T: int, B: int, budget: int, transient: tuple[int, int]
                        ) -> list[Shape]:
        """The eager readout's shapes to try, largest first: for an eighth of the budget,
        a 32nd, a 128th, and the smallest.

        By hand (:func:`manual_softmax`): the whole vocabulary at once where that reads out
        256 rows or more a call, else two passes over chunks of it with up to 2,048 rows a
        call (a few rows a call leave the matrix products bound by reading the decoder).
        Through autograd: as many steps as the probed transient ``(base, per step)`` allows.
        """
        c = self.config
        V, H = c.vocab_size, c.hidden_size
        elt = self.embedding.weight.element_size()
        manual = manual_softmax(self, self.embedding.weight.dtype, self.device)
        small = Shape(1, min(V, 128) if manual else V)

        def fitting(room: int) -> Shape:
            if not manual:
                base, per = transient
                return Shape(max(1, min(256, T, (room - base) // max(1, per))), V)
            rows = room // max(1, softmax_transient(1, H, V, Shape(1, V), elt))
            if rows >= min(T * B, 256):
                return Shape(max(1, min(256, T, rows // B)), V)
            steps = max(1, min(T, 2048 // B))
            while steps > 1 and softmax_transient(B, H, V, Shape(steps, 256), elt) > room:
                steps //= 2
            left = room - softmax_transient(B, H, V, Shape(steps, 0), elt)
            return Shape(steps, max(small.chunk, min(V, left // (elt * (steps * B + 1)))))

        return list(dict.fromkeys([*(fitting(budget // k) for k in (8, 32, 128)), small]))

    def _readout_bytes(self, B: int, shape: Shape, transient: tuple[int, int]) -> int:
        if manual_softmax(self, self.embedding.weight.dtype, self.device):
            c = self.config
            return softmax_transient(B, c.hidden_size, c.vocab_size, shape,
                                     self.embedding.weight.element_size())
        return transient[0] + shape.steps * transient[1]

    def _planning_masks(self, B: int) -> Masks:
        """Masks of a training call's shapes, without drawing from the RNG (for planning:
        memory depends on which masks exist, not on their values)."""
        c, dev, dt = self.config, self.device, self.embedding.weight.dtype
        if not self.training:
            return Masks(None, None, None, None)

        def ones(n: int, on: bool) -> Tensor | None:
            return torch.ones(B, n, device=dev, dtype=dt) if on else None

        drop = c.dropout > 0
        layers = [torch.ones(B, c.hidden_size, device=dev, dtype=dt)
                  for _ in range(c.num_layers - 1)] if drop else []
        words = torch.ones(c.vocab_size, device=dev, dtype=dt) if c.embedding_dropout > 0 else None
        return Masks(ones(c.embedding_size, drop), layers or None, ones(c.hidden_size, drop),
                      words)

    def _probe_lengths(self, B: int, budget: int, eager: bool) -> tuple[int, int, int]:
        """The probe's three run lengths: the usual ``(1, 8, 40)`` unless a run of 40 steps
        (oneDNN's workspace, about 18 floats per hidden unit and layer, and in the graph
        the ``(B, vocab)`` logits thrice) would take more than a quarter of the budget
        (4 MiB at least): then shorter, so that the probe's own peak stays inside it."""
        c = self.config
        elt = self.embedding.weight.element_size()
        step = B * elt * (18 * c.hidden_size * c.num_layers + (0 if eager else 3 * c.vocab_size))
        longest = max(4, min(40, max(budget // 4, 4 * 2**20) // max(1, step)))
        return (1, max(2, longest // 5), longest)

    def _probe(self, B: int, eager: bool, masks: Masks, budget: int
               ) -> tuple[FusedSizes, Working, tuple[int, int]]:
        """Sizes and working set of the model's recurrence, readout included, and the
        eager readout's transient ``(base, per step of a group)``: probed once per batch
        size, dtype, mode, readout kind and probe lengths, never per length."""
        dev, dt = self.device, self.embedding.weight.dtype
        lengths = self._probe_lengths(B, budget, eager)
        key = (B, dev, dt, self.training, eager, masks.layers is not None,
               self.config.weight_dropout > 0, torch.is_autocast_enabled(dev.type), lengths)
        hit = self._sizes.get(key)
        if hit is not None:
            return hit
        c = self.config
        gen = torch.Generator().manual_seed(0)

        def ids(L: int) -> Tensor:
            return torch.randint(0, c.vocab_size, (L, B, 2), generator=gen).to(dev)

        shapes = [(c.num_layers, B, c.hidden_size)] * (2 if c.cell == "lstm" else 1)
        # detached aliases of the weights: the probe must not back-propagate into a call's
        # weight dropout, whose graph the call itself needs
        weights = [[getattr(self.rnn, n).detach().requires_grad_() for n in names]
                   for names in self.rnn._all_weights]
        # the probe never reads out (no targets): the readout is charged apart
        probe = LMSegment(self, masks, weights,
                           Eager.make(self, max(lengths), B, accumulate=False) if eager else None)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            sizes, example = probe_fused(probe, c.embedding_size, shapes, dev, dt,
                                         make_input=ids, lengths=lengths)
            probe.chunk = probe.keep_chunk = 1
            working = measure_working(probe, ids(1)[0], tuple(example[1:]), probe.params,
                                      chain_for(sizes, 4, chunk=1, keep_chunk=1))
            transient = (0, 0)
            if eager and not manual_softmax(self, dt, dev):
                one, four = self._measure_readout(B, 1), self._measure_readout(B, 4)
                per = max(0, math.ceil((four - one) / 3))
                transient = (max(0, one - per), per)
        hit = (sizes, working, transient)
        self._sizes[key] = hit
        return hit

    def _measure_readout(self, B: int, steps: int) -> int:
        """The measured transient of the readout through autograd over ``steps`` steps."""
        H, ref = self.config.hidden_size, self.embedding.weight
        rows = torch.randn(steps, B, H, generator=torch.Generator().manual_seed(0),
                           dtype=ref.dtype).to(ref.device)
        targets = torch.zeros((steps, B), dtype=torch.int64, device=ref.device)
        with MemoryMeter(ref.device) as meter:
            readout_rows(self, rows, targets, None, self.config.vocab_size, [])
        return meter.peak

    def _plan(self, T: int, B: int, budget: int, eager: bool, masks: Masks
              ) -> tuple[RecurrencePlan, int, Shape | None]:
        """``(plan, chunk, readout shape)`` for one readout kind."""
        sizes, working, transient = self._probe(B, eager, masks, budget)
        shapes: list[Shape | None] = [None]
        if eager:
            shapes = list(self._readout_shapes(T, B, budget, transient))
        chunk = MAX_CHUNK
        if sizes.sweep_step_bytes > 0:  # a sweep's pieces: a small share of the budget
            chunk = max(1, min(MAX_CHUNK, budget // (32 * sizes.sweep_step_bytes)))
        context = f"seq_len={T}, batch {B}"
        # the smallest budgets sweep one step a call and read out the least at a time
        tries = list(dict.fromkeys((c, r) for r in shapes for c in (chunk, 1)))
        for k, (c, shape) in enumerate(tries):
            fixed = self._fixed_bytes(T, B, eager)
            if shape is not None:
                fixed += self._readout_bytes(B, shape, transient)
            try:
                rp = fit(chain_for(sizes, T, chunk=c, keep_chunk=MAX_CHUNK),
                         max(0, budget - fixed), self.config.policy, working,
                         run_cost=RUN_COST_STEPS, owner="LanguageModel", context=context,
                         bucket_ratio=self.bucket_ratio)
            except InfeasibleBudgetError as e:
                if k + 1 < len(tries):
                    continue
                least = int(e.minimum) + fixed
                raise InfeasibleBudgetError(
                    f"LanguageModel: memory_budget={format_size(budget)} is below the minimum "
                    f"{format_size(least)} for {context} ({format_size(fixed)} of it outside "
                    f"the recurrence: ids, losses, the readout's gradients); raise the budget "
                    f"to at least "
                    f"{format_size(least)} or shorten the window (bptt)",
                    minimum=least) from None
            return RecurrencePlan(rp.plan, budget, rp.working + fixed, rp.kept_peak), c, shape
        raise AssertionError("unreachable")  # pragma: no cover

    def plan_for(self, seq_len: int, batch_size: int, *,
                 memory_budget: BudgetLike = "__model__",
                 device: torch.device | str | None = None) -> RecurrencePlan:
        """The plan a training call with this length and batch would run (probes once;
        draws nothing from the RNG); ``device``, when given, must be the model's."""
        if device is not None and torch.device(device) != self.device:
            raise ValueError(f"LanguageModel.plan_for: device={device} but the model is on "
                             f"{self.device}; move the model first")
        for arg, value in (("seq_len", seq_len), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LanguageModel.plan_for: {arg} must be an int >= 1, got "
                                 f"{value!r}")
        arg = self.config.memory_budget if memory_budget == "__model__" else memory_budget
        budget = resolve_budget("LanguageModel", arg, self.device, self._budgets,
                                (seq_len, batch_size, self.device))
        if budget is None:
            budget = 2**62
        return self._choose(seq_len, batch_size, budget, self._planning_masks(batch_size))[0]

    @property
    def memory_budget(self) -> BudgetLike:
        """The config's budget (what :func:`mbrnn.training` checks before training)."""
        return self.config.memory_budget

    @memory_budget.setter
    def memory_budget(self, value: BudgetLike) -> None:
        Budget.parse(value, name="LanguageModel: memory_budget")
        self.config.memory_budget = value  # type: ignore[assignment]

    def minimum_budget(self, seq_len: int, batch_size: int) -> int:
        """The smallest ``memory_budget`` (bytes) a training call of this shape accepts
        (the readout in the kept runs' graph, which needs no ``(T, B, H)`` gradient)."""
        try:
            self.plan_for(seq_len, batch_size, memory_budget=0)
        except InfeasibleBudgetError as e:
            return int(e.minimum)
        return 0

    # --- sampling --------------------------------------------------------------------------

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
            raise ValueError(f"LanguageModel.generate: max_new_tokens must be an int >= 0, got "
                             f"{max_new_tokens!r}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
                and temperature >= 0):
            raise ValueError(f"LanguageModel.generate: temperature must be a finite number >= "
                             f"0, got {temperature!r}")
        if top_k is not None and not top_k >= 1:
            raise ValueError(f"LanguageModel.generate: top_k must be >= 1, got {top_k}")
        was_training = self.training
        self.eval()
        ids = prompt_ids.to(self.device, torch.int64)
        logits, state = self(ids.unsqueeze(1))  # the whole prompt: its last step predicts
        out = [ids]
        last = logits[-1, 0].float()
        for i in range(max_new_tokens):
            if temperature == 0:
                token = last.argmax().view(1)
            else:
                scaled = last / temperature
                if top_k is not None and top_k < scaled.numel():
                    cutoff = torch.topk(scaled, top_k).values[-1]
                    scaled = scaled.masked_fill(scaled < cutoff, float("-inf"))
                token = torch.multinomial(F.softmax(scaled, dim=-1), 1, generator=generator)
            out.append(token)
            if i + 1 < max_new_tokens:
                logits, state = self(token.unsqueeze(1), state=state)
                last = logits[-1, 0].float()
        self.train(was_training)
        return torch.cat(out)


def _upgrade_state_dict(module: nn.Module, state_dict: dict[str, Any], prefix: str,
                        *args: Any) -> None:
    """Keys of format-1 checkpoints (a per-step cell, ``cell.layers.{i}.weight_ih``) to
    this model's (``rnn.weight_ih_l{i}``): old zoo models and training checkpoints load."""
    for key in list(state_dict):
        if not key.startswith(prefix + "cell."):
            continue
        rest = key[len(prefix) + len("cell."):]
        if rest.startswith("layers."):
            _, i, name = rest.split(".", 2)
            new = f"rnn.{name}_l{i}"
        else:
            new = rest  # embedding.weight, decoder.weight, decoder.bias
        state_dict[prefix + new] = state_dict.pop(key)
    lm = cast(LanguageModel, module)
    if lm.config.tied:  # a file may hold the shared weight under one of its two names
        for a, b in (("embedding.weight", "decoder.weight"), ("decoder.weight", "embedding.weight")):
            if prefix + a in state_dict and prefix + b not in state_dict:
                state_dict[prefix + b] = state_dict[prefix + a]

