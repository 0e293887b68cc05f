"""Measure a recurrent cell's per-step sizes for the planner's cost model.

The planner (Gruslys et al., 2016) needs two numbers per recurrence: what keeping one
hidden state costs (``Chain.state_size``) and what keeping one step's internal state
costs (``Chain.internal_size``: everything autograd saves to back-propagate that step,
its output state included). :func:`probe_step` runs one step under autograd and reads
both off the tensors autograd actually saves; :func:`chain_for` turns them into a
:class:`~mbrnn.plan.Chain`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, TypeAlias, Union

import torch

from ..plan import Chain
from .memory import _storage_of, _StorageTracker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = ["State", "StepSizes", "chain_for", "probe_cell", "probe_step"]

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

# A recurrent state: one tensor, or a (possibly nested) plain tuple of tensors.
State: TypeAlias = Union[torch.Tensor, tuple["State", ...]]  # noqa: UP007 (recursive alias)
# A state's structure with the tensors taken out: None for a tensor, else a tuple.
_Spec: TypeAlias = Union[tuple["_Spec", ...], None]  # noqa: UP007 (recursive alias)


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


def _flatten_into(node: object, out: list[torch.Tensor], where: str) -> _Spec:
    """Append ``node``'s tensors to ``out``; return its structure (``None`` for a tensor)."""
    if isinstance(node, torch.Tensor):
        out.append(node)
        return None
    if type(node) is tuple and node:
        return tuple(_flatten_into(child, out, f"{where}[{i}]") for i, child in enumerate(node))
    got = "an empty tuple" if type(node) is tuple else type(node).__name__
    hint = " (use a tuple, not a list)" if isinstance(node, list) else ""
    raise TypeError(
        f"{where} must be a Tensor or a non-empty, possibly nested, tuple of Tensors, "
        f"got {got}{hint}"
    )


def _flatten(state: object, where: str) -> tuple[list[torch.Tensor], _Spec]:
    out: list[torch.Tensor] = []
    return out, _flatten_into(state, out, where)


def _unflatten(spec: _Spec, tensors: Iterator[torch.Tensor]) -> State:
    if spec is None:
        return next(tensors)
    return tuple(_unflatten(child, tensors) for child in spec)


def _unique_storages(tensors: Iterable[torch.Tensor]) -> dict[int, torch.UntypedStorage]:
    """Storage key -> storage, each storage once however many views share it."""
    out: dict[int, torch.UntypedStorage] = {}
    for t in tensors:
        s = _storage_of(t)
        if s is not None:
            out[s._cdata] = s
    return out


def _describe(tensors: list[torch.Tensor], spec: _Spec) -> str:
    it = iter(tensors)

    def show(node: _Spec) -> str:
        if node is None:
            t = next(it)
            return f"{list(t.shape)} {t.dtype}"
        return (
            "(" + ", ".join(show(child) for child in node) + ("," if len(node) == 1 else "") + ")"
        )

    return show(spec)


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
            result = step_fn(x, _unflatten(spec, iter(state_in)))
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


def _check_result(result: object) -> tuple[torch.Tensor, list[torch.Tensor], _Spec]:
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
    return probe_step(cell, x, _unflatten(spec, iter(tensors)))


def chain_for(sizes: StepSizes, length: int) -> Chain:
    """The planner's cost model for ``length`` steps of a probed cell.

    Args:
        sizes: what :func:`probe_step` or :func:`probe_cell` measured.
        length: number of time steps ``T``.

    Example::

        >>> chain_for(StepSizes(256, 768, 256, 1024), 100)
        Chain(length=100, state_size=256.0, internal_size=768.0)
    """
    if not isinstance(sizes, StepSizes):
        raise TypeError(f"chain_for: sizes must be a StepSizes, got {type(sizes).__name__}")
    if sizes.state_bytes == 0:
        raise ValueError(
            "chain_for: sizes.state_bytes=0; the probed step has no state to keep, so there "
            "is nothing to plan; probe a step whose state holds memory"
        )
    return Chain(length, float(sizes.state_bytes), float(sizes.internal_bytes))
