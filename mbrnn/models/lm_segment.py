r"""The language model's training step inside the budget: masks, the segment, the readout.

NOTE [ The readout inside the budget ]
A language model's largest activations are not its recurrent states but its readout:
``(T, B, vocab)`` logits and their softmax. The budgeted path runs embedding, layers and
readout inside one :class:`~mbrnn.runtime.executor.Segment` (:class:`LMSegment`), whose
per-step output is the per-example loss (eager: zeros carrying its gradient, the losses
kept apart), so no ``(T, B, vocab)`` tensor, nor the
``(T, B, E)`` embeddings or ``(T, B, H)`` outputs, is ever held whole. Two ways to
back-propagate the readout, chosen per call:

- *eager* (when a ``(T, B, H)`` gradient fits a quarter of the budget: word-level
  models): the first sweep, which computes every step once and in order, also reads
  every step out once. Each step's output waits in a ``(T, B, H)`` buffer until a group
  of steps is complete (groups span the sweep's calls, which under recomputation may be
  one step long), and the group is then read out at once: its losses, ``d loss_t / d
  y_t`` written over the outputs, and the readout parameters' gradients added into
  accumulators. The full softmax is differentiated by hand (``_softmax_grads``): the
  logits are held ``(rows, chunk)`` at a time, the whole vocabulary in one pass, or in
  two passes over chunks of it (the log-sum-exp first) where the budget allows few
  rows; the decoder's gradient is added with ``addmm_``, never materialised apart. The
  group and chunk come from a share of the budget (``_readout_shapes``), and the planner
  charges their bound (``softmax_transient``). The kept runs then carry zeros whose
  gradient is ``g_t`` instead of the readout, so the readout runs forward and backward
  once per step, as plain autograd's does, whatever the plan recomputes. The readout
  parameters' gradient is handed back when the loss is back-propagated
  (:class:`ReadoutGrad`). Exact because the loss is a mean: the gradient reaching
  every step's loss is the same number.
- *graph* (long windows of small vocabularies: character models): the readout is part
  of each kept run's graph, like any step's internal state; the probe measures it and
  the planner budgets it.

Masks are drawn once per call from the global RNG, before the recurrence runs: locked
dropout (one ``(B, size)`` mask per sequence on the embeddings, between layers and
before the readout), embedding dropout (whole words of the vocabulary, the same for the
whole batch, as AWD-LSTM's ``embedded_dropout``), and weight dropout (DropConnect on
``weight_hh``). A recomputed step uses exactly the masks of its first run, and needs no
RNG replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..runtime.fused import MAX_CHUNK, RUN_COST_STEPS, FusedSegment

# the model (:class:`mbrnn.models.LanguageModel`), not imported: it imports this module
LanguageModel = Any

__all__ = ["Eager", "LMSegment", "Masks", "ReadoutGrad", "Shape", "manual_softmax", "readout_rows",
           "softmax_transient"]


@dataclass
class Masks:
    """One call's dropout, drawn before the recurrence (so recomputation replays it)."""

    embedding: Tensor | None  # (B, E) locked mask on the embeddings
    layers: list[Tensor] | None  # (B, H) between layers
    output: Tensor | None  # (B, H) before the readout
    words: Tensor | None  # (V,) embedding dropout: the vocabulary's kept words, scaled





@dataclass(frozen=True)
class Shape:
    """How the eager readout runs: ``steps`` steps at a time, the vocabulary in chunks of
    ``chunk`` (``chunk < vocab``: two passes, the log-sum-exp first)."""

    steps: int
    chunk: int


@dataclass
class Eager:
    """The eager readout's buffers (NOTE [ The readout inside the budget ]): each step's
    output until it is read out, then its gradient ``d loss_{t,b} / d y_{t,b}``; the
    per-example losses; the readout parameters' gradients summed over steps."""

    outputs: Tensor  # (T, B, H)
    losses: Tensor  # (T, B)
    params: list[Tensor]

    @classmethod
    def make(cls, model: LanguageModel, T: int, B: int, accumulate: bool = True) -> Eager:
        """Buffers for ``T`` steps; without the parameters' accumulators where
        ``accumulate`` is false (a probe: it never reads out)."""
        ref = model.embedding.weight
        return cls(ref.new_zeros((T, B, model.config.hidden_size)), ref.new_zeros((T, B)),
                   [torch.zeros_like(p) for p in model._readout_params()] if accumulate else [])


class LMSegment(FusedSegment):
    """A run of the language model: ids and targets ``(L, B, 2)`` to per-example losses
    ``(L, B, 1)``, through embedding, fused layers and readout (eager: zeros that carry
    the readout's gradient, the losses themselves going to the eager buffer)."""

    run_cost_steps = RUN_COST_STEPS

    def __init__(self, model: LanguageModel, masks: Masks, weights: list[list[Tensor]],
                 eager: Eager | None, targets: Tensor | None = None,
                 shape: Shape | None = None) -> None:
        rnn = model.rnn
        super().__init__(rnn.mode, weights, has_biases=rnn.bias, hidden_out=rnn.hidden_size,
                         dropout=0.0, chunk=MAX_CHUNK, layer_masks=masks.layers, quiet=True)
        self.model = model
        self.masks = masks
        self.eager = eager
        # the eager readout: the call's targets (T, B) and how it reads out; none in a probe
        self.targets = targets
        self.shape = shape
        self.read = 0  # steps read out so far (the first sweep runs them in order)
        layer = [w for ws in weights for w in ws]
        readout = [] if eager is not None else model._readout_params()
        # the embedding's gradient is sparse in the kept runs; it reaches the weight dense:
        # through _DenseGrad, or, when tied, summed with the decoder's dense gradient
        # (in place into the eager readout's accumulator of the same weight, which autograd
        # would otherwise add to the sparse gradient out of place)
        weight = model.embedding.weight
        at = [i for i, p in enumerate(model._readout_params()) if p is weight]
        if at and eager is not None and eager.params:
            self.embedding = _AddInto.apply(weight, eager.params[at[0]])
        else:
            self.embedding = weight if at else _DenseGrad.apply(weight)
        # every tensor the graph of a kept run uses that may need a gradient, once each
        uses = [self.embedding, *layer, *(p for p in readout if p is not weight)]
        self.params = list({id(p): p for p in uses}.values())

    @property
    def grad_params(self) -> list[Tensor]:
        return self.params

    def _piece(self, t0: int, x: Tensor, state: tuple[Tensor, ...], seed: Any,
               need_y: bool = True) -> tuple[Tensor, tuple[Tensor, ...]]:
        ids, targets = x[..., 0], x[..., 1]
        y, new = super()._piece(t0, self.model.embed(ids, self.masks, self.embedding), state,
                                seed)
        if not need_y:  # a re-run sweep: nobody reads the losses (a view of their shape)
            return y[..., :1], new
        out_mask = self.masks.output
        if self.eager is None:  # the readout in the kept run's graph
            yd = y * out_mask if out_mask is not None else y
            return self.model.readout(yd, targets).unsqueeze(-1), new
        g = self.eager.outputs[t0:t0 + y.shape[0]]
        if self.first_pass:  # the output waits in the buffer for its readout
            g.copy_(y.detach() * out_mask if out_mask is not None else y.detach())
            stop = t0 + y.shape[0]
            if self.shape is not None and (stop - self.read >= self.shape.steps
                                           or stop == self.eager.outputs.shape[0]):
                self._read_out(stop)
        if not torch.is_grad_enabled():
            return y.new_zeros((*y.shape[:2], 1)), new
        return _Carry.apply(y, g), new  # zeros; gradient g (read out by the backward)

    def _read_out(self, stop: int) -> None:
        """Read out steps ``read .. stop`` of the buffer: their losses into the eager
        buffer, each step's output replaced by its gradient, the readout parameters'
        gradients added into the accumulators."""
        assert self.eager is not None and self.targets is not None and self.shape is not None
        start, self.read = self.read, stop
        step = self.shape.steps
        for i in range(start, stop, step):
            j = min(stop, i + step)
            self.eager.losses[i:j] = readout_rows(
                self.model, self.eager.outputs[i:j], self.targets[i:j], self.masks.output,
                self.shape.chunk, self.eager.params)


def manual_softmax(model: LanguageModel, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the eager readout computes the full softmax's gradients by hand (float32 and
    float64 without autocast), writing the parameters' share into the accumulators with no
    parameter-sized temporary; else through autograd (adaptive softmax, autocast)."""
    return (model.adaptive is None and dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled(device.type))


def readout_rows(model: LanguageModel, rows: Tensor, targets: Tensor, out_mask: Tensor | None,
                 chunk: int, acc: list[Tensor]) -> Tensor:
    """The eager readout of ``rows`` ``(L, B, H)``, outputs with the output mask applied:
    returns the losses ``(L, B)``, writes ``d loss / d y`` over ``rows`` and adds the readout
    parameters' gradients into ``acc`` (none: dropped)."""
    if manual_softmax(model, rows.dtype, rows.device):
        flat = rows.view(-1, rows.shape[-1])
        loss, gy = _softmax_grads(model, flat, targets.reshape(-1), chunk, acc)
        del flat
    else:
        params = model._readout_params()
        with torch.enable_grad():
            leaf = rows.detach().requires_grad_()  # the graph is gone before rows are written
            loss = model.readout(leaf, targets)
            # an adaptive softmax's tail clusters may see no target in these steps
            got = torch.autograd.grad(loss.sum(), [leaf, *params], allow_unused=True)
        for a, g in zip(acc, got[1:], strict=False):
            if g is not None:
                a.add_(g)
        loss, gy = loss.detach(), got[0]
        del got, leaf
    if out_mask is not None:
        gy = gy.view(rows.shape).mul_(out_mask)
    rows.copy_(gy.view(rows.shape))
    return loss.view(targets.shape)


def _softmax_grads(model: LanguageModel, y: Tensor, targets: Tensor, chunk: int,
                   acc: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Losses ``(N,)`` and ``d loss / d y`` ``(N, H)`` of the full softmax of ``y`` ``(N, H)``;
    the decoder's gradients are added into ``acc`` with ``addmm_``, never materialised
    apart. The logits are held ``(N, chunk)`` at a time: one chunk of the whole vocabulary
    (logits, then softmax less one-hot, in place), or, with a smaller chunk, two passes:
    the log-sum-exp first (online, Milakov and Gimelshein 2018), then each chunk's
    gradient."""
    decoder = model.decoder
    assert decoder is not None
    W = decoder.weight.detach()
    b = decoder.bias.detach() if decoder.bias is not None else None
    V, N = W.shape[0], y.shape[0]
    rows = torch.arange(N, device=y.device)

    def logits(v0: int, v1: int) -> Tensor:
        w = W[v0:v1].t()
        return torch.addmm(b[v0:v1], y, w) if b is not None else y @ w

    if chunk >= V:  # one pass
        z = logits(0, V)
        picked = z[rows, targets]
        lse = z.amax(1)
        z.sub_(lse.unsqueeze(1)).exp_()
        total = z.sum(1)
        z.div_(total.unsqueeze(1))
        lse.add_(total.log_())
        z[rows, targets] -= 1.0  # d loss / d logits
        gy = z @ W
        if acc:
            acc[0].addmm_(z.t(), y)
            if b is not None:
                acc[1].add_(z.sum(0))
        return lse.sub_(picked), gy
    # pass one: the running maximum and sum of exponentials, and the targets' logits
    top = y.new_full((N,), float("-inf"))
    total = y.new_zeros(N)
    picked = y.new_zeros(N)
    for v0 in range(0, V, chunk):
        v1 = min(V, v0 + chunk)
        z = logits(v0, v1)
        here = (targets >= v0) & (targets < v1)
        picked[here] = z[rows[here], targets[here] - v0]
        new_top = torch.maximum(top, z.amax(1))
        total.mul_((top - new_top).exp_()).add_(z.sub_(new_top.unsqueeze(1)).exp_().sum(1))
        top = new_top
        del z
    lse = top.add_(total.log_())
    # pass two: each chunk's softmax less one-hot, and its share of every gradient
    gy = y.new_zeros(y.shape)
    for v0 in range(0, V, chunk):
        v1 = min(V, v0 + chunk)
        z = logits(v0, v1)
        z.sub_(lse.unsqueeze(1)).exp_()
        here = (targets >= v0) & (targets < v1)
        z[rows[here], targets[here] - v0] -= 1.0
        gy.addmm_(z, W[v0:v1])
        if acc:
            acc[0][v0:v1].addmm_(z.t(), y)
            if b is not None:
                acc[1][v0:v1].add_(z.sum(0))
        del z
    return lse.sub_(picked), gy


def softmax_transient(B: int, hidden: int, vocab: int, shape: Shape, elt: int) -> int:
    """An upper bound on the bytes :func:`_softmax_grads` allocates for ``shape``: the
    ``(N, chunk)`` logits, the ``(N, H)`` gradient, a chunk's column sums and a few
    ``(N,)`` vectors (indices, masks, maxima), ``N = steps * B``."""
    n = shape.steps * B
    c = min(shape.chunk, vocab)
    return elt * (n * (c + hidden) + c) + n * (6 * elt + 4 * 8 + 2)


class _Carry(torch.autograd.Function):
    """Zeros ``(L, B, 1)`` whose gradient is ``grad * g``, with ``g`` a view of the eager
    buffer held as is: the buffer's rows are written after this run (the readout's
    gradient replaces the output), which autograd's saved-tensor version check would take
    for a change of this run's rows. The value is the same in the first pass and in a
    re-run, and the losses are added apart."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, g: Tensor) -> Tensor:
        ctx.g, ctx.dtype = g, y.dtype
        return y.new_zeros((*y.shape[:2], 1))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Any:
        return (grad * ctx.g).to(ctx.dtype), None


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward makes a sparse gradient dense, so that a parameter's
    ``.grad`` is dense (what every optimizer takes) while the runs' shares were sparse."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor) -> Tensor:
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.to_dense() if grad.is_sparse else grad


class _AddInto(torch.autograd.Function):
    """Identity on a (tied) weight whose backward adds its gradient, the kept runs' sparse
    embedding share, into ``acc`` in place: the eager readout's accumulator of the same
    weight, which :class:`ReadoutGrad` has already scaled and handed to the weight (it runs
    first: the recurrence is upstream of the loss)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, acc: Tensor) -> Tensor:
        ctx.acc = acc
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Any:
        acc, ctx.acc = ctx.acc, None  # dropped: autograd takes the accumulator as is
        if acc is None:  # a probe's segment, back-propagated again
            return grad, None
        acc.add_(grad)
        return None, None


class ReadoutGrad(torch.autograd.Function):
    """Identity on the mean loss; its backward hands the readout's parameters their
    gradient, accumulated by the eager readout: ``grad * sum_t g_t / (T B)``."""

    @staticmethod
    def forward(ctx: Any, loss: Tensor, grads: Eager, count: int, *params: Tensor) -> Tensor:
        ctx.grads, ctx.count = grads, count
        return loss.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Any:
        grads: Eager = ctx.grads
        scale = grad / ctx.count
        # in place: the accumulators are the gradients; dropped here, so that autograd
        # takes them as the parameters' .grad instead of copying them
        params, grads.params = grads.params, []
        return (grad, None, None, *(g.mul_(scale) for g in params))
