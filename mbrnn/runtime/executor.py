"""Carry out a :class:`~mbrnn.plan.Plan` with autograd: budgeted BPTT, exact gradients.

One ``torch.autograd.Function`` per recurrence. Its forward runs the plan's first sweep
without a graph, except for runs whose internal states the plan keeps, and returns every
step's output and the final state. Its backward replays the rest of the plan: it re-runs
forward sweeps, builds one small graph per kept run, back-propagates through it with the
incoming output gradients injected at the right steps, and returns the gradients of the
input sequence, the initial state and every parameter as the Function's own outputs, so
parameter hooks, gradient accumulation, DistributedDataParallel and AMP grad scaling see
exactly what plain autograd would give them.

NOTE [ Replaying randomness ]
With ``preserve_rng_state=True`` step ``t`` runs with the CPU (and, for CUDA inputs, the
device) generator seeded from ``(base_seed, t)``; ``base_seed`` is drawn once per call
from the global generator, which is otherwise left untouched. A recomputed step therefore
draws exactly the dropout masks of its first run, wherever the replay starts.
``step_rng(base_seed, t)`` reproduces the seeding for reference computations.

NOTE [ Autocast ]
Steps run under the autocast state of the call, in both passes; ``autograd.grad`` runs
outside it, as plain autograd's backward does. One difference remains: plain autograd
under autocast caches a layer's low-precision weight for the whole forward, so every
step's weight gradient is summed in that low precision before the cast back; here each
kept run casts afresh and the runs' gradients are summed in the parameter's dtype.
Input and state gradients agree bit for bit; weight gradients agree to bf16 rounding.

NOTE [ Recompute checks ]
The first sweep records the shape, dtype and device of every step's outputs (one record
plus the steps that differ from it); a recomputed step must match, else
:class:`~mbrnn.errors.RecomputeMismatchError` names the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import PlanError, RecomputeMismatchError
from ..plan import Backward, Forward, ForwardKeep, FreeHidden, KeepHidden, Op, Plan

__all__ = ["ExecStats", "Pieces", "Segment", "StepFn", "StepSegment", "draw_base_seed", "run_plan",
           "step_rng"]

#: ``step(x_t, state) -> (y_t, new_state)`` on flat tuples of state tensors.
StepFn = Callable[[Tensor, tuple[Tensor, ...]], tuple[Tensor, tuple[Tensor, ...]]]

_SEED_MOD = 2**62


def draw_base_seed() -> int:
    """Draw the per-call base seed from the global CPU generator."""
    return int(torch.randint(0, _SEED_MOD, (1,), dtype=torch.int64).item())


@contextlib.contextmanager
def step_rng(base_seed: int, t: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed the generators for step ``t`` (1-based) inside a forked RNG state."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        _seed_step(base_seed, t, device)
        yield


def _seed_step(base_seed: int, t: int, device: torch.device | None) -> None:
    seed = (base_seed + 0x9E3779B97F4A7C15 * t) % _SEED_MOD
    torch.default_generator.manual_seed(seed)
    if device is not None and device.type == "cuda":
        torch.cuda.default_generators[device.index or 0].manual_seed(seed)


@dataclass
class ExecStats:
    """What an execution actually did, for tests and benchmarks."""

    forward_steps: int = 0
    runs: int = 0
    backward_runs: int = 0


def _meta(y: Tensor, state: tuple[Tensor, ...]) -> tuple[tuple[Any, ...], ...]:
    return tuple((tuple(t.shape), t.dtype, t.device) for t in (y, *state))


@dataclass
class _Run:
    """The graph of one ForwardKeep run ``(start, stop]``."""

    start: int
    stop: int
    leaf: tuple[Tensor, ...]
    x_leaf: Tensor | None
    ys: Tensor | list[Tensor]
    state: tuple[Tensor, ...]


class Pieces(list[Tensor]):
    """A run's outputs as consecutive multi-step pieces, each ``(L_i, B, H)``: what a
    segment returns when it runs one kept run in several calls (no concatenated copy)."""


SeedFn = Callable[[int], None]
CheckFn = Callable[[int, Tensor, tuple[Tensor, ...]], None]


class Segment:
    """Runs steps ``t0+1 .. t0+L`` of a recurrence in one call: what the executor drives.

    ``run(t0, x, state, *, out, seed, check)`` gets ``x`` of shape (L, B, F) and returns
    ``(ys, new_state)``: ``ys`` is an (L, B, H) tensor, a list of L (B, H) tensors, or
    :class:`Pieces` of consecutive (L_i, B, H) tensors.
    When ``out`` is given (the first sweep, no graph), it writes the outputs there and may
    return ``None`` for ``ys``; with ``keep_y=False`` (a re-run sweep) nobody needs the
    outputs and it may return ``None`` too. ``seed(t)``, when given, seeds the generators for step
    ``t``; ``check(t, y_t, state_t)`` is called for steps whose metadata it can check.
    ``first_pass`` says the executor's first sweep runs these steps (each step once, in
    order): work done once per step, such as a readout's gradient, belongs there.
    Subclasses must be deterministic functions of (x, state, parameters, seeds).
    ``run_cost_steps`` is what a call costs beside its steps, in forward steps: what
    :func:`~mbrnn.runtime.fit.fit`'s ``auto`` charges per run (0 for a per-step loop).
    """

    run_cost_steps: float = 0.0

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
        raise NotImplementedError


class StepSegment(Segment):
    """A per-step Python loop over ``step(x_t, state) -> (y_t, new_state)``."""

    def __init__(self, step: StepFn) -> None:
        self.step = step

    def run(self, t0, x, state, *, out, keep_y, seed, check, first_pass=False):  # type: ignore[override]
        ys: list[Tensor] = []
        # unbind, not x[i]: its backward is one stack, not a full-size gradient per step
        for i, x_t in enumerate(x.unbind(0)):
            t = t0 + i + 1
            if seed is not None:
                seed(t)
            y, state = self.step(x_t, state)
            if check is not None:
                check(t, y, state)
            if out is not None:
                out[i].copy_(y.detach())
            elif keep_y:
                ys.append(y)
        return (ys if keep_y and out is None else None), state


class _Execution:
    """The mutable state of one call: what is kept, the cursor, the counters."""

    def __init__(
        self,
        segment: Segment,
        plan: Plan,
        x: Tensor,
        state0: tuple[Tensor, ...],
        params: tuple[Tensor, ...],
        *,
        graph_params: tuple[Tensor, ...],
        preserve_rng_state: bool,
        check_recompute: bool,
        outputs: bool = True,
    ) -> None:
        self.segment = segment
        self.plan = plan
        self.T = plan.chain.length
        self.x = x
        self.state0 = tuple(s.detach() for s in state0)
        self.params = params
        self.graph_params = graph_params
        self.need_x_grad = x.requires_grad
        self.preserve_rng = preserve_rng_state
        self.check = check_recompute
        self.device = x.device
        self.base_seed = draw_base_seed() if preserve_rng_state else 0
        self.autocast = _autocast_state(x.device.type)
        self.hidden: dict[int, tuple[Tensor, ...]] = {}
        self.runs: dict[int, _Run] = {}  # keyed by stop
        self.cursor: tuple[int, tuple[Tensor, ...]] | None = (0, self.state0)
        self.meta0: tuple[tuple[Any, ...], ...] | None = None
        self.meta_exc: dict[int, tuple[tuple[Any, ...], ...]] = {}
        self.stats = ExecStats()
        self.ops: Iterator[Op] = iter(plan.ops)
        self.pending: Op | None = None
        self.first_pass = True
        self.y: Tensor | None = None
        self.consumed = False
        self.outputs = outputs  # False: the caller needs the final state alone

    # --- running a segment ---------------------------------------------------------------

    def _seed(self, t: int) -> None:
        _seed_step(self.base_seed, t, self.device)

    def _check(self, t: int, y: Tensor, state: tuple[Tensor, ...]) -> None:
        meta = _meta(y, state)
        if self.first_pass:
            if self.meta0 is None:
                self.meta0 = meta
            elif meta != self.meta0:
                self.meta_exc[t] = meta
            return
        expected = self.meta_exc.get(t, self.meta0)
        if meta != expected:
            raise RecomputeMismatchError(
                f"recomputing step {t} of {self.T} gave outputs {_fmt(meta)}, but the "
                f"first pass gave {_fmt(expected)}; the cell must be a deterministic "
                "function of (input, state, parameters, RNG)"
            )

    def _run(
        self, start: int, stop: int, x: Tensor, state: tuple[Tensor, ...], keep: bool
    ) -> tuple[Tensor | list[Tensor] | None, tuple[Tensor, ...]]:
        out = None
        if self.first_pass and not keep and self.outputs:
            if self.y is None:
                return self._run_first_step(start, stop, x, state)
            out = self.y[start:stop]
        dev, enabled, dtype = self.autocast
        ctx = torch.autocast(dev, dtype=dtype) if enabled else contextlib.nullcontext()
        with ctx:  # as in the first pass; autograd.grad itself runs outside autocast
            ys, new = self.segment.run(
                start, x, state, out=out, keep_y=keep and self.outputs,
                seed=self._seed if self.preserve_rng else None,
                check=self._check if self.check else None,
                first_pass=self.first_pass,
            )
        self.stats.forward_steps += stop - start
        if self.first_pass and keep and self.outputs:
            self._store_y(start, ys)
        return ys, new

    def _run_first_step(
        self, start: int, stop: int, x: Tensor, state: tuple[Tensor, ...]
    ) -> tuple[None, tuple[Tensor, ...]]:
        """Run step ``start+1`` alone to learn the output's shape, then allocate ``y``."""
        _ys, state = self._run(start, start + 1, x[:1], state, keep=True)
        if stop > start + 1:
            _, state = self._run(start + 1, stop, x[1:], state, keep=False)
        return None, state

    def _store_y(self, start: int, ys: Tensor | list[Tensor] | None) -> None:
        assert ys is not None
        first = ys[0][0] if isinstance(ys, Pieces) else ys[0]
        if self.y is None:  # y's shape is known once the first step has run
            self.y = torch.empty((self.T, *first.shape), dtype=first.dtype, device=first.device)
        if isinstance(ys, Tensor):
            self.y[start : start + ys.shape[0]].copy_(ys.detach())
        elif isinstance(ys, Pieces):
            for y in ys:
                self.y[start : start + y.shape[0]].copy_(y.detach())
                start += y.shape[0]
        else:
            for i, y in enumerate(ys):
                self.y[start + i].copy_(y.detach())

    # --- op handlers ---------------------------------------------------------------------

    def _state_at(self, p: int) -> tuple[Tensor, ...]:
        if self.cursor is not None and self.cursor[0] == p:
            return self.cursor[1]
        if p == 0:
            return self.state0
        if p in self.hidden:
            return self.hidden[p]
        run = self.runs.get(p)
        if run is not None:  # the output state of a kept run
            return tuple(s.detach() for s in run.state)
        raise PlanError(f"the plan needs h[{p}], which is not available")

    def _forward(self, op: Forward) -> None:
        state = self._state_at(op.start)
        with torch.no_grad():
            _, state = self._run(op.start, op.stop, self.x[op.start : op.stop], state, keep=False)
        self.cursor = (op.stop, state)

    def _forward_keep(self, op: ForwardKeep) -> None:
        leaf = tuple(
            s.detach().requires_grad_(s.is_floating_point() or s.is_complex())
            for s in self._state_at(op.start)
        )
        x = self.x[op.start : op.stop]
        x_leaf = x.detach().requires_grad_() if self.need_x_grad else None
        with torch.enable_grad():
            ys, state = self._run(op.start, op.stop, x if x_leaf is None else x_leaf, leaf,
                                  keep=True)
        assert ys is not None or not self.outputs
        self.runs[op.stop] = _Run(op.start, op.stop, leaf, x_leaf, [] if ys is None else ys,
                                  state)
        self.stats.runs += 1
        self.cursor = (op.stop, tuple(s.detach() for s in state))

    def _keep_hidden(self, op: KeepHidden) -> None:
        if self.cursor is None or self.cursor[0] != op.index:
            raise PlanError(f"{op}: the cursor is not at {op.index}")
        self.hidden[op.index] = self.cursor[1]

    def _free_hidden(self, op: FreeHidden) -> None:
        del self.hidden[op.index]

    def _apply(self, op: Op) -> None:
        if isinstance(op, Forward):
            self._forward(op)
        elif isinstance(op, ForwardKeep):
            self._forward_keep(op)
        elif isinstance(op, KeepHidden):
            self._keep_hidden(op)
        elif isinstance(op, FreeHidden):
            self._free_hidden(op)
        else:
            raise PlanError(f"unexpected op {op!r}")

    # --- the two passes ------------------------------------------------------------------

    def first_sweep(self) -> tuple[Tensor, tuple[Tensor, ...]]:
        with self._context():
            for op in self.ops:
                if isinstance(op, Backward):
                    self.pending = op
                    break
                self._apply(op)
        if self.pending is None:
            raise PlanError("the plan has no Backward op")
        self.first_pass = False
        assert self.cursor is not None and self.cursor[0] == self.T
        if not self.outputs:  # a placeholder: nobody reads the outputs
            return self.x.new_empty((self.T, self.x.shape[1], 0)), self.cursor[1]
        assert self.y is not None
        return self.y, self.cursor[1]

    def backward_sweep(
        self, gy: Tensor | None, g_state: tuple[Tensor | None, ...]
    ) -> tuple[Tensor | None, tuple[Tensor | None, ...], list[Tensor | None]]:
        if self.consumed:
            raise RuntimeError(
                "mbrnn: a budgeted recurrence can be back-propagated only once; "
                "retain_graph=True and repeated backward calls are not supported"
            )
        self.consumed = True
        gx = torch.zeros_like(self.x) if self.need_x_grad else None
        gp: list[Tensor | None] = [None] * len(self.params)
        g: tuple[Tensor | None, ...] = g_state
        with self._context():
            op: Op | None = self.pending
            while op is not None:
                if isinstance(op, Backward):
                    g = self._backward(op, g, gy, gx, gp)
                else:
                    self._apply(op)
                op = next(self.ops, None)
        self.release()
        return gx, g, gp

    def _backward(
        self,
        op: Backward,
        g: tuple[Tensor | None, ...],
        gy: Tensor | None,
        gx: Tensor | None,
        gp: list[Tensor | None],
    ) -> tuple[Tensor | None, ...]:
        stop = op.stop
        while stop > op.start:
            run = self.runs.pop(stop, None)
            if run is None or run.start < op.start:
                raise PlanError(f"{op} does not cover whole kept runs at step {stop}")
            g = self._backward_run(run, g, gy, gx, gp)
            stop = run.start
        self.cursor = None
        return g

    def _backward_run(
        self,
        run: _Run,
        g: tuple[Tensor | None, ...],
        gy: Tensor | None,
        gx: Tensor | None,
        gp: list[Tensor | None],
    ) -> tuple[Tensor | None, ...]:
        outputs: list[Tensor] = []
        grads: list[Tensor] = []
        for s_t, g_t in zip(run.state, g, strict=True):
            if g_t is not None and s_t.requires_grad:
                outputs.append(s_t)
                grads.append(g_t)
        if gy is not None:
            if isinstance(run.ys, Tensor):
                if run.ys.requires_grad:
                    outputs.append(run.ys)
                    grads.append(gy[run.start : run.stop])
            elif isinstance(run.ys, Pieces):
                at = run.start
                for y in run.ys:
                    if y.requires_grad:
                        outputs.append(y)
                        grads.append(gy[at : at + y.shape[0]])
                    at += y.shape[0]
            else:
                for i, y in enumerate(run.ys):
                    if y.requires_grad:
                        outputs.append(y)
                        grads.append(gy[run.start + i])
        self.stats.backward_runs += 1
        if not outputs:
            return tuple(None for _ in run.leaf)
        want_leaf = [s for s in run.leaf if s.requires_grad]
        want_p = [gp_ for p, gp_ in zip(self.params, self.graph_params, strict=True) if p.requires_grad]
        want_x = [run.x_leaf] if run.x_leaf is not None else []
        res = torch.autograd.grad(outputs, [*want_leaf, *want_p, *want_x], grads, allow_unused=True)
        it = iter(res)
        g_leaf = [next(it) if s.requires_grad else None for s in run.leaf]
        for i, p in enumerate(self.params):
            if p.requires_grad:
                gi = next(it)
                if gi is not None:
                    prev = gp[i]
                    gp[i] = gi if prev is None else prev.add_(gi)
        if gx is not None and run.x_leaf is not None:
            gxi = next(it)
            if gxi is not None:
                gx[run.start : run.stop].copy_(gxi)
        return tuple(g_leaf)

    def _context(self) -> contextlib.AbstractContextManager[Any]:
        stack = contextlib.ExitStack()
        if self.preserve_rng:
            devices = [self.device] if self.device.type == "cuda" else []
            stack.enter_context(torch.random.fork_rng(devices=devices))
        return stack

    def release(self) -> None:
        self.hidden.clear()
        self.runs.clear()
        self.cursor = None


def _autocast_state(device_type: str) -> tuple[str, bool, torch.dtype]:
    dev = device_type if device_type in ("cpu", "cuda") else "cpu"
    return dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)


def _fmt(meta: tuple[tuple[Any, ...], ...] | None) -> str:
    if meta is None:
        return "nothing"
    return "[" + ", ".join(f"{tuple(s)} {d} {dev}" for s, d, dev in meta) + "]"


class _BudgetedBPTT(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, ex: _Execution, x: Tensor, *flat: Tensor) -> Any:
        y, state = ex.first_sweep()
        ctx.ex = ex
        ctx.set_materialize_grads(False)
        outs = (
            y,
            *(s.detach().clone() if s is ex.state0[i] else s.detach() for i, s in enumerate(state)),
        )
        return outs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor | None, *g_state: Tensor | None) -> Any:
        ex: _Execution | None = ctx.ex
        if ex is None:
            raise RuntimeError(
                "mbrnn: a budgeted recurrence can be back-propagated only once; "
                "retain_graph=True and repeated backward calls are not supported"
            )
        gx, g0, gp = ex.backward_sweep(gy, tuple(g_state))
        ctx.ex = None
        n0 = len(ex.state0)
        return (None, gx, *g0[:n0], *gp)


def run_plan(
    step: StepFn | Segment,
    x: Tensor,
    state0: Sequence[Tensor],
    params: Sequence[Tensor],
    plan: Plan,
    *,
    graph_params: Sequence[Tensor] | None = None,
    preserve_rng_state: bool = True,
    check_recompute: bool = True,
    outputs: bool = True,
) -> tuple[Tensor, tuple[Tensor, ...], ExecStats]:
    """Run ``step`` over ``x`` (T, B, F) from ``state0`` following ``plan``.

    Args:
        step: one time step on flat state tuples (it may use ``params`` and nothing else
            that requires grad), or a :class:`Segment` that runs many steps per call.
        x: the input sequence, time-major.
        state0: the initial state's tensors.
        params: every tensor ``step`` uses that may need a gradient.
        plan: a plan for ``T = x.shape[0]`` steps.
        graph_params: what ``step`` really uses in place of ``params``, if not ``params``
            themselves: detached aliases (``p.detach().requires_grad_()``), so that tensor
            hooks on ``params`` fire once per backward, as with plain autograd, rather than
            inside the executor's internal ``autograd.grad`` calls.
        outputs: ``False`` when the caller needs the final state alone (a classifier):
            no ``(T, B, H)`` output is allocated or kept, and ``y`` is a ``(T, B, 0)``
            placeholder.

    Returns:
        ``(y, final_state, stats)``: ``y`` is (T, B, H), ``stats`` is filled in as the
        forward and the backward run.
    """
    T = x.shape[0]
    if plan.chain.length != T:
        raise ValueError(f"run_plan: the plan is for T={plan.chain.length} steps, x has T={T}")
    state0 = tuple(state0)
    params = tuple(params)
    gparams = params if graph_params is None else tuple(graph_params)
    if len(gparams) != len(params):
        raise ValueError(
            f"run_plan: graph_params has {len(gparams)} tensors, params has {len(params)}"
        )
    segment = step if isinstance(step, Segment) else StepSegment(step)
    ex = _Execution(
        segment,
        plan,
        x,
        state0,
        params,
        graph_params=gparams,
        preserve_rng_state=preserve_rng_state,
        check_recompute=check_recompute,
        outputs=outputs,
    )
    y, *state = _BudgetedBPTT.apply(ex, x, *state0, *params)
    return y, tuple(state), ex.stats
