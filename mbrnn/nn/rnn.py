r"""``LSTM`` / ``GRU`` / ``RNN``: drop-in ``torch.nn`` modules with budgeted BPTT.

One changed line: ``nn.LSTM(...)`` becomes ``mbrnn.LSTM(..., memory_budget="2GiB")``. The
modules *are* ``torch.nn.LSTM``/``GRU``/``RNN`` (subclasses): same constructor, same
parameters and ``state_dict`` keys, same inputs and outputs, and, with
``memory_budget=None`` or without autograd, exactly torch's forward. With a budget and
gradients on, the sequence is back-propagated through time by a plan of
:func:`mbrnn.plan.solve` (Gruslys et al., "Memory-Efficient Backpropagation Through
Time", NeurIPS 2016), and every contiguous run of steps of that plan executes in calls
of the fused multi-step kernel ``nn.LSTM`` itself uses (cuDNN on CUDA, oneDNN or ATen on
CPU), one per run of up to 1,024 steps (:mod:`mbrnn.runtime.fused`). Gradients are those
of plain backpropagation through time.

NOTE [ The budgeted path ]
Each budgeted recurrence is probed once per batch size, device and dtype
(:func:`~mbrnn.runtime.probe.probe_fused`), fitted to its share of the budget by
:func:`~mbrnn.runtime.fit.fit` and run by :func:`~mbrnn.runtime.executor.run_plan` on a
:class:`~mbrnn.runtime.fused.FusedSegment`: validation, one fit, one run, the shapes
restored, as torch's ``GRU.forward`` is validation and one kernel call.

NOTE [ Bidirectional modules and the budget ]
Layer ``l + 1`` needs both directions of layer ``l``, so a bidirectional module runs
layer by layer: each direction of each layer is a budgeted recurrence of its own, planned
with an equal share of ``memory_budget`` (all of them hold their checkpoints from the
forward pass until their backward). The recurrences' own inputs and outputs are
sequences the size of the module's: each layer's output ``(T, B, 2 H)`` (the next
layer's input, kept until the backward pass, with its dropout mask), each direction's
output ``(T, B, H)`` and the time-reversed copies the reverse direction reads and
writes, and their gradients in the backward pass. Like the module's input and output,
they are outside the budget: a bidirectional module holds a few sequence-sized tensors
per layer more than ``memory_budget``. A unidirectional module is one recurrence over
all layers, whatever ``dropout``.
"""

from __future__ import annotations

import warnings
from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..budget import Budget, BudgetLike, resolve_budget
from ..errors import InfeasibleBudgetError
from ..plan import check_policy
from ..plan.buckets import BUCKET_RATIO
from ..runtime.executor import ExecStats, run_plan
from ..runtime.fit import ModulePlan, RecurrencePlan, Working, fit
from ..runtime.fused import MAX_CHUNK, RUN_COST_STEPS, FusedSegment
from ..runtime.probe import FusedSizes, chain_for, probe_recurrence
from ..sizes import format_size
from .recurrent import _OWN, UNBOUNDED, check_bucket_ratio, without_last_call

__all__ = ["GRU", "LSTM", "RNN", "RUN_COST_STEPS", "FusedPlan", "FusedSizes"]

#: The plan of a budgeted module call (one per recurrence): :class:`~mbrnn.runtime.fit.ModulePlan`.
FusedPlan = ModulePlan
#: A sweep's pieces use at most 1/_CHUNK_SHARE of the budget.
_CHUNK_SHARE = 32


def _reverse_index(lengths: Tensor | None, T: int, B: int, device: torch.device) -> Tensor | None:
    """(T, B) time index reversing each sequence within its length; ``None``: flip all."""
    if lengths is None:
        return None
    t = torch.arange(T).unsqueeze(1)
    n = lengths.unsqueeze(0)
    return torch.where(t < n, n - 1 - t, t).to(device)


def _reverse(x: Tensor, index: Tensor | None) -> Tensor:
    if index is None:
        return x.flip(0)
    return x.gather(0, index.unsqueeze(-1).expand_as(x))


_R = TypeVar("_R", bound="_BudgetedRNN")


class _BudgetedRNN(nn.RNNBase):
    """What ``LSTM``, ``GRU`` and ``RNN`` add to torch's modules: the budgeted path."""

    memory_budget: BudgetLike
    policy: str
    _torch_class: type[nn.RNNBase]

    def _init_budget(self, memory_budget: BudgetLike, policy: str,
                     bucket_ratio: float = BUCKET_RATIO) -> None:
        name = type(self).__name__
        self.bucket_ratio = check_bucket_ratio(name, bucket_ratio)
        Budget.parse(memory_budget, name=f"{name}: memory_budget")  # validate
        self.memory_budget = memory_budget
        self.policy = check_policy(name, policy)
        self._sizes: dict[tuple[Any, ...], tuple[FusedSizes, Working]] = {}
        self._budgets: dict[tuple[object, ...], int] = {}
        self.last_plan: ModulePlan | None = None
        self.last_stats: tuple[ExecStats, ...] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return without_last_call(super().__getstate__())  # pyright: ignore[reportAttributeAccessIssue]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, memory_budget={self.memory_budget!r}, policy={self.policy!r}"

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_torch(cls: type[_R], module: nn.RNNBase, *, memory_budget: BudgetLike = None,
                   policy: str = "auto", bucket_ratio: float = BUCKET_RATIO) -> _R:
        """Build one from an existing torch module: same configuration, device, dtype,
        weights (loaded strictly) and training mode."""
        if not isinstance(module, cls._torch_class):
            raise TypeError(f"{cls.__name__}.from_torch: expected a torch.nn."
                            f"{cls._torch_class.__name__}, got {type(module).__name__}")
        w = module._flat_weights[0]
        assert w is not None
        kwargs: dict[str, Any] = dict(
            num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
            dropout=module.dropout, bidirectional=module.bidirectional, device=w.device,
            dtype=w.dtype, memory_budget=memory_budget, policy=policy,
            bucket_ratio=bucket_ratio,
        )
        if cls._torch_class is nn.LSTM:
            kwargs["proj_size"] = module.proj_size
        if cls._torch_class is nn.RNN:
            kwargs["nonlinearity"] = cast(nn.RNN, module).nonlinearity
        with warnings.catch_warnings():  # torch's own module already warned about dropout
            warnings.simplefilter("ignore", UserWarning)
            new = cast(Any, cls)(module.input_size, module.hidden_size, **kwargs)
        new.load_state_dict(module.state_dict(), strict=True)
        new.train(module.training)
        return cast(_R, new)

    # --- recurrences -----------------------------------------------------------------------

    @property
    def _hidden_out(self) -> int:
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def _recurrences(self) -> list[tuple[tuple[int, ...], int, int]]:
        """``(layers, direction, input features)`` of each budgeted recurrence, in order."""
        if not self.bidirectional:
            return [(tuple(range(self.num_layers)), 0, self.input_size)]
        return [
            ((layer,), d, self.input_size if layer == 0 else 2 * self._hidden_out)
            for layer in range(self.num_layers)
            for d in (0, 1)
        ]

    def _weights(self, layers: tuple[int, ...], direction: int) -> list[list[Tensor]]:
        dirs = 2 if self.bidirectional else 1
        return [[getattr(self, n) for n in self._all_weights[layer * dirs + direction]]
                for layer in layers]

    def _dropout_active(self) -> bool:
        return self.training and self.dropout > 0 and not self.bidirectional

    def _segment(self, layers: tuple[int, ...], direction: int, *, chunk: int = 1,
                 keep_chunk: int = MAX_CHUNK, lengths: Tensor | None = None,
                 force_packed: bool = False) -> FusedSegment:
        return FusedSegment(
            self.mode, self._weights(layers, direction), has_biases=self.bias,
            hidden_out=self._hidden_out,
            dropout=self.dropout if self._dropout_active() else 0.0,
            chunk=chunk, keep_chunk=keep_chunk, lengths=lengths, force_packed=force_packed,
            # cuDNN warns when a call's weights are not the module's one flat buffer
            quiet=self.bidirectional or self._dropout_active(),
        )

    def _state_shapes(self, layers: int, B: int) -> list[tuple[int, ...]]:
        shapes = [(layers, B, self._hidden_out)]
        if self.mode == "LSTM":
            shapes.append((layers, B, self.hidden_size))
        return shapes

    def _probe(self, index: int, B: int, device: torch.device, dtype: torch.dtype,
               packed: bool) -> tuple[FusedSizes, Working]:
        """Sizes and working set of recurrence ``index``: probed once per batch size,
        device, dtype and packing, never per length."""
        layers, _, features = self._recurrences()[index]
        key = (layers, features, B, device, dtype, self._dropout_active(), packed,
               torch.is_autocast_enabled(device.type))
        hit = self._sizes.get(key)
        if hit is not None:
            return hit
        params = [w for ws in self._weights(layers, 0) for w in ws]
        shapes = self._state_shapes(len(layers), B)

        def segment(lengths: Tensor | None) -> FusedSegment:
            return self._segment(layers, 0, lengths=lengths, force_packed=lengths is not None)

        sizes, working = probe_recurrence(segment, features, shapes, params, device, dtype,
                                          packed=packed)
        self._sizes[key] = (sizes, working)
        return sizes, working

    # --- planning --------------------------------------------------------------------------

    def _plan(self, T: int, B: int, budget: int, device: torch.device, dtype: torch.dtype,
              packed: bool, input_grad: bool = True) -> ModulePlan:
        """Fit every recurrence to its share of ``budget``: NOTE [ The budgeted path ]."""
        name = type(self).__name__
        recs = self._recurrences()
        share = budget // len(recs)
        plans: list[RecurrencePlan] = []
        chunks: list[int] = []
        minimum = 0
        elt = torch.empty((), dtype=dtype).element_size()
        for i, (layers, _, features) in enumerate(recs):
            sizes, working = self._probe(i, B, device, dtype, packed)
            chunk = MAX_CHUNK
            if sizes.sweep_step_bytes > 0:  # a sweep's pieces: a small share of the budget
                chunk = max(1, min(MAX_CHUNK, share // (_CHUNK_SHARE * sizes.sweep_step_bytes)))
            # NOTE [ Kept runs in pieces ]: a call's backward also returns its input's
            # gradient where the input needs one (later layers' always do)
            x_grad = input_grad or layers[0] > 0
            back = sizes.keep_step_bytes + (B * features * elt if x_grad else 0)
            context = f"seq_len={T}, batch {B}"
            got: RecurrencePlan | None = None
            for c in dict.fromkeys((chunk, 1)):  # the smallest budgets sweep one step a call
                chain = chain_for(sizes, T, chunk=c, keep_chunk=MAX_CHUNK,
                                  backward_step_bytes=back)
                try:
                    got = fit(chain, share, self.policy, working,
                              run_cost=FusedSegment.run_cost_steps, owner=name, context=context,
                              bucket_ratio=self.bucket_ratio)
                except InfeasibleBudgetError as e:
                    if c == 1 or chunk == 1:
                        if len(recs) == 1:
                            raise
                        minimum = max(minimum, int(e.minimum))
                    continue
                chunks.append(c)
                break
            if got is not None:
                plans.append(got)
        if minimum:
            total = minimum * len(recs)
            raise InfeasibleBudgetError(
                f"{name}: memory_budget={format_size(budget)} is below the minimum "
                f"{format_size(total)} for seq_len={T}, batch {B} ({len(recs)} budgeted "
                f"recurrences of {format_size(minimum)} each: {self.num_layers} layers, both "
                f"directions); raise the budget to at least {format_size(total)} or shorten "
                "the sequence",
                minimum=total,
            )
        return ModulePlan(tuple(plans), tuple(chunks), (MAX_CHUNK,) * len(plans), budget)

    def _where(self, device: torch.device | str | None, dtype: torch.dtype | None
               ) -> tuple[torch.device, torch.dtype]:
        w = self._flat_weights[0]
        assert w is not None
        return (torch.device(device) if device is not None else w.device), (dtype or w.dtype)

    def plan_for(
        self,
        seq_len: int,
        batch_size: int,
        *,
        memory_budget: BudgetLike = _OWN,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        packed: bool = False,
        input_requires_grad: bool = True,
    ) -> ModulePlan:
        """The plan a call with this length and batch would run, without running it.

        Probes the fused kernel once per batch size, device and dtype (a few short calls)
        and plans; the :class:`~mbrnn.runtime.fit.ModulePlan` holds the plans,
        ``.predicted_peak`` (bytes, what ``memory_budget`` bounds) and
        ``.time_overhead()`` against storing everything. ``memory_budget`` defaults to the
        module's own; ``None`` plans with an unbounded budget (storing everything).
        ``packed=True`` plans for a ``PackedSequence`` input; ``input_requires_grad=False``
        for an input that needs no gradient.
        """
        name = type(self).__name__
        for arg, value in (("seq_len", seq_len), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}.plan_for: {arg} must be an int >= 1, got {value!r}")
        dev, dt = self._where(device, dtype)
        arg = self.memory_budget if memory_budget is _OWN else memory_budget
        budget = resolve_budget(name, arg, dev, self._budgets, (seq_len, batch_size, dev))
        return self._plan(seq_len, batch_size, UNBOUNDED if budget is None else budget, dev, dt,
                          packed, input_requires_grad)

    def minimum_budget(
        self,
        seq_len: int,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        packed: bool = False,
    ) -> int:
        """The smallest ``memory_budget`` (bytes) this module's policy accepts for this call."""
        try:
            self.plan_for(seq_len, batch_size, memory_budget=0, device=device, dtype=dtype,
                          packed=packed)
        except InfeasibleBudgetError as e:
            return int(e.minimum)
        return 0

    # --- forward ---------------------------------------------------------------------------

    def _needs_grad(self, input: Tensor | PackedSequence, hx: Any) -> bool:
        if not torch.is_grad_enabled():
            return False
        x = input.data if isinstance(input, PackedSequence) else input
        states = hx if isinstance(hx, (tuple, list)) else (hx,)
        return (
            x.requires_grad
            or any(isinstance(h, Tensor) and h.requires_grad for h in states)
            or any(p.requires_grad for p in self.parameters())
        )

    def _zeros(self, B: int, ref: Tensor) -> Any:
        dirs = 2 if self.bidirectional else 1
        h = torch.zeros(self.num_layers * dirs, B, self._hidden_out, dtype=ref.dtype,
                        device=ref.device)
        if self.mode == "LSTM":
            return (h, torch.zeros(self.num_layers * dirs, B, self.hidden_size, dtype=ref.dtype,
                                   device=ref.device))
        return h

    def forward(self, input: Any, hx: Any = None) -> Any:  # type: ignore[override]
        if self.memory_budget is None or not self._needs_grad(input, hx):
            self.last_plan, self.last_stats = None, None
            return super().forward(input, hx)
        return self._budgeted(input, hx)

    def _prepare(self, input: Any, hx: Any
                 ) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None, bool, PackedSequence | None]:
        """Time-major padded input, flat initial state, lengths, unbatched, packed input."""
        name = type(self).__name__
        lstm = self.mode == "LSTM"
        if isinstance(input, PackedSequence):
            data, batch_sizes, sorted_indices, _ = input
            x, lengths = pad_packed_sequence(PackedSequence(data, batch_sizes))  # sorted
            B = int(batch_sizes[0])
            hx = self._zeros(B, data) if hx is None else self.permute_hidden(hx, sorted_indices)
            self.check_forward_args(data, hx, batch_sizes)
            flat = tuple(hx) if lstm else (hx,)
            return x.contiguous(), flat, lengths, False, input
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: Expected input to be a Tensor or a PackedSequence, got "
                            f"{type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D instead")
        batched = input.dim() == 3
        batch_dim = 0 if self.batch_first else 1
        if not batched:
            input = input.unsqueeze(batch_dim)
        B = input.size(batch_dim)
        if hx is None:
            hx = self._zeros(B, input)
        else:
            hs = tuple(hx) if lstm else (hx,)
            want = 3 if batched else 2
            if any(h.dim() != want for h in hs):
                got = ", ".join(f"{h.dim()}-D" for h in hs)
                what = "batched 3-D" if batched else "unbatched 2-D"
                raise RuntimeError(f"For {what} input, hx should also be {want}-D but got ({got}) "
                                   "tensors")
            if not batched:
                hs = tuple(h.unsqueeze(1) for h in hs)
            hx = hs if lstm else hs[0]
        self.check_forward_args(input, hx, None)
        x = input.transpose(0, 1) if self.batch_first else input
        if x.shape[0] == 0:
            raise ValueError(f"{name}: got an empty sequence (seq_len=0); pass at least one "
                             "time step")
        flat = tuple(hx) if lstm else (hx,)
        return x.contiguous(), flat, None, not batched, None

    def final_state(self, input: Any, hx: Any = None) -> Any:
        """``forward(input, hx)[1]``, the final state alone: on the budgeted path no
        ``(T, B, H)`` output is made, kept, or back-propagated (a classifier that reads the
        last state); a bidirectional module still holds its layers' outputs (NOTE [
        Bidirectional modules and the budget ]), and the plain path is torch's."""
        if self.memory_budget is None or not self._needs_grad(input, hx):
            self.last_plan, self.last_stats = None, None
            return super().forward(input, hx)[1]
        return self._budgeted(input, hx, outputs=False)[1]

    def _budgeted(self, input: Any, hx: Any, outputs: bool = True) -> Any:
        name = type(self).__name__
        x, flat, lengths, unbatched, packed = self._prepare(input, hx)
        T, B, _ = x.shape
        budget = resolve_budget(name, self.memory_budget, x.device, self._budgets,
                                (T, B, x.device))
        assert budget is not None
        fplan = self._plan(T, B, budget, x.device, x.dtype, packed is not None,
                           x.requires_grad)
        stats: list[ExecStats] = []

        def run(i: int, xin: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
            layers, d, _ = self._recurrences()[i]
            seg = self._segment(layers, d, chunk=fplan.chunks[i], keep_chunk=fplan.keep_chunks[i],
                                lengths=lengths)
            params = tuple(seg.flat)
            y, final, st = run_plan(seg, xin, state, params, fplan.plans[i].plan,
                                    outputs=outputs or self.bidirectional)
            stats.append(st)
            return y, final

        if not self.bidirectional:
            y, final = run(0, x, flat)
        else:
            rev = _reverse_index(lengths, T, B, x.device)
            finals: list[tuple[Tensor, ...]] = []
            y = x
            for layer in range(self.num_layers):
                if layer > 0 and self.training and self.dropout > 0:
                    y = nn.functional.dropout(y, self.dropout, training=True)
                sl = slice(2 * layer, 2 * layer + 1)
                yf, ff = run(2 * layer, y, tuple(s[sl] for s in flat))
                sl = slice(2 * layer + 1, 2 * layer + 2)
                yb, fb = run(2 * layer + 1, _reverse(y, rev), tuple(s[sl] for s in flat))
                y = torch.cat([yf, _reverse(yb, rev)], 2)
                finals += [ff, fb]
            final = tuple(torch.cat(parts, 0) for parts in zip(*finals, strict=True))
        self.last_plan, self.last_stats = fplan, tuple(stats)
        hidden: Any = final if self.mode == "LSTM" else final[0]
        if not outputs:  # final_state(): the state alone, in the caller's order and shape
            if packed is not None:
                return None, self.permute_hidden(hidden, packed.unsorted_indices)
            if unbatched:
                hidden = (tuple(h.squeeze(1) for h in final) if self.mode == "LSTM"
                          else final[0].squeeze(1))
            return None, hidden
        if packed is not None:
            assert lengths is not None
            data = pack_padded_sequence(y, lengths, enforce_sorted=True).data
            out = PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                                 packed.unsorted_indices)
            return out, self.permute_hidden(hidden, packed.unsorted_indices)
        if unbatched:
            y = y.squeeze(1)
            hidden = tuple(h.squeeze(1) for h in final) if self.mode == "LSTM" else final[0].squeeze(1)
        elif self.batch_first:
            y = y.transpose(0, 1)
        return y, hidden


# ---------------------------------------------------------------------------------------
# Public classes
# ---------------------------------------------------------------------------------------

class LSTM(_BudgetedRNN, nn.LSTM):
    r"""``torch.nn.LSTM`` with budgeted backpropagation through time on fused kernels.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            proj_size, device, dtype: exactly as :class:`torch.nn.LSTM`.
        memory_budget: keyword-only. ``None`` (default: exactly ``torch.nn.LSTM``,
            storing every step), an int in bytes, a string such as ``"512MiB"``,
            ``"auto"`` (what is free on the input's device: on CUDA the free memory minus
            ``max(AUTO_CUDA_MARGIN, 5 % of the device)``, on CPU ``AUTO_CPU_FRACTION`` of
            the available RAM or of the container's limit), or a fraction of that as
            ``"50%"`` or ``mbrnn.Budget.fraction(0.5)``; ``"auto"`` and fractions are
            resolved once per input shape (:class:`mbrnn.Budget`). A bare float is an
            error. It bounds what back-propagation holds (checkpoints, kept runs,
            recomputation, the executor's working set), not the input, the output or
            their gradients, nor, for bidirectional modules, each layer's output
            sequence (NOTE [ Bidirectional modules and the budget ]).
        policy: keyword-only. ``"auto"`` (default: the plan of the fewest forward steps,
            each fused call counted as ``RUN_COST_STEPS`` steps, so fewer and longer
            runs win near-ties; Chen's plan with shorter segments is among the
            candidates) or one planner policy, which runs as named or raises
            :class:`~mbrnn.errors.InfeasibleBudgetError`: ``"store_all"``,
            ``"recompute_all"``, ``"chen"``, ``"hsm"``, ``"ism"``, ``"msm"``.
        bucket_ratio: keyword-only. Sequence lengths above 64 are planned for their
            bucket on a geometric grid of this ratio (default ``2 ** (1/8)``, about 9 %)
            and run that plan's last ``T`` steps: one plan per bucket for variable-length
            data, within the budget (:mod:`mbrnn.plan.buckets`). ``1.0`` plans every
            length on its own.

    Inputs: input, (h_0, c_0)
        - **input**: :math:`(L, N, H_{in})`, :math:`(N, L, H_{in})` with
          ``batch_first``, :math:`(L, H_{in})` unbatched, or a ``PackedSequence``.
        - **h_0**: :math:`(D \cdot \text{num\_layers}, N, H_{out})`; **c_0**:
          :math:`(D \cdot \text{num\_layers}, N, H_{cell})`. Zeros if omitted.

    Outputs: output, (h_n, c_n)
        As :class:`torch.nn.LSTM`; for packed input the states hold each sequence's last
        valid step, in the caller's order.

    Attributes:
        last_plan: the :class:`FusedPlan` of the last budgeted call (``None`` after a
            plain one).
        last_stats: per recurrence, the executor's
            :class:`~mbrnn.runtime.executor.ExecStats` of the last budgeted call (its
            backward fills them in).

    Example::

        >>> lstm = mbrnn.LSTM(256, 256, memory_budget="64MiB")
        >>> out, (h, c) = lstm(torch.randn(1000, 32, 256))
        >>> out.sum().backward()
        >>> print(lstm.last_plan.summary())
    """

    _torch_class = nn.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        memory_budget: BudgetLike = None,
        policy: str = "auto",
        bucket_ratio: float = BUCKET_RATIO,
    ) -> None:
        nn.LSTM.__init__(self, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)
        self._init_budget(memory_budget, policy, bucket_ratio)


class GRU(_BudgetedRNN, nn.GRU):
    r"""``torch.nn.GRU`` with budgeted BPTT on fused kernels.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype: exactly as :class:`torch.nn.GRU`.
        memory_budget, policy, bucket_ratio: keyword-only, as in :class:`LSTM`.

    Inputs: input, h_0 / Outputs: output, h_n
        As :class:`torch.nn.GRU`; for packed input ``h_n`` holds each sequence's last
        valid step, in the caller's order. ``last_plan``, ``last_stats``: as in
        :class:`LSTM`.

    Example::

        >>> gru = mbrnn.GRU(64, 128, num_layers=2, memory_budget="25%")
        >>> out, h = gru(torch.randn(5000, 8, 64))
    """

    _torch_class = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        memory_budget: BudgetLike = None,
        policy: str = "auto",
        bucket_ratio: float = BUCKET_RATIO,
    ) -> None:
        nn.GRU.__init__(self, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                        bidirectional, device=device, dtype=dtype)
        self._init_budget(memory_budget, policy, bucket_ratio)


class RNN(_BudgetedRNN, nn.RNN):
    r"""``torch.nn.RNN`` (Elman, ``tanh`` or ``relu``) with budgeted BPTT on fused kernels.

    Args:
        input_size, hidden_size, num_layers, nonlinearity, bias, batch_first,
            dropout, bidirectional, device, dtype: exactly as :class:`torch.nn.RNN`.
        memory_budget, policy, bucket_ratio: keyword-only, as in :class:`LSTM`.

    Inputs: input, h_0 / Outputs: output, h_n
        As :class:`torch.nn.RNN`; for packed input ``h_n`` holds each sequence's last
        valid step, in the caller's order. ``last_plan``, ``last_stats``: as in
        :class:`LSTM`.

    Example::

        >>> rnn = mbrnn.RNN(16, 32, nonlinearity="relu", memory_budget="8MiB")
        >>> out, h = rnn(torch.randn(2000, 4, 16))
    """

    _torch_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        memory_budget: BudgetLike = None,
        policy: str = "auto",
        bucket_ratio: float = BUCKET_RATIO,
    ) -> None:
        nn.RNN.__init__(self, input_size, hidden_size, num_layers, nonlinearity, bias,
                        batch_first, dropout, bidirectional, device=device, dtype=dtype)
        self._init_budget(memory_budget, policy, bucket_ratio)
