r"""``LSTM`` / ``GRU`` / ``RNN``: drop-in ``torch.nn`` modules with budgeted BPTT.

One changed line: ``nn.LSTM(...)`` becomes ``mbrnn.LSTM(..., memory_budget="2GiB")``. The
modules *are* ``torch.nn.LSTM``/``GRU``/``RNN`` (subclasses): same constructor, same
parameters and ``state_dict`` keys, same inputs and outputs, and, with
``memory_budget=None`` or without autograd, exactly torch's forward. With a budget and
gradients on, the sequence is back-propagated through time by a plan of
:func:`mbrnn.plan.solve` (Gruslys et al., "Memory-Efficient Backpropagation Through
Time", NeurIPS 2016), and every contiguous run of steps of that plan executes in calls
of the fused multi-step kernel ``nn.LSTM`` itself uses (cuDNN on CUDA, oneDNN or ATen on
CPU), one per run of up to 1,024 steps. Gradients are those of plain backpropagation through time.

NOTE [ Fused segments ]
The executor (:mod:`mbrnn.runtime.executor`) drives a :class:`~mbrnn.runtime.executor.Segment`:
``_FusedSegment.run`` gets a whole run ``t0+1 .. t0+L`` and makes one ``torch._VF.lstm``
(``gru``, ``rnn_tanh``, ``rnn_relu``) call for it, all layers at once. A run whose
internal states are kept is one call under autograd (calls of at most ``keep_chunk`` =
1,024 steps beyond that: NOTE [ Kept runs in pieces ]), hence one graph; a sweep that keeps
nothing runs without autograd in pieces of ``chunk`` steps, because a fused call allocates
its whole output (and, on ATen's CPU path, its input projections) up front: a piece of
``chunk`` steps bounds that transient memory, and the plan counts it.

NOTE [ What a fused run keeps ]
A fused call keeps a per-step part (oneDNN's workspace, the outputs, the gates) and a
per-call part (oneDNN's workspace header, cuDNN's reserve header, the final states). The
probe (``_measure``) runs the segment on 1, 8 and 40 steps under
:class:`~mbrnn.runtime.memory.MemoryMeter`: the slope is the planner's ``internal_size``
(the transient memory of a running call folded in, so it is an upper bound), the
remainder is the per-call part ``run_bytes``. The planner's cost model has no per-run
term; a plan that keeps ``k`` runs at once needs ``(k - 1) * run_bytes`` more than it
predicts (the working set already holds one): see NOTE [ Plans with per-run memory ].

NOTE [ Kept runs in pieces ]
The backward of a fused call allocates memory for all its steps at once (on ATen's CPU
path about one ``(B, H)`` tensor per step, beside the weights' gradients), and frees it
when it ends. Optimal plans keep runs of hundreds of steps, so at T = 10,000 this
transient took measured peaks 2.5 % over the prediction. The probe measures it per step
(``keep_step_bytes``: a 40-step call's backward less an 8-step one's, plus the input's
gradient where the input needs one), and a plan is charged it for its longest kept call (``_plan_one``, beside ``run_bytes``). A kept run
longer than ``keep_chunk`` (1,024) steps, such as storing everything, is cut into calls
of at most that many, which bounds the charge. The pieces are one autograd graph: the
run's outputs are returned as :class:`~mbrnn.runtime.executor.Pieces`, without a
concatenated copy.

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

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar, cast

import torch
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..errors import InfeasibleBudgetError
from ..plan import EXACT_LIMIT, Backward, Forward, ForwardKeep, Plan, summary
from ..plan.baselines import chen_cost, chen_segment
from ..sizes import format_size
from ..runtime.budget import (
    Budget,
    BudgetPlan,
    Working,
    measure_working,
    plan_recurrence,
    resolve_budget,
)
from ..runtime.executor import CheckFn, ExecStats, Pieces, SeedFn, Segment, run_plan
from ..runtime.memory import MemoryMeter
from ..runtime.probe import StepSizes
from .recurrent import _check_policy

__all__ = ["GRU", "LSTM", "RNN", "FusedPlan", "FusedSizes"]

_KERNELS: dict[str, Callable[..., Any]] = {
    "GRU": _VF.gru,
    "RNN_TANH": _VF.rnn_tanh,
    "RNN_RELU": _VF.rnn_relu,
}
_WEIGHTS_WARNING = "RNN module weights are not part of single contiguous chunk of memory"
_PROBE_LENGTHS = (1, 8, 40)
_MAX_CHUNK = 1024
_CHUNK_SHARE = 32  # a sweep's pieces use at most 1/_CHUNK_SHARE of the budget
RUN_COST_STEPS = 2  # what "auto" charges per fused call, in forward steps: NOTE [ Per-run time ]


# ---------------------------------------------------------------------------------------
# The segment: whole runs in one fused call
# ---------------------------------------------------------------------------------------


class _FusedSegment(Segment):
    """Steps ``t0+1 .. t0+L`` of one direction of some layers, in fused kernel calls.

    State: LSTM ``(h (layers, B, H_out), c (layers, B, H))``, GRU/RNN ``(h,)``.
    """

    def __init__(
        self,
        mode: str,
        weights: Sequence[Sequence[Tensor]],
        *,
        has_biases: bool,
        hidden_out: int,
        dropout: float,
        chunk: int,
        keep_chunk: int = _MAX_CHUNK,
        lengths: Tensor | None = None,
        force_packed: bool = False,
        quiet: bool = False,
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
        self, t0: int, x: Tensor, state: tuple[Tensor, ...], seed: SeedFn | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        L, B = x.shape[0], x.shape[1]
        k, lens = B, None
        if self.active is not None and self.lengths is not None:
            k = self.active[t0]
            if self.active[t0 + L - 1] != k or self.force_packed:
                lens = (self.lengths[:k] - t0).clamp_(max=L)
        xk = x if k == B else x[:, :k]
        sk = state if k == B else tuple(s[:, :k].contiguous() for s in state)
        masks = self._masks(t0, L, B, x, seed)
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
    ) -> tuple[Tensor | list[Tensor] | None, tuple[Tensor, ...]]:
        L = x.shape[0]
        step = max(1, self.keep_chunk if torch.is_grad_enabled() else self.chunk)
        ys: list[Tensor] = []
        y: Tensor | None = None
        for i in range(0, L, step):
            j = min(L, i + step)
            y, state = self._piece(t0 + i, x[i:j], state, seed)
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


# ---------------------------------------------------------------------------------------
# Sizes and plans
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FusedSizes:
    """What one recurrence of fused calls keeps, measured by the probe (bytes).

    Attributes:
        step: per step: the state, the internal state (the planner's ``internal_size``)
            and the output; see NOTE [ What a fused run keeps ].
        run_bytes: kept per fused call (run) on top of its steps.
        sweep_step_bytes: transient memory per step of a call without autograd.
        sweep_bytes: transient memory per call without autograd, on top of its steps.
        keep_step_bytes: transient memory per step of a kept call's backward (NOTE [
            Kept runs in pieces ]).
    """

    step: StepSizes
    run_bytes: int
    sweep_step_bytes: int
    sweep_bytes: int
    keep_step_bytes: int = 0


@dataclass(frozen=True)
class FusedPlan:
    """What a budgeted call runs: one plan per recurrence, with its byte figures.

    A unidirectional module is one recurrence over all its layers; a bidirectional one
    has ``2 * num_layers``, in the order ``l0, l0_reverse, l1, ...``, each planned with an
    equal share of the budget (NOTE [ Bidirectional modules and the budget ]).

    Attributes:
        plans: each recurrence's :class:`~mbrnn.runtime.budget.BudgetPlan` (its
            ``predicted_peak`` leaves out ``run_bytes``).
        run_bytes: per recurrence, what the runs its plan keeps at once hold beyond the
            planner's accounting (NOTE [ What a fused run keeps ]).
        chunks: per recurrence, the steps per fused call in a sweep that keeps nothing.
        budget: the whole budget in bytes.
        keep_chunks: per recurrence, the most steps per fused call in a kept run.
    """

    plans: tuple[BudgetPlan, ...]
    run_bytes: tuple[int, ...]
    chunks: tuple[int, ...]
    budget: int
    keep_chunks: tuple[int, ...] = ()

    @property
    def predicted_peak(self) -> int:
        """Sum of the recurrences' predicted peaks: what ``memory_budget`` bounds."""
        return sum(bp.predicted_peak + r for bp, r in zip(self.plans, self.run_bytes, strict=True))

    @property
    def forward_steps(self) -> int:
        return sum(bp.plan.forward_steps for bp in self.plans)

    @property
    def runs(self) -> int:
        """Forward runs of all plans: kernel calls, sweeps' pieces aside."""
        return sum(summary(bp.plan).runs for bp in self.plans)

    def time_overhead(self, beta: float = 2.0) -> float:
        """Predicted time against storing everything (the mean over recurrences)."""
        return sum(bp.time_overhead(beta) for bp in self.plans) / len(self.plans)

    def summary(self) -> str:
        p = self.plans[0].plan
        policies = ",".join(sorted({bp.plan.policy for bp in self.plans}))
        return (
            f"{len(self.plans)} recurrence(s), policy={policies} T={p.chain.length} "
            f"forward_steps={self.forward_steps} (time x{self.time_overhead():.3f}) "
            f"predicted_peak={format_size(self.predicted_peak)} of budget "
            f"{format_size(self.budget)}"
        )


def _live_runs(plan: Plan) -> tuple[int, int, int]:
    """``(most kept runs alive at once, forward runs, longest kept run)`` of ``plan``.

    HSM and recompute-all keep one one-step run at a time; their runs are counted from
    their shape rather than by replaying what may be hundreds of thousands of ops."""
    T = plan.chain.length
    if plan.policy in ("hsm", "recompute_all"):
        return 1, 2 * T, 1
    if plan.policy == "store_all":
        return 1, 1, T
    kept: dict[int, int] = {}
    most = runs = longest = 0
    for op in plan.ops:
        if isinstance(op, ForwardKeep):
            kept[op.stop] = op.start
            most = max(most, len(kept))
            longest = max(longest, op.stop - op.start)
            runs += 1
        elif isinstance(op, Forward):
            runs += 1
        elif isinstance(op, Backward):
            s = op.stop
            while s > op.start and s in kept:
                s = kept.pop(s)
    return most, runs, longest


_Fit = tuple[BudgetPlan, int, int]  # plan, run_bytes, runs


@lru_cache(maxsize=128)
def _plan_one(
    sizes: FusedSizes, length: int, budget: int, policy: str, working: Working, owner: str,
    batch: int, chunk: int, keep_chunk: int = _MAX_CHUNK, keep_step: int = 0,
) -> tuple[BudgetPlan, int]:
    """Plan one recurrence with ``chunk``-step sweeps and kept runs in calls of at most
    ``keep_chunk`` steps; ``(plan, run_bytes)``.

    NOTE [ Plans with per-run memory ]
    A plan that keeps ``k`` runs at once needs ``(k - 1) * run_bytes`` more than the
    planner predicts. Where that does not fit, the planner's budget is lowered: first by
    the excess, then by bisection (a few solves), keeping the cheapest plan that fits.
    ``"auto"`` does this for each policy (``msm``, ``ism``, ``hsm``, ``chen``,
    ``recompute_all``) and takes the cheapest plan by NOTE [ Per-run time ], then the
    fewest runs: with large per-run memory Chen's or HSM's plans, which keep one run at a
    time, can beat the optimal plans of the planner's cost model. A named policy that
    cannot fit, or fits only by recomputing everything, falls back on ``hsm``, then
    ``recompute_all``.

    NOTE [ Shorter segments ]
    Chen's plan re-runs about ``T`` steps in ``2 sqrt(T)`` runs: few, long runs, which on
    a CPU ran as fast as storing everything. Where its ``sqrt(T)`` segments do not fit,
    ``"auto"`` also tries Chen's plan with the longest shorter segments that fit
    (``k`` down to ``sqrt(T s / a)``, where its peak is least): the same ``~2 T`` forward
    steps in ``~2 T / k`` runs, where the planner's optimal plan at that memory has many
    short runs. ``policy="chen"`` is the baseline and keeps ``ceil(sqrt(T))``.

    NOTE [ Per-run time ]
    The planner counts forward steps; a fused call also costs a fixed time of its own
    (oneDNN reorders the weights and cuDNN sets up its descriptors on every call). On
    the CPU the README's benchmarks ran on (one thread), ``scripts/bench_calls.py``
    measured a call as 1.0 to 1.1 steps at ``B = 32, H = 256``, 3.4 to 3.6 at
    ``H = 64``, 4.7 to 5.4 at ``H = 1024``, 14 to 17 at ``B = 8`` and 0.1 at
    ``B = 128`` (steps of 64-step calls, without autograd). ``"auto"`` ranks plans by
    ``forward_steps + RUN_COST_STEPS * runs`` with ``RUN_COST_STEPS = 2``, within that
    range: each run saved is worth two forward steps. At ``T = 1000``, ``B = 32``, 5 % of the
    activation memory, that picks Chen's plan (1,992 steps in 63 runs) over the optimal
    MSM plan (1,985 steps in 149 runs), which measured 3 to 15 % slower in three benchmark
    runs. The choice stays a pure function of the probed sizes, so plans are
    reproducible.
    """
    sweep = sizes.sweep_bytes + chunk * sizes.sweep_step_bytes
    w = Working(single=working.single + sweep, multi=working.multi + sweep)

    def plan(target: int, p: str, segment: int | None = None) -> BudgetPlan:
        return plan_recurrence(sizes.step, length, target, p, w, owner=owner, batch_size=batch,
                               segment=segment)

    def fits(bp: BudgetPlan) -> tuple[_Fit | None, int]:
        live, runs, longest = _live_runs(bp.plan)
        # NOTE [ Kept runs in pieces ]: the backward of the longest call
        extra = (max(0, live - 1) * sizes.run_bytes
                 + max(0, min(longest, keep_chunk) - 1) * keep_step)
        over = bp.predicted_peak + extra - budget
        return ((bp, extra, runs) if over <= 0 else None), over

    def better(a: _Fit | None, b: _Fit | None) -> _Fit | None:
        if a is None or b is None:
            return a or b
        ka = (a[0].plan.forward_steps + RUN_COST_STEPS * a[2], a[2])
        return a if ka <= (b[0].plan.forward_steps + RUN_COST_STEPS * b[2], b[2]) else b

    def fit(p: str) -> _Fit | None:
        try:
            bp = plan(budget, p)
        except InfeasibleBudgetError:
            return None
        best, over = fits(bp)
        if best is not None or p in ("store_all", "chen", "recompute_all", "hsm"):
            return best  # these keep one run at a time: nothing to lower
        lo, hi, target = 0, budget, budget - over
        for _ in range(5):
            if not lo < target < hi:
                target = (lo + hi) // 2
            if hi - lo <= sizes.step.state_bytes:
                break
            try:
                got, over = fits(plan(target, p))
            except InfeasibleBudgetError:
                lo, target = target, (target + hi) // 2
                continue
            if got is None:
                hi, target = target, target - over
            else:
                best = better(best, got)
                lo, target = target, (target + hi) // 2
        return best

    def fit_segments() -> _Fit | None:
        """Chen's plan with the longest segments shorter than ``ceil(sqrt(T))`` that fit."""
        def attempt(k: int) -> _Fit | None:
            try:
                return fits(plan(budget, "chen", k))[0]
            except InfeasibleBudgetError:
                return None

        # Chen's peak s (n - 1) + a (k - 1), n = ceil(T / k), in closed form: with the
        # working set it bounds what a plan needs from below, so the longest k that
        # passes is tried first (the peak is not monotone in k: n jumps)
        st, a = sizes.step.state_bytes, sizes.step.internal_bytes
        floor = w.multi + st  # plan_recurrence's working set and slack
        ks = [k for k in range(chen_segment(length) - 1, 0, -1)
              if chen_cost(length, st, a, k)[1] + floor <= budget]
        for k in ks[:16]:
            got = attempt(k)
            if got is not None:
                return got
        return None

    best: _Fit | None = None
    if policy == "auto":
        names = ["store_all", "msm", "ism", "hsm", "chen"]
        fitted = {p: fit(p) for p in (
            names if length <= EXACT_LIMIT else [n for n in names if n != "ism"])}
        for got in fitted.values():
            best = better(best, got)
        if fitted["chen"] is None:  # NOTE [ Shorter segments ]
            best = better(best, fit_segments())
    else:
        plan(budget, policy)  # raises InfeasibleBudgetError below the policy's minimum
        best = fit(policy)
    quadratic = length * (length + 1) // 2
    for fallback in ("hsm", "recompute_all"):
        # a named policy whose fitting plan degenerated to recomputing everything (pure
        # ISM at a small budget: quadratic, whatever its label) also tries HSM, and
        # keeps the cheaper
        if best is None or (policy != "recompute_all" and length > 2
                            and best[0].plan.forward_steps >= quadratic):
            best = better(best, fit(fallback))
    if best is None:  # below every policy's minimum: say so, with the minimum
        plan(budget, policy)
        raise AssertionError("recompute_all keeps one one-step run at a time")  # pragma: no cover
    return best[0], best[1]


def _measure(
    segment: _FusedSegment, features: int, state_shapes: list[tuple[int, ...]],
    device: torch.device, dtype: torch.dtype,
) -> tuple[FusedSizes, list[Tensor]]:
    """Probe one recurrence's fused calls: NOTE [ What a fused run keeps ]."""
    gen = torch.Generator().manual_seed(0)
    B = state_shapes[0][1]

    def inputs(L: int, grad: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
        x = torch.randn(L, B, features, generator=gen, dtype=dtype).to(device)
        st = tuple(torch.zeros(s, dtype=dtype, device=device) for s in state_shapes)
        if grad:
            return x.requires_grad_(), tuple(s.requires_grad_() for s in st)
        return x, st

    segment.chunk = segment.keep_chunk = max(_PROBE_LENGTHS)
    kept: dict[int, int] = {}
    state_bytes = 0
    for L in _PROBE_LENGTHS:
        x, st = inputs(L, True)
        with MemoryMeter(device) as meter, torch.enable_grad():
            ys, new = segment.run(0, x, st, out=None, keep_y=True, seed=None, check=None)
            held = meter.current
        kept[L] = max(meter.peak, held)
        state_bytes = sum(t.numel() * t.element_size() for t in new)
        del ys, new
    back: dict[int, int] = {}  # a kept call's backward, beyond what the call holds
    for L in _PROBE_LENGTHS[1:]:
        x, st = inputs(L, True)
        x = x.detach()  # the input's gradient is charged by _plan where it is needed
        with torch.enable_grad():
            ys, new = segment.run(0, x, st, out=None, keep_y=True, seed=None, check=None)
        assert isinstance(ys, Tensor)
        outs = [ys, *new]
        grads = [torch.ones_like(o) for o in outs]
        with MemoryMeter(device) as meter:
            torch.autograd.grad(outs, [*st, *segment.flat], grads, allow_unused=True)
        back[L] = meter.peak
        del ys, new, outs, grads
    swept: dict[int, int] = {}
    for L in _PROBE_LENGTHS[1:]:
        x, st = inputs(L, False)
        with MemoryMeter(device) as meter, torch.no_grad():
            segment.run(0, x, st, out=None, keep_y=False, seed=None, check=None)
        swept[L] = meter.peak
    L1, L2 = _PROBE_LENGTHS[1:]
    internal = max(state_bytes, math.ceil((kept[L2] - kept[L1]) / (L2 - L1)))
    run_bytes = max(0, *(kept[L] - L * internal for L in _PROBE_LENGTHS))
    sweep_step = max(0, math.ceil((swept[L2] - swept[L1]) / (L2 - L1)))
    sweep = max(0, *(swept[L] - L * sweep_step for L in (L1, L2)))
    keep_step = max(0, math.ceil((back[L2] - back[L1]) / (L2 - L1)))
    elt = torch.empty((), dtype=dtype).element_size()
    step = StepSizes(
        state_bytes=state_bytes,
        internal_bytes=internal,
        output_bytes=B * segment.hidden_out * elt,
        saved_bytes=internal,
    )
    x1, st1 = inputs(1, False)
    return FusedSizes(step, run_bytes, sweep_step, sweep, keep_step), [x1[0], *st1]


# ---------------------------------------------------------------------------------------
# The modules
# ---------------------------------------------------------------------------------------


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

    memory_budget: Budget
    policy: str
    _torch_class: type[nn.RNNBase]

    def _init_budget(self, memory_budget: Budget, policy: str) -> None:
        name = type(self).__name__
        if memory_budget is not None:
            resolve_budget(memory_budget, torch.device("cpu"), owner=name)  # validate
        self.memory_budget = memory_budget
        self.policy = _check_policy(name, policy)
        self._sizes: dict[tuple[Any, ...], tuple[FusedSizes, Working]] = {}
        self.last_plan: FusedPlan | None = None
        self.last_stats: tuple[ExecStats, ...] | None = None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, memory_budget={self.memory_budget!r}, policy={self.policy!r}"

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_torch(cls: type[_R], module: nn.RNNBase, *, memory_budget: Budget = None,
                   policy: str = "auto") -> _R:
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
                 keep_chunk: int = _MAX_CHUNK, lengths: Tensor | None = None,
                 force_packed: bool = False) -> _FusedSegment:
        return _FusedSegment(
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
        layers, _, features = self._recurrences()[index]
        key = (layers, features, B, device, dtype, self._dropout_active(), packed,
               torch.is_autocast_enabled(device.type))
        hit = self._sizes.get(key)
        if hit is not None:
            return hit
        params = [w for ws in self._weights(layers, 0) for w in ws]
        shapes = self._state_shapes(len(layers), B)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            seg = self._segment(layers, 0)
            sizes, example = _measure(seg, features, shapes, device, dtype)
            if packed:  # the kernel's packed variant keeps its own figures (ATen on CPU)
                lengths = torch.full((B,), max(_PROBE_LENGTHS), dtype=torch.int64)
                seg_p = self._segment(layers, 0, lengths=lengths, force_packed=True)
                sp, _ = _measure(seg_p, features, shapes, device, dtype)
                sizes = FusedSizes(
                    StepSizes(sizes.step.state_bytes,
                              max(sizes.step.internal_bytes, sp.step.internal_bytes),
                              sizes.step.output_bytes, sizes.step.saved_bytes),
                    max(sizes.run_bytes, sp.run_bytes),
                    max(sizes.sweep_step_bytes, sp.sweep_step_bytes),
                    max(sizes.sweep_bytes, sp.sweep_bytes),
                    max(sizes.keep_step_bytes, sp.keep_step_bytes),
                )
            seg.chunk = seg.keep_chunk = 1
            working = measure_working(
                cast(Any, seg), example[0], tuple(example[1:]), params, sizes.step)
        self._sizes[key] = (sizes, working)
        return sizes, working

    # --- planning --------------------------------------------------------------------------

    def _plan(self, T: int, B: int, budget: int, device: torch.device, dtype: torch.dtype,
              packed: bool, input_grad: bool = True) -> FusedPlan:
        name = type(self).__name__
        recs = self._recurrences()
        share = budget // len(recs)
        plans: list[BudgetPlan] = []
        extras: list[int] = []
        chunks: list[int] = []
        keeps: list[int] = []
        minimum = 0
        for i in range(len(recs)):
            sizes, working = self._probe(i, B, device, dtype, packed)
            chunk = 1
            if sizes.sweep_step_bytes > 0:
                chunk = max(1, min(_MAX_CHUNK, share // (_CHUNK_SHARE * sizes.sweep_step_bytes)))
            else:
                chunk = _MAX_CHUNK
            keep = _MAX_CHUNK
            # NOTE [ Kept runs in pieces ]: a call's backward also returns its input's
            # gradient where the input needs one (later layers' always do)
            layers, _, features = recs[i]
            x_grad = input_grad or layers[0] > 0
            elt = torch.empty((), dtype=dtype).element_size()
            keep_step = sizes.keep_step_bytes + (B * features * elt if x_grad else 0)
            try:
                try:
                    bp, extra = _plan_one(sizes, T, share, self.policy, working, name, B, chunk,
                                          keep, keep_step)
                except InfeasibleBudgetError:  # the smallest budgets sweep one step per call
                    chunk = 1
                    bp, extra = _plan_one(sizes, T, share, self.policy, working, name, B, chunk,
                                          keep, keep_step)
            except InfeasibleBudgetError as e:
                minimum = max(minimum, int(e.minimum))
                if len(recs) == 1:
                    raise
                continue
            plans.append(bp)
            extras.append(extra)
            chunks.append(chunk)
            keeps.append(keep)
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
        return FusedPlan(tuple(plans), tuple(extras), tuple(chunks), budget, tuple(keeps))

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
        memory_budget: Budget | str = "module",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        packed: bool = False,
        input_requires_grad: bool = True,
    ) -> FusedPlan:
        """The plan a call with this length and batch would run, without running it.

        Probes the fused kernel once per batch size, device and dtype (a few short calls)
        and plans; the :class:`FusedPlan` holds the plans, ``.predicted_peak`` (bytes,
        what ``memory_budget`` bounds) and ``.time_overhead()`` against storing
        everything. ``memory_budget`` defaults to the module's own; ``None`` plans
        with an unbounded budget (storing everything). ``packed=True`` plans for a
        ``PackedSequence`` input; ``input_requires_grad=False`` for an input that needs
        no gradient (a call's backward then returns none: NOTE [ Kept runs in pieces ]).
        """
        name = type(self).__name__
        for arg, value in (("seq_len", seq_len), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}.plan_for: {arg} must be an int >= 1, got {value!r}")
        dev, dt = self._where(device, dtype)
        arg = self.memory_budget if memory_budget == "module" else memory_budget
        budget = resolve_budget(arg, dev, owner=name)
        return self._plan(seq_len, batch_size, 2**62 if budget is None else budget, dev, dt,
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

    def _budgeted(self, input: Any, hx: Any) -> Any:
        name = type(self).__name__
        x, flat, lengths, unbatched, packed = self._prepare(input, hx)
        T, B, _ = x.shape
        budget = resolve_budget(self.memory_budget, x.device, owner=name)
        assert budget is not None
        fplan = self._plan(T, B, budget, x.device, x.dtype, packed is not None,
                           x.requires_grad)
        stats: list[ExecStats] = []

        def run(i: int, xin: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
            layers, d, _ = self._recurrences()[i]
            seg = self._segment(layers, d, chunk=fplan.chunks[i], keep_chunk=fplan.keep_chunks[i],
                                lengths=lengths)
            params = tuple(seg.flat)
            y, final, st = run_plan(seg, xin, state, params, fplan.plans[i].plan)
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
            ``"auto"`` (what is free on the input's device at call time: on CUDA the free
            memory minus ``max(AUTO_CUDA_MARGIN, 5 % of the device)``, on CPU
            ``AUTO_CPU_FRACTION`` of the available RAM; see :mod:`mbrnn.runtime.budget`)
            or a float in (0, 1], that fraction of ``"auto"``. It bounds what
            back-propagation keeps (checkpoints, kept runs, the executor's working set),
            not the input, the output or their gradients, nor, for bidirectional
            modules, each layer's output sequence (NOTE [ Bidirectional modules and the
            budget ]).
        policy: keyword-only. ``"auto"`` (default: the fewest recomputed steps, each
            fused call counted as ``RUN_COST_STEPS`` steps, so fewer and longer runs win
            near-ties; Chen's plan with shorter segments is among the candidates: NOTE [
            Per-run time ], NOTE [ Shorter segments ]) or any planner policy:
            ``"store_all"``, ``"recompute_all"``, ``"chen"``, ``"hsm"``, ``"ism"``,
            ``"msm"``.

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
        memory_budget: Budget = None,
        policy: str = "auto",
    ) -> None:
        nn.LSTM.__init__(self, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)
        self._init_budget(memory_budget, policy)


class GRU(_BudgetedRNN, nn.GRU):
    r"""``torch.nn.GRU`` with budgeted BPTT on fused kernels.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype: exactly as :class:`torch.nn.GRU`.
        memory_budget, policy: keyword-only, as in :class:`LSTM`.

    Inputs: input, h_0 / Outputs: output, h_n
        As :class:`torch.nn.GRU`; for packed input ``h_n`` holds each sequence's last
        valid step, in the caller's order. ``last_plan``, ``last_stats``: as in
        :class:`LSTM`.

    Example::

        >>> gru = mbrnn.GRU(64, 128, num_layers=2, memory_budget=0.25)
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
        memory_budget: Budget = None,
        policy: str = "auto",
    ) -> None:
        nn.GRU.__init__(self, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                        bidirectional, device=device, dtype=dtype)
        self._init_budget(memory_budget, policy)


class RNN(_BudgetedRNN, nn.RNN):
    r"""``torch.nn.RNN`` (Elman, ``tanh`` or ``relu``) with budgeted BPTT on fused kernels.

    Args:
        input_size, hidden_size, num_layers, nonlinearity, bias, batch_first,
            dropout, bidirectional, device, dtype: exactly as :class:`torch.nn.RNN`.
        memory_budget, policy: keyword-only, as in :class:`LSTM`.

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
        memory_budget: Budget = None,
        policy: str = "auto",
    ) -> None:
        nn.RNN.__init__(self, input_size, hidden_size, num_layers, nonlinearity, bias,
                        batch_first, dropout, bidirectional, device=device, dtype=dtype)
        self._init_budget(memory_budget, policy)
