"""``Recurrent``: any cell, back-propagated through time within a memory budget.

After Gruslys et al., "Memory-Efficient Backpropagation Through Time" (NeurIPS 2016).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..budget import Budget, BudgetLike, resolve_budget
from ..errors import InfeasibleBudgetError
from ..plan import check_policy
from ..plan.buckets import BUCKET_RATIO
from ..runtime.executor import ExecStats, run_plan
from ..runtime.fit import RecurrencePlan, Working, fit
from ..runtime.probe import StepSizes, chain_for, probe_step_recurrence
from ..runtime.state import State, StateSpec, state_flatten, state_map, state_unflatten
from .cell import Cell

__all__ = ["Recurrent"]

def check_bucket_ratio(owner: str, ratio: object) -> float:
    """``ratio`` as a float >= 1, or a ``ValueError`` naming ``owner``."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (
            math.isfinite(ratio) and ratio >= 1.0):
        raise ValueError(f"{owner}: bucket_ratio must be a number >= 1 (1 plans every "
                         f"length on its own), got {ratio!r}")
    return float(ratio)


def without_last_call(state: dict[str, Any]) -> dict[str, Any]:
    """A budgeted module's pickled state without its last call's plan and statistics (a
    plan's ops are generated lazily by closures); the probed sizes and resolved budgets
    travel, so ``torch.save(module)`` and multiprocessing work after a call."""
    return {**state, "last_plan": None, "last_stats": None}


#: ``plan_for``'s default: the module's own budget.
_OWN: Any = object()
#: An unbounded budget in bytes (``memory_budget=None`` in ``plan_for``): storing all fits.
UNBOUNDED = 2**62


class Recurrent(nn.Module):
    r"""Run a :class:`~mbrnn.nn.cell.Cell` over a sequence with budgeted BPTT.

    The forward pass keeps only what the plan says; the backward pass recomputes the
    rest. Gradients are exactly those of plain backpropagation through time.

    Args:
        cell: the step to repeat.
        memory_budget: ``None`` (keep everything: plain autograd), an int in bytes, a
            string such as ``"512MiB"`` or ``"2GB"``, ``"auto"`` (the free memory of the
            input's device: on CUDA, free memory minus a safety margin; on CPU, half the
            available RAM, or of the container's limit) or a fraction of that, ``"50%"``
            or ``Budget.fraction(0.5)`` (see :class:`mbrnn.Budget`). It bounds what
            back-propagation holds: kept states, recomputation and the executor's working
            set (:mod:`mbrnn.runtime.fit`); not the input, the output or their gradients.
        policy: ``"auto"`` (default) or any planner policy: ``"store_all"``,
            ``"recompute_all"``, ``"chen"``, ``"hsm"``, ``"ism"``, ``"msm"``.
        batch_first: inputs and outputs are ``(B, T, F)`` instead of ``(T, B, F)``.
        preserve_rng_state: replay the RNG so recomputed steps draw the same dropout masks.
        check_recompute: check that recomputed steps match the first pass's shapes.
        bucket_ratio: sequence lengths above 64 are planned for their bucket on a
            geometric grid of this ratio (default ``2 ** (1/8)``, about 9 %) and run the
            bucket plan's last ``T`` steps, so variable-length data plans once per bucket
            (within the budget; a few tenths of a percent more forward steps).
            ``1.0`` plans every length on its own.

    Inputs: x, state
        - **x**: :math:`(T, B, F)`, :math:`(B, T, F)` with ``batch_first``, or
          :math:`(T, F)` for an unbatched sequence.
        - **state**: the initial state, as ``cell.init_state(B)`` returns it (without the
          batch dimension for unbatched input); ``None`` means zeros.

    ``x`` must be floating point, unless the cell sets the class attribute
    ``accepts_integer_input = True`` (e.g. a language-model step taking token ids); such a
    cell also provides ``example_input(batch_size, device=...)`` for probing its memory,
    and its state keeps the parameters' dtype.

    Outputs: y, state
        - **y**: :math:`(T, B, H)` (or batch first, or :math:`(T, H)` unbatched).
        - **state**: the final state.

    Example::

        >>> rnn = Recurrent(LSTMCell(32, 64), memory_budget="64MiB")
        >>> y, (h, c) = rnn(torch.randn(1000, 8, 32))
        >>> y.sum().backward()
    """

    def __init__(
        self,
        cell: Cell,
        *,
        memory_budget: BudgetLike = None,
        policy: str = "auto",
        batch_first: bool = False,
        preserve_rng_state: bool = True,
        check_recompute: bool = True,
        bucket_ratio: float = BUCKET_RATIO,
    ) -> None:
        super().__init__()
        if not isinstance(cell, nn.Module) or not callable(getattr(cell, "init_state", None)):
            raise TypeError(
                f"Recurrent: cell must be an mbrnn Cell (a Module with init_state and forward), "
                f"got {type(cell).__name__}"
            )
        self.cell = cell
        Budget.parse(memory_budget, name="Recurrent: memory_budget")  # validate
        self.memory_budget = memory_budget
        self.policy = check_policy("Recurrent", policy)
        self.batch_first = bool(batch_first)
        self.preserve_rng_state = preserve_rng_state
        self.check_recompute = check_recompute
        self.bucket_ratio = check_bucket_ratio("Recurrent", bucket_ratio)
        self._sizes: dict[tuple[Any, ...], tuple[StepSizes, Working]] = {}
        self._budgets: dict[tuple[Any, ...], int] = {}
        self.last_plan: RecurrencePlan | None = None
        self.last_stats: ExecStats | None = None

    def __getstate__(self) -> dict[str, Any]:
        return without_last_call(super().__getstate__())  # pyright: ignore[reportAttributeAccessIssue]

    def extra_repr(self) -> str:
        return (f"memory_budget={self.memory_budget!r}, policy={self.policy!r}, "
                f"batch_first={self.batch_first}")

    # --- validation ----------------------------------------------------------------------

    def _prepare(self, x: Tensor, state: State | None) -> tuple[Tensor, tuple[Tensor, ...], StateSpec, bool]:
        if not isinstance(x, Tensor):
            raise TypeError(f"Recurrent: Expected input to be a Tensor, got {type(x).__name__}")
        if x.dim() not in (2, 3):
            raise ValueError(f"Recurrent: Expected input to be 2D or 3D, got {x.dim()}D instead")
        integer_ok = getattr(self.cell, "accepts_integer_input", False)
        if not x.is_floating_point() and not (integer_ok and not x.is_complex()):
            raise TypeError(f"Recurrent: Expected a floating-point input, got {x.dtype}")
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        T, B, F = x.shape
        if T == 0:
            raise ValueError(
                "Recurrent: got an empty sequence (seq_len=0); pass at least one time step"
            )
        in_size = getattr(self.cell, "input_size", F)
        if in_size != F:
            raise ValueError(f"Recurrent: input has {F} features, expected input_size={in_size}")
        # A cell taking integer input (token ids) keeps its state in its parameters' dtype.
        state_dtype = x.dtype if x.is_floating_point() else None
        expected = self.cell.init_state(B, device=x.device, dtype=state_dtype)
        exp_flat, spec = state_flatten(expected)
        if state is None:
            flat = exp_flat
        else:
            if unbatched:
                state = _map_state(lambda t: t.unsqueeze(0), state)
            try:
                flat, got_spec = state_flatten(state)
            except TypeError as e:
                raise TypeError(f"Recurrent: bad state: {e}") from None
            if got_spec != spec:
                raise ValueError(
                    f"Recurrent: state has structure {got_spec}, expected {spec} "
                    f"(as {type(self.cell).__name__}.init_state returns it)"
                )
            for i, (g, e) in enumerate(zip(flat, exp_flat, strict=True)):
                if g.shape != e.shape:
                    shape = tuple(e.shape[1:]) if unbatched else tuple(e.shape)
                    raise ValueError(
                        f"Recurrent: state tensor {i} has shape {tuple(g.shape[1:]) if unbatched else tuple(g.shape)}, "
                        f"expected {shape}"
                    )
                if g.dtype != e.dtype or g.device != e.device:
                    raise TypeError(
                        f"Recurrent: state tensor {i} is {g.dtype} on {g.device}, expected "
                        f"{e.dtype} on {e.device} like the input"
                    )
        return x, tuple(flat), spec, unbatched

    # --- planning ------------------------------------------------------------------------

    def _step_fn(self, spec: StateSpec) -> Callable[[Tensor, tuple[Tensor, ...]], tuple[Tensor, tuple[Tensor, ...]]]:
        cell = self.cell

        def step(x_t: Tensor, flat: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
            y, new = cell(x_t, state_unflatten(flat, spec))
            new_flat, _ = state_flatten(new)
            return y, tuple(new_flat)

        return step

    def probe(self, batch_size: int, *, device: torch.device | None = None,
              dtype: torch.dtype | None = None) -> StepSizes:
        """Measure (and cache) the per-step state and internal sizes for a batch size."""
        return self._probe(batch_size, *self._where(device, dtype))[0]

    def _where(self, device: torch.device | str | None, dtype: torch.dtype | None
               ) -> tuple[torch.device, torch.dtype]:
        params = list(self.cell.parameters())
        dev = torch.device(device) if device is not None else (
            params[0].device if params else torch.device("cpu"))
        dt = dtype or next((p.dtype for p in params if p.is_floating_point()),
                           torch.get_default_dtype())
        return dev, dt

    def _probe(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> tuple[StepSizes, Working]:
        """Sizes and working set (bytes) for one batch size, device and dtype; cached, so a
        new sequence length never probes again."""
        key = (batch_size, device, dtype, self.training, torch.is_autocast_enabled(device.type))
        hit = self._sizes.get(key)
        if hit is None:
            F = int(self.cell.input_size)
            gen = torch.Generator().manual_seed(0)
            if getattr(self.cell, "accepts_integer_input", False):
                x = self.cell.example_input(batch_size, device=device)  # pyright: ignore[reportCallIssue]
            else:
                x = torch.randn(batch_size, F, generator=gen, dtype=dtype).to(device)
            flat, spec = state_flatten(self.cell.init_state(batch_size, device=device, dtype=dtype))
            step = self._step_fn(spec)
            params = [p for p in self.cell.parameters() if p.requires_grad]
            hit = probe_step_recurrence(step, x, tuple(flat), params)
            self._sizes[key] = hit
        return hit

    def _fit(self, T: int, B: int, budget: int, device: torch.device, dtype: torch.dtype
             ) -> RecurrencePlan:
        sizes, working = self._probe(B, device, dtype)
        return fit(chain_for(sizes, T), budget, self.policy, working, run_cost=0.0,
                   owner="Recurrent", context=f"seq_len={T}, batch {B}",
                   bucket_ratio=self.bucket_ratio)

    def plan_for(
        self,
        seq_len: int,
        batch_size: int,
        *,
        memory_budget: BudgetLike = _OWN,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> RecurrencePlan:
        """The plan a call with this length and batch would run, without running it.

        ``memory_budget`` defaults to the module's own; ``None`` plans without a bound
        (storing everything). Returns a :class:`~mbrnn.runtime.fit.RecurrencePlan`: the
        plan, its predicted peak and (``.time_overhead()``) its predicted time against
        storing everything.
        """
        for arg, value in (("seq_len", seq_len), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Recurrent.plan_for: {arg} must be an int >= 1, got {value!r}")
        dev, dt = self._where(device, dtype)
        arg = self.memory_budget if memory_budget is _OWN else memory_budget
        budget = resolve_budget("Recurrent", arg, dev, self._budgets, (seq_len, batch_size, dev))
        return self._fit(seq_len, batch_size, UNBOUNDED if budget is None else budget, dev, dt)

    def minimum_budget(
        self,
        seq_len: int,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> int:
        """The smallest ``memory_budget`` (bytes) this module's policy accepts for this call."""
        try:
            self.plan_for(seq_len, batch_size, memory_budget=0, device=device, dtype=dtype)
        except InfeasibleBudgetError as e:
            return int(e.minimum)
        return 0

    def _param_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.cell.parameters() if p.requires_grad)

    # --- forward -------------------------------------------------------------------------

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        x, flat, spec, unbatched = self._prepare(x, state)
        T, B, _ = x.shape
        params = tuple(p for p in self.cell.parameters())
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(t.requires_grad for t in flat) or any(p.requires_grad for p in params)
        )
        if self.memory_budget is None or not needs_grad:
            y, final = self._plain(x, flat, spec)
            self.last_plan, self.last_stats = None, None
        else:
            budget = resolve_budget("Recurrent", self.memory_budget, x.device, self._budgets,
                                    (T, B, x.device))
            assert budget is not None
            dtype = x.dtype if x.is_floating_point() else self._where(x.device, None)[1]
            rp = self._fit(T, B, budget, x.device, dtype)
            y, final, stats = run_plan(
                self._step_fn(spec), x, flat, params, rp.plan,
                preserve_rng_state=self.preserve_rng_state, check_recompute=self.check_recompute,
            )
            self.last_plan, self.last_stats = rp, stats
        out_state = state_unflatten(list(final), spec)
        if unbatched:
            return y.squeeze(1), _map_state(lambda t: t.squeeze(0), out_state)
        if self.batch_first:
            y = y.transpose(0, 1)
        return y, out_state

    def _plain(self, x: Tensor, flat: tuple[Tensor, ...], spec: StateSpec) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One plain sweep: plain autograd when grad is on, no overhead when it is off."""
        state = state_unflatten(list(flat), spec)
        if not torch.is_grad_enabled():  # write straight into the output: no list, no stack
            xs = x.unbind(0)
            y, state = self.cell(xs[0], state)
            out = y.new_empty((x.shape[0], *y.shape))
            out[0].copy_(y)
            for t in range(1, len(xs)):
                y, state = self.cell(xs[t], state)
                out[t].copy_(y)
            final, _ = state_flatten(state)
            return out, tuple(final)
        ys = []
        for x_t in x.unbind(0):
            y, state = self.cell(x_t, state)
            ys.append(y)
        final, _ = state_flatten(state)
        return torch.stack(ys), tuple(final)


def _map_state(fn: Callable[[Tensor], Tensor], state: State) -> State:
    return state_map(fn, state)
