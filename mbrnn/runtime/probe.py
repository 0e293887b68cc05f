"""Measure a recurrent cell's per-step sizes for the planner's cost model.

The planner (Gruslys et al., 2016) needs two numbers per recurrence: what keeping one
hidden state costs (``Chain.state_size``) and what keeping one step's internal state
costs (``Chain.internal_size``: everything autograd saves to back-propagate that step,
its output state included). :func:`probe_step` runs one step under autograd and reads
both off the tensors autograd actually saves; :func:`chain_for` turns them into a
:class:`~mbrnn.plan.Chain`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch

from ..plan import Chain, simulate, solve
from .fit import Working
from .memory import MemoryMeter, _storage_of, _StorageTracker, measure_peak
from .state import State, StateSpec, describe_state, state_flatten, state_unflatten

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["PROBE_LENGTHS", "FusedSizes", "State", "StepSizes", "Working", "chain_for", "measure_working",
           "probe_cell", "probe_fused", "probe_recurrence", "probe_step",
           "probe_step_recurrence"]

# NOTE [ What keeping a step costs ]
# In a chain of kept steps t = 1..k, step t's graph holds what autograd saved for it.
# Of that, the parameters, x_t and the input state s_{t-1} are not the step's own:
# parameters and inputs live anyway, and s_{t-1} is step t-1's output, counted there.
# So a step's own cost is the saved storages it allocated, plus its output state s_t,
# which the planner always counts inside the internal state (``Chain.internal_size``).
# That last term is exact when every part of s_t is saved by someone (the Elman cell:
# tanh saves h'; or the next step: h @ U^T saves h). Where part of s_t is saved by no
# backward (an LSTM whose h only feeds a cat, which copies it), torch frees that part
# as soon as the chain moves on, and the probe over-counts it: ``internal_bytes`` is
# then an upper bound, by at most ``state_bytes`` per step.

@dataclass(frozen=True)
class StepSizes:
    """Bytes one recurrent step keeps, as measured by :func:`probe_step`.

    Args:
        state_bytes: one hidden state (the step's output state), unique storages.
            The planner's ``state_size``.
        internal_bytes: what keeping the step costs in a chain of kept steps: the
            storages autograd saves for the step's backward that the step itself
            allocated (not parameters, the input ``x`` or the input state, which is
            the previous step's output), plus the output state. ``>= state_bytes``.
            The planner's ``internal_size``.
        output_bytes: the step's output ``y``.
        saved_bytes: every storage autograd saves for the step except parameters and
            ``x`` (so the input state is included). For reference only.
    """

    state_bytes: int
    internal_bytes: int
    output_bytes: int
    saved_bytes: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"StepSizes: {f.name} must be an int, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"StepSizes: {f.name} must be >= 0, got {value}")
        if self.internal_bytes < self.state_bytes:
            raise ValueError(
                f"StepSizes: internal_bytes={self.internal_bytes} is below state_bytes="
                f"{self.state_bytes}; a step's internal state includes its output state"
            )


def _flatten(state: object, where: str) -> tuple[list[torch.Tensor], StateSpec]:
    """:func:`state_flatten`, with the probe's messages: what is wrong, and where."""

    def check(node: object, path: str) -> None:
        if isinstance(node, torch.Tensor):
            return
        if type(node) is tuple and node:
            for i, child in enumerate(node):
                check(child, f"{path}[{i}]")
            return
        got = "an empty tuple" if type(node) is tuple else type(node).__name__
        hint = " (use a tuple, not a list)" if isinstance(node, list) else ""
        raise TypeError(
            f"{path} must be a Tensor or a non-empty, possibly nested, tuple of Tensors, "
            f"got {got}{hint}"
        )

    check(state, where)
    return state_flatten(state)  # pyright: ignore[reportArgumentType]


def _unique_storages(tensors: Iterable[torch.Tensor]) -> dict[int, torch.UntypedStorage]:
    """Storage key -> storage, each storage once however many views share it."""
    out: dict[int, torch.UntypedStorage] = {}
    for t in tensors:
        s = _storage_of(t)
        if s is not None:
            out[s._cdata] = s
    return out


def _describe(tensors: list[torch.Tensor], spec: StateSpec) -> str:
    return describe_state(state_unflatten(tensors, spec))


def probe_step(
    step_fn: Callable[[torch.Tensor, State], tuple[torch.Tensor, State]],
    x: torch.Tensor,
    state: State,
) -> StepSizes:
    r"""Run one recurrent step under autograd and measure what it keeps.

    The step runs with grad enabled. The state is detached and, where it is floating
    point, made to require grad, so that autograd saves what it would in BPTT; ``x`` is
    used as given and parameters require grad as they are. Tensors autograd saves are
    seen through :func:`torch.autograd.graph.saved_tensors_hooks` and counted once per
    storage, views included. A saved storage counts towards ``internal_bytes`` only if
    the step allocated it: parameters, ``x``, the input state and anything else that
    existed before the step are kept by someone else anyway.

    Args:
        step_fn: one step, ``step_fn(x, state) -> (y, new_state)``; a cell works.

    Inputs: x, state
        - **x**: the step's input, e.g. of shape :math:`(B, F)`.
        - **state**: a tensor or a (possibly nested) tuple of tensors, e.g.
          ``cell.init_state(B)``.

    Outputs: sizes
        - **sizes**: a :class:`StepSizes`, in bytes.

    Example::

        >>> cell = torch.nn.RNNCell(4, 8)
        >>> sizes = probe_step(lambda x, h: (cell(x, h),) * 2, torch.randn(2, 4), torch.zeros(2, 8))
        >>> sizes.state_bytes
        64
    """
    if not callable(step_fn):
        raise TypeError(
            f"probe_step: step_fn must be callable as step_fn(x, state) -> (y, new_state), "
            f"got {type(step_fn).__name__}"
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"probe_step: x must be a Tensor, got {type(x).__name__}")
    leaves, spec = _flatten(state, "probe_step: state")
    state_in = [t.detach().requires_grad_(t.is_floating_point() or t.is_complex()) for t in leaves]

    new: set[int] = set()  # saved storages the step allocated
    saved: dict[int, int] = {}  # every saved storage: key -> nbytes
    keep: list[torch.UntypedStorage] = []  # keeps keys valid until we are done

    tracker = _StorageTracker()

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = _storage_of(t)
        if s is not None:
            keep.append(s)
            saved[s._cdata] = s.nbytes()
            if tracker.owns(s):
                new.add(s._cdata)
        return t.detach()  # t itself may hold its grad_fn: a reference cycle

    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    try:
        hooks = torch.autograd.graph.saved_tensors_hooks(pack, unpack)
        with torch.enable_grad(), hooks, tracker:
            result = step_fn(x, state_unflatten(state_in, spec))
        y, state_out, spec_out = _check_result(result)
        if spec_out != spec or [(t.shape, t.dtype) for t in state_out] != [
            (t.shape, t.dtype) for t in state_in
        ]:
            raise ValueError(
                "probe_step: step_fn must return a new_state of the same structure, shapes and "
                f"dtypes as state; got {_describe(state_out, spec_out)} for state "
                f"{_describe(state_in, spec)}"
            )
        out_storages = _unique_storages(state_out)
        # the output state is kept with the step even where autograd does not save it
        fresh_out = [
            s.nbytes() for k, s in out_storages.items() if k not in new and tracker.owns(s)
        ]
        input_keys = _unique_storages(state_in).keys()
        state_bytes = sum(s.nbytes() for s in out_storages.values())
        output_bytes = sum(s.nbytes() for s in _unique_storages([y]).values())
    finally:
        tracker.close()

    internal = sum(saved[k] for k in new) + sum(fresh_out)
    return StepSizes(
        state_bytes=state_bytes,
        internal_bytes=max(internal, state_bytes),
        output_bytes=output_bytes,
        saved_bytes=sum(n for k, n in saved.items() if k in new or k in input_keys),
    )


def _check_result(result: object) -> tuple[torch.Tensor, list[torch.Tensor], StateSpec]:
    if not (isinstance(result, tuple) and len(result) == 2):
        got = type(result).__name__
        if isinstance(result, tuple):
            got += f" of length {len(result)}"
        raise TypeError(f"probe_step: step_fn must return a pair (y, new_state), got {got}")
    y, new_state = result
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"probe_step: step_fn must return y as a Tensor, got {type(y).__name__}")
    return (y, *_flatten(new_state, "probe_step: step_fn's new_state"))


def probe_cell(
    cell: torch.nn.Module,
    *,
    input_size: int,
    batch_size: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> StepSizes:
    r"""Measure one step of ``cell`` on a random input: :func:`probe_step` for a cell.

    ``cell`` follows the cell contract: a module with
    ``init_state(batch_size, *, device=None, dtype=None)`` returning a tensor or a
    (possibly nested) tuple of tensors, and ``forward(x, state) -> (y, new_state)``. The input is drawn from a
    private generator, so the global RNG is left alone. The cell keeps its mode
    (``train()`` saves dropout masks, as training would).

    Args:
        cell: the cell to probe.
        input_size: features of one step's input, :math:`F`.
        batch_size: batch size, :math:`B`.
        device: where to run. Default: the device of the cell's first parameter, else
            ``torch.get_default_device()``.
        dtype: the input's and state's dtype. Default: the dtype of the cell's first
            floating-point parameter, else ``torch.get_default_dtype()``.

    Example::

        >>> sizes = probe_cell(MyLSTMCell(16, 32), input_size=16, batch_size=4)
        >>> chain = chain_for(sizes, length=1000)
    """
    if not isinstance(cell, torch.nn.Module):
        raise TypeError(f"probe_cell: cell must be a torch.nn.Module, got {type(cell).__name__}")
    init_state = getattr(cell, "init_state", None)
    if not callable(init_state):
        raise TypeError(
            f"probe_cell: cell {type(cell).__name__} has no init_state(batch_size, *, device, "
            "dtype) method; subclass mbrnn's Cell or add one"
        )
    for name, value in (("input_size", input_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"probe_cell: {name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"probe_cell: {name} must be >= 1, got {value}")
    params = list(cell.parameters())
    if device is None:
        device = params[0].device if params else torch.get_default_device()
    device = torch.device(device)
    if dtype is None:
        floats = [p.dtype for p in params if p.is_floating_point()]
        dtype = floats[0] if floats else torch.get_default_dtype()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, input_size, generator=generator, dtype=dtype).to(device)
    tensors, spec = _flatten(
        init_state(batch_size, device=device, dtype=dtype), "probe_cell: cell.init_state(...)"
    )
    return probe_step(cell, x, state_unflatten(tensors, spec))


@dataclass(frozen=True)
class FusedSizes:
    """What one recurrence of fused kernel calls keeps, measured by :func:`probe_fused`.

    Attributes:
        step: per step: the state, the internal state (the planner's ``internal_size``)
            and the output.
        run_bytes: held per kept call on top of its steps (the chain's ``run_size``).
        sweep_step_bytes: transient memory per step of a call without autograd.
        sweep_bytes: transient memory per call without autograd, on top of its steps.
        keep_step_bytes: transient memory per step of a kept call's backward.
    """

    step: StepSizes
    run_bytes: int
    sweep_step_bytes: int
    sweep_bytes: int
    keep_step_bytes: int = 0


def chain_for(
    sizes: StepSizes | FusedSizes,
    length: int,
    *,
    chunk: int = 1,
    keep_chunk: int = 0,
    backward_step_bytes: int | None = None,
) -> Chain:
    """The planner's cost model, in bytes, for ``length`` steps of a probed recurrence.

    A cell probed by :func:`probe_step` has the paper's two sizes; a fused recurrence
    (:func:`probe_fused`) adds the executor's terms for sweeps of ``chunk`` steps per
    call and kept calls of at most ``keep_chunk`` steps (``backward_step_bytes``
    overrides the measured backward transient per step, e.g. to add the input's gradient).

    Example::

        >>> chain_for(StepSizes(256, 768, 256, 1024), 100)
        Chain(length=100, state_size=256.0, internal_size=768.0)
    """
    step = sizes.step if isinstance(sizes, FusedSizes) else sizes
    if not isinstance(step, StepSizes):
        raise TypeError(f"chain_for: sizes must be a StepSizes or FusedSizes, got "
                        f"{type(sizes).__name__}")
    if step.state_bytes == 0:
        raise ValueError(
            "chain_for: sizes.state_bytes=0; the probed step has no state to keep, so there "
            "is nothing to plan; probe a step whose state holds memory"
        )
    if not isinstance(sizes, FusedSizes):
        return Chain(length, float(step.state_bytes), float(step.internal_bytes))
    back = sizes.keep_step_bytes if backward_step_bytes is None else backward_step_bytes
    return Chain(length, float(step.state_bytes), float(step.internal_bytes),
                 run_size=float(sizes.run_bytes),
                 sweep_size=float(sizes.sweep_bytes + chunk * sizes.sweep_step_bytes),
                 backward_step_size=float(back), call_steps=keep_chunk)


# ---------------------------------------------------------------------------------------
# Fused kernels: what a call keeps, per step and per call
# ---------------------------------------------------------------------------------------

#: Lengths of the probe's fused calls; the slope between the last two is per step.
PROBE_LENGTHS: tuple[int, int, int] = (1, 8, 40)


def probe_fused(
    segment: Any,
    features: int,
    state_shapes: Sequence[tuple[int, ...]],
    device: torch.device,
    dtype: torch.dtype,
    *,
    make_input: Callable[[int], torch.Tensor] | None = None,
    lengths: tuple[int, int, int] = PROBE_LENGTHS,
) -> tuple[FusedSizes, list[torch.Tensor]]:
    """Measure one recurrence's fused calls (a :class:`~mbrnn.runtime.fused.FusedSegment`).

    NOTE [ What a fused run keeps ]
    A fused call keeps a per-step part (oneDNN's workspace, the outputs, the gates) and a
    per-call part (oneDNN's workspace header, cuDNN's reserve header, the final states).
    The segment runs under :class:`~mbrnn.runtime.memory.MemoryMeter` on 1, 8 and 40
    steps: the slope is the planner's ``internal_size`` (the transient memory of a
    running call folded in, so it is an upper bound), the remainder is the per-call part
    ``run_bytes``. The same three ways measure a call without autograd (a sweep's
    transient, per step and per call) and a kept call's backward (its transient per step).

    ``make_input(L)`` builds an ``(L, B, ...)`` input where it is not ``features`` floats
    (token ids, say); such an input never needs a gradient. ``lengths`` replaces the three
    probe lengths where a step is large (a language model's readout: the probe's own peak
    must stay small).

    Returns:
        ``(sizes, example)``: the sizes, and one step's input and state tensors.
    """
    gen = torch.Generator().manual_seed(0)
    B = state_shapes[0][1]

    def inputs(L: int, grad: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if make_input is None:
            x = torch.randn(L, B, features, generator=gen, dtype=dtype).to(device)
        else:
            x = make_input(L)
        st = tuple(torch.zeros(s, dtype=dtype, device=device) for s in state_shapes)
        if grad:
            if x.is_floating_point():
                x = x.requires_grad_()
            return x, tuple(t.requires_grad_() for t in st)
        return x, st

    chunk, keep_chunk = segment.chunk, segment.keep_chunk
    segment.chunk = segment.keep_chunk = max(lengths)
    try:
        kept: dict[int, int] = {}
        state_bytes = 0
        for L in lengths:
            x, st = inputs(L, True)
            with MemoryMeter(device) as meter, torch.enable_grad():
                ys, new = segment.run(0, x, st, out=None, keep_y=True, seed=None, check=None)
                held = meter.current
            kept[L] = max(meter.peak, held)
            state_bytes = sum(t.numel() * t.element_size() for t in new)
            del ys, new
        back: dict[int, int] = {}  # a kept call's backward, beyond what the call holds
        for L in lengths[1:]:
            x, st = inputs(L, True)
            x = x.detach()  # the input's gradient is charged where it is needed
            with torch.enable_grad():
                ys, new = segment.run(0, x, st, out=None, keep_y=True, seed=None, check=None)
            outs = [ys, *new]
            grads = [torch.ones_like(o) for o in outs]
            with MemoryMeter(device) as meter:
                torch.autograd.grad(outs, [*st, *segment.grad_params], grads, allow_unused=True)
            back[L] = meter.peak
            del ys, new, outs, grads
        swept: dict[int, int] = {}
        for L in lengths[1:]:
            x, st = inputs(L, False)
            with MemoryMeter(device) as meter, torch.no_grad():
                segment.run(0, x, st, out=None, keep_y=False, seed=None, check=None)
            swept[L] = meter.peak
    finally:
        segment.chunk, segment.keep_chunk = chunk, keep_chunk
    L1, L2 = lengths[1:]
    internal = max(state_bytes, math.ceil((kept[L2] - kept[L1]) / (L2 - L1)))
    run_bytes = max(0, *(kept[L] - L * internal for L in lengths))
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


def probe_step_recurrence(
    step: Callable[[torch.Tensor, tuple[torch.Tensor, ...]],
                   tuple[torch.Tensor, tuple[torch.Tensor, ...]]],
    x: torch.Tensor,
    state: tuple[torch.Tensor, ...],
    params: Sequence[torch.Tensor],
) -> tuple[StepSizes, Working]:
    """What one step keeps (:func:`probe_step`) and the executor's working set beside it
    (:func:`measure_working`), for a per-step recurrence; the global RNG is left alone."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        sizes = probe_step(step, x, state)  # pyright: ignore[reportArgumentType]
        working = measure_working(step, x, state, params, chain_for(sizes, 4))
    return sizes, working


def probe_recurrence(
    segment: Callable[[torch.Tensor | None], Any],
    features: int,
    state_shapes: Sequence[tuple[int, ...]],
    params: Sequence[torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
    *,
    packed: bool = False,
) -> tuple[FusedSizes, Working]:
    """What one fused recurrence keeps and the executor's working set beside it.

    ``segment(lengths)`` builds the recurrence's segment (``lengths=None``: every
    sequence runs every step). With ``packed=True`` the kernel's packed variant is
    probed too (ATen keeps other figures for it on CPU) and the larger of each figure
    kept. The global RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        seg = segment(None)
        sizes, example = probe_fused(seg, features, state_shapes, device, dtype)
        if packed:
            lengths = torch.full((state_shapes[0][1],), max(PROBE_LENGTHS), dtype=torch.int64)
            sp, _ = probe_fused(segment(lengths), features, state_shapes, device, dtype)
            sizes = FusedSizes(
                StepSizes(sizes.step.state_bytes,
                          max(sizes.step.internal_bytes, sp.step.internal_bytes),
                          sizes.step.output_bytes, sizes.step.saved_bytes),
                max(sizes.run_bytes, sp.run_bytes),
                max(sizes.sweep_step_bytes, sp.sweep_step_bytes),
                max(sizes.sweep_bytes, sp.sweep_bytes),
                max(sizes.keep_step_bytes, sp.keep_step_bytes),
            )
        seg.chunk = seg.keep_chunk = 1  # the working set of one-step calls, as planned
        working = measure_working(seg, example[0], tuple(example[1:]), params,
                                  chain_for(sizes, 4, chunk=1, keep_chunk=1))
    return sizes, working


# ---------------------------------------------------------------------------------------
# The executor's working set
# ---------------------------------------------------------------------------------------


def measure_working(
    step: Any,
    x: torch.Tensor,
    state: tuple[torch.Tensor, ...],
    params: Sequence[torch.Tensor],
    chain: Chain,
) -> Working:
    """Measure the executor's working set by running it on a few steps.

    Two tiny executions, measured with :func:`~mbrnn.runtime.memory.measure_peak`: Chen's
    plan on four steps (two kept runs of two steps: the figure for multi-step runs) and
    recomputing everything on three (one-step runs). Both back-propagate several runs,
    so both include the running sum of parameter gradients next to a run's own, and the
    caller holds the final state through the backward, as a training loop does. The
    working set is the measured peak less the outputs and less ``simulate(plan).peak`` on
    ``chain`` (its sizes and executor terms; the length is the probe's): the internal state
    of the step being back-propagated, the running state, the incoming state gradient,
    autograd's temporaries, the gradients each run returns and their running sum.

    Args:
        step: a step function or a :class:`~mbrnn.runtime.executor.Segment`.
        x: one step's input; ``state``: one step's state tensors.
        params: the tensors ``step`` uses that may need a gradient.
        chain: the sizes to subtract, as the plan will be simulated.
    """
    from .executor import run_plan

    out_bytes = None

    def once(policy: str, T: int) -> int:
        nonlocal out_bytes
        probe_chain = chain.with_length(T)
        xs = x.detach().unsqueeze(0).expand(T, *x.shape)
        plan = solve(probe_chain, probe_chain.store_all_peak * 4, policy)

        def run() -> None:
            nonlocal out_bytes
            st = tuple(t.detach().clone() for t in state)  # allocated inside, as in a call
            # the caller holds the final state through the backward, as a user's loop does
            y, final, _ = run_plan(step, xs, st, params, plan, preserve_rng_state=False)
            out_bytes = y.numel() * y.element_size()
            y.sum().backward(inputs=[p for p in params if p.requires_grad])
            del final

        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            peak = measure_peak(run, device=x.device)
        assert out_bytes is not None
        return max(0, int(peak - out_bytes - simulate(plan).peak))

    leaves = [p for p in params if p.is_leaf]  # a view (a wrapped weight) keeps no .grad
    saved = [p.grad for p in leaves]
    try:
        multi, single = once("chen", 4), once("recompute_all", 3)
    finally:
        for p, g in zip(leaves, saved, strict=True):
            p.grad = g
    return Working(single=single, multi=max(single, multi))
