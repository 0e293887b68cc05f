"""A :class:`~mbrnn.runtime.executor.Segment` that runs whole runs in fused kernel calls.

The executor drives it for ``mbrnn.LSTM``/``GRU``/``RNN`` and the zoo's models: a run of
steps ``t0+1 .. t0+L`` is one ``torch._VF.lstm`` (``gru``, ``rnn_tanh``, ``rnn_relu``) call
for all layers at once, the kernel ``nn.LSTM`` itself uses (cuDNN on CUDA, oneDNN or ATen
on CPU).

NOTE [ Fused segments ]
The executor (:mod:`mbrnn.runtime.executor`) drives a :class:`~mbrnn.runtime.executor.Segment`:
``FusedSegment.run`` gets a whole run ``t0+1 .. t0+L`` and makes one ``torch._VF.lstm``
(``gru``, ``rnn_tanh``, ``rnn_relu``) call for it, all layers at once. A run whose
internal states are kept is one call under autograd (calls of at most ``keep_chunk`` =
1,024 steps beyond that: NOTE [ Kept runs in pieces ]), hence one graph; a sweep that keeps
nothing runs without autograd in pieces of ``chunk`` steps, because a fused call allocates
its whole output (and, on ATen's CPU path, its input projections) up front: a piece of
``chunk`` steps bounds that transient memory, and the plan counts it.

NOTE [ What a fused run keeps ]
A fused call keeps a per-step part (the planner's ``internal_size``) and a per-call part
(oneDNN's workspace header, cuDNN's reserve header, the final states), and allocates
transient memory while it runs: its whole output without autograd, and in its backward
about one ``(B, H)`` tensor per step beside the weights' gradients. ``probe_fused`` in
:mod:`mbrnn.runtime.probe` measures all four; they become the chain's ``run_size``,
``sweep_size`` and ``backward_step_size`` (:func:`~mbrnn.runtime.probe.chain_for`),
which :func:`~mbrnn.plan.simulate` counts, so the prediction holds them.

NOTE [ Kept runs in pieces ]
The backward transient grows with a call's length, so a kept run longer than
``keep_chunk`` (1,024) steps, such as storing everything, is cut into calls of at most
that many (the chain's ``call_steps``), which bounds it. The pieces are one autograd
graph: the run's outputs are returned as :class:`~mbrnn.runtime.executor.Pieces`,
without a concatenated copy.

NOTE [ Dropout between layers ]
A fused kernel draws its dropout masks internally; they cannot be replayed on
recomputation. With ``dropout > 0`` in training mode a segment runs layer by layer (one
fused call per layer) and multiplies the output of every layer but the last by an
explicit mask. Step ``t``'s masks for all layers are drawn with one ``bernoulli_`` call
right after the executor seeds the generators for step ``t`` (``seed(t)``), so a
recomputed step draws exactly its first masks, however the plan cuts the runs. The masks
are not torch's (``nn.LSTM`` draws its own), but have the same distribution.

NOTE [ Packed sequences ]
A ``PackedSequence`` is unpacked to a padded batch sorted by decreasing length. The
state at step ``t`` of sequence ``b`` is its state at step ``min(t, len_b)``: a run that
reaches the end of some sequences calls the kernel's packed variant on the sequences
still running and passes the finished ones' states through unchanged, so the final state
holds each sequence's last valid step. The reverse direction of a bidirectional module
runs forward in time over each sequence reversed within its own length. Outputs at
padded positions are zeros and never feed a valid output or gradient.

NOTE [ Per-run time ]
A fused call costs a fixed time of its own beside its steps (oneDNN reorders the weights
and cuDNN sets up its descriptors on every call). ``auto`` ranks plans by
``forward_steps + run_cost_steps * runs`` (:func:`mbrnn.plan.rank`), so it trades a few
recomputed steps for many fewer calls; ``scripts/bench_calls.py`` measures the cost.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import _VF, Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .executor import CheckFn, Pieces, SeedFn, Segment

__all__ = ["MAX_CHUNK", "RUN_COST_STEPS", "FusedSegment"]

_KERNELS: dict[str, Callable[..., Any]] = {
    "GRU": _VF.gru,
    "RNN_TANH": _VF.rnn_tanh,
    "RNN_RELU": _VF.rnn_relu,
}
_WEIGHTS_WARNING = "RNN module weights are not part of single contiguous chunk of memory"
#: The most steps one kept fused call runs (NOTE [ Kept runs in pieces ]).
MAX_CHUNK = 1024
#: What ``auto`` charges per fused call, in forward steps: NOTE [ Per-run time ].
RUN_COST_STEPS = 2


class FusedSegment(Segment):
    """Steps ``t0+1 .. t0+L`` of one direction of some layers, in fused kernel calls.

    State: LSTM ``(h (layers, B, H_out), c (layers, B, H))``, GRU/RNN ``(h,)``.
    ``run_cost_steps``: what :func:`~mbrnn.runtime.fit.fit`'s ``auto`` charges per call.
    """

    run_cost_steps = RUN_COST_STEPS

    def __init__(
        self,
        mode: str,
        weights: Sequence[Sequence[Tensor]],
        *,
        has_biases: bool,
        hidden_out: int,
        dropout: float,
        chunk: int,
        keep_chunk: int = MAX_CHUNK,
        lengths: Tensor | None = None,
        force_packed: bool = False,
        quiet: bool = False,
        layer_masks: Sequence[Tensor] | None = None,
    ) -> None:
        self.mode = mode
        self.weights = [list(w) for w in weights]
        self.flat = [w for ws in self.weights for w in ws]
        self.num_layers = len(self.weights)
        self.has_biases = has_biases
        self.hidden_out = hidden_out
        self.dropout = dropout if self.num_layers > 1 else 0.0
        self.chunk = chunk
        self.keep_chunk = keep_chunk
        self.lengths = lengths  # sorted decreasing, CPU int64, or None: every step valid
        self.active: list[int] | None = None  # sequences still running at step t+1
        if lengths is not None:
            steps = torch.arange(int(lengths[0])).unsqueeze(1)
            self.active = (lengths.unsqueeze(0) > steps).sum(1).tolist()
        self.force_packed = force_packed
        self.quiet = quiet
        # locked (variational) dropout: one (B, H) mask per gap between layers, the same at
        # every step, so recomputation needs no replay (Gal & Ghahramani, 2016)
        self.layer_masks = list(layer_masks) if layer_masks is not None else None
        if self.layer_masks is not None and len(self.layer_masks) != self.num_layers - 1:
            raise ValueError(f"FusedSegment: {len(self.layer_masks)} layer masks for "
                             f"{self.num_layers} layers; give one per gap between layers")
        self.first_pass = False  # set by run(): whether the executor's first sweep runs it

    @property
    def grad_params(self) -> list[Tensor]:
        """Every tensor a kept run's graph uses that may need a gradient (the probe
        differentiates them): here the kernels' weights."""
        return self.flat

    # --- one kernel call -----------------------------------------------------------------

    def _kernel(
        self, x: Tensor, hx: tuple[Tensor, ...], weights: list[Tensor], layers: int,
        batch_sizes: Tensor | None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        train = torch.is_grad_enabled()  # no-grad sweeps run the cheaper inference path
        with warnings.catch_warnings():
            if self.quiet and x.is_cuda:  # cuDNN copies a layer's weights out of the flat buffer
                warnings.filterwarnings("ignore", message=_WEIGHTS_WARNING)
            if self.mode == "LSTM":
                if batch_sizes is None:
                    out, h, c = _VF.lstm(x, hx, weights, self.has_biases, layers, 0.0, train,
                                         False, False)
                else:
                    out, h, c = _VF.lstm(x, batch_sizes, hx, weights, self.has_biases, layers,
                                         0.0, train, False)
                return out, (h, c)
            fn = _KERNELS[self.mode]
            if batch_sizes is None:
                out, h = fn(x, hx[0], weights, self.has_biases, layers, 0.0, train, False, False)
            else:
                out, h = fn(x, batch_sizes, hx[0], weights, self.has_biases, layers, 0.0,
                            train, False)
            return out, (h,)

    def _masks(self, t0: int, L: int, B: int, ref: Tensor, seed: SeedFn | None) -> Tensor | None:
        """Step ``t``'s inter-layer dropout masks, drawn right after ``seed(t)``: (L, layers-1, B, H)."""
        if self.dropout == 0.0:
            return None
        m = torch.empty((L, self.num_layers - 1, B, self.hidden_out), dtype=ref.dtype,
                        device=ref.device)
        keep = 1.0 - self.dropout
        if seed is None:
            m.bernoulli_(keep)
        else:
            for i in range(L):
                seed(t0 + i + 1)
                m[i].bernoulli_(keep)
        return m.mul_(1.0 / keep) if keep > 0 else m.zero_()

    def _piece(
        self, t0: int, x: Tensor, state: tuple[Tensor, ...], seed: SeedFn | None,
        need_y: bool = True,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One call (or one per layer) over steps ``t0+1 .. t0+L``. ``need_y=False`` says
        nobody reads the outputs (a re-run sweep); a subclass may skip work for them."""
        L, B = x.shape[0], x.shape[1]
        k, lens = B, None
        if self.active is not None and self.lengths is not None:
            k = self.active[t0]
            if self.active[t0 + L - 1] != k or self.force_packed:
                lens = (self.lengths[:k] - t0).clamp_(max=L)
        xk = x if k == B else x[:, :k]
        sk = state if k == B else tuple(s[:, :k].contiguous() for s in state)
        masks = self._masks(t0, L, B, x, seed)
        if masks is None and self.layer_masks is not None:
            masks = torch.stack(self.layer_masks, 0).unsqueeze(0).expand(L, -1, -1, -1)
        bs = None
        if lens is not None:
            packed = pack_padded_sequence(xk, lens, enforce_sorted=True)
            xk, bs = packed.data, packed.batch_sizes
        if masks is None:
            out, new = self._kernel(xk, sk, self.flat, self.num_layers, bs)
        else:
            finals: list[tuple[Tensor, ...]] = []
            out = xk
            for layer, w in enumerate(self.weights):
                if layer > 0:
                    m = masks[:, layer - 1, :k]
                    if lens is not None:
                        m = pack_padded_sequence(m, lens, enforce_sorted=True).data
                    out = out * m
                hx = tuple(s[layer : layer + 1] for s in sk)
                out, fin = self._kernel(out, hx, w, 1, bs)
                finals.append(fin)
            new = tuple(torch.cat(parts, 0) for parts in zip(*finals, strict=True))
        if bs is not None:
            out = pad_packed_sequence(PackedSequence(out, bs), total_length=L)[0]
        if k < B:  # the finished sequences: zero outputs, states passed through
            out = torch.cat([out, out.new_zeros((L, B - k, out.shape[2]))], 1)
            new = tuple(torch.cat([n, s[:, k:]], 1) for n, s in zip(new, state, strict=True))
        return out, new

    def run(
        self,
        t0: int,
        x: Tensor,
        state: tuple[Tensor, ...],
        *,
        out: Tensor | None,
        keep_y: bool,
        seed: SeedFn | None,
        check: CheckFn | None,
        first_pass: bool = False,
    ) -> tuple[Tensor | list[Tensor] | None, tuple[Tensor, ...]]:
        L = x.shape[0]
        self.first_pass = first_pass
        step = max(1, self.keep_chunk if torch.is_grad_enabled() else self.chunk)
        ys: list[Tensor] = []
        y: Tensor | None = None
        for i in range(0, L, step):
            j = min(L, i + step)
            y, state = self._piece(t0 + i, x[i:j], state, seed, out is not None or keep_y)
            if out is not None:
                out[i:j].copy_(y.detach())
            elif keep_y:
                ys.append(y)
        assert y is not None  # L >= 1
        if check is not None:
            check(t0 + L, y[-1], state)
        if out is not None or not keep_y:
            return None, state
        return (ys[0] if len(ys) == 1 else Pieces(ys)), state
