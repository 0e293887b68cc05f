"""From a user's ``memory_budget`` to a plan the executor can run within it.

NOTE [ What the budget covers ]
``memory_budget`` bounds the memory a recurrence holds to back-propagate: the kept hidden
and internal states (the planner's accounting, plus the start state autograd saves for
a run that begins at a sweep's running state) and the executor's working set, a constant
measured by :func:`measure_working`. The input, the output sequence ``y`` and the
gradients autograd passes in and out for them (``dL/dy``, ``dL/dx``) are the caller's
own tensors, of the caller's size, and are reported separately (``io_bytes``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from ..errors import InfeasibleBudgetError
from ..plan import Chain, ForwardKeep, Plan, simulate, solve
from ..sizes import format_size, parse_size
from .memory import measure_peak
from .probe import StepSizes

__all__ = [
    "AUTO_CPU_FRACTION",
    "AUTO_CUDA_MARGIN",
    "BudgetPlan",
    "Working",
    "available_memory",
    "measure_working",
    "plan_recurrence",
    "resolve_budget",
]

#: ``memory_budget="auto"`` on CPU uses this fraction of the available RAM.
AUTO_CPU_FRACTION = 0.5
#: On CUDA it leaves free ``max(AUTO_CUDA_MARGIN bytes, 5 % of the device)``.
AUTO_CUDA_MARGIN = 256 * 2**20

Budget = int | float | str | None


def available_memory(device: torch.device) -> int:
    """Bytes ``"auto"`` may use on ``device`` (see ``AUTO_CPU_FRACTION``/``AUTO_CUDA_MARGIN``)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return max(0, int(free - max(AUTO_CUDA_MARGIN, 0.05 * total)))
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 4 * 2**30
    return int(avail * AUTO_CPU_FRACTION)


def resolve_budget(memory_budget: Budget, device: torch.device, *, owner: str) -> int | None:
    """Turn ``memory_budget`` into bytes (``None`` stays ``None``: store everything).

    Accepts an int (bytes), a size string (``"512MiB"``, ``"2GB"``), ``"auto"``, or a
    float in (0, 1]: that fraction of what ``"auto"`` would use.
    """
    if memory_budget is None:
        return None
    if isinstance(memory_budget, str) and memory_budget.strip().lower() == "auto":
        return available_memory(device)
    if isinstance(memory_budget, float) and not isinstance(memory_budget, bool):
        if not (0.0 < memory_budget <= 1.0):
            raise ValueError(
                f"{owner}: memory_budget={memory_budget!r} is a float, which means a fraction of "
                "the free memory and must be in (0, 1]; pass bytes as an int or a string such "
                "as '512MiB'"
            )
        return int(available_memory(device) * memory_budget)
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, str)):
        raise TypeError(
            f"{owner}: memory_budget must be None, an int (bytes), a size string such as "
            f"'512MiB', 'auto' or a float in (0, 1], got {type(memory_budget).__name__}"
        )
    return int(parse_size(memory_budget, name=f"{owner}: memory_budget"))


def measure_working(
    step: Callable[[Tensor, tuple[Tensor, ...]], tuple[Tensor, tuple[Tensor, ...]]],
    x: Tensor,
    state: tuple[Tensor, ...],
    params: Sequence[Tensor],
    sizes: StepSizes,
) -> Working:
    """Measure the executor's working set by running it on three steps.

    Two tiny executions, measured with :func:`~mbrnn.runtime.memory.measure_peak`: Chen's
    plan on four steps (two kept runs of two steps: the figure for multi-step runs) and
    recomputing everything on three (one-step runs). Both back-propagate several runs,
    so both include the running sum of parameter gradients next to a run's own. The working set is the measured peak minus the outputs
    and minus what the plan's own accounting predicts. What it covers: the internal state
    of the step being back-propagated, the running state, the incoming state gradient,
    autograd's temporaries, the gradients each run returns and the running sum of
    parameter gradients.
    """
    from .executor import run_plan

    s, a = sizes.state_bytes, sizes.internal_bytes

    def once(policy: str, T: int) -> int:
        chain = Chain(T, float(s), float(a))
        xs = x.detach().unsqueeze(0).expand(T, *x.shape)
        plan = solve(chain, chain.store_all_peak, policy)

        def run() -> None:
            st = tuple(t.detach().clone() for t in state)  # allocated inside, as in a call
            y, _, _ = run_plan(step, xs, st, params, plan, preserve_rng_state=False)
            y.sum().backward(inputs=[p for p in params if p.requires_grad])

        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            peak = measure_peak(run, device=x.device)
        kept = simulate(plan, count_run_inputs=True).peak
        return max(0, int(peak - T * sizes.output_bytes - kept))

    saved = [p.grad for p in params]
    try:
        multi, single = once("chen", 4), once("recompute_all", 3)
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g
    return Working(single=single, multi=max(single, multi))


@dataclass(frozen=True)
class Working:
    """The executor's working set (bytes) for runs of one step, and of several."""

    single: int
    multi: int

    def for_plan(self, plan: Plan) -> int:
        """The figure that applies to ``plan``: ``multi`` if any kept run is longer than one step."""
        longest = max((op.stop - op.start for op in plan.ops if isinstance(op, ForwardKeep)),
                      default=1)
        return self.multi if longest > 1 else self.single


@dataclass(frozen=True)
class BudgetPlan:
    """A plan with its byte figures.

    Attributes:
        plan: the planner's plan over ``Chain(T, state_bytes, internal_bytes)``.
        sizes: the probed per-step sizes.
        budget: the budget in bytes.
        working: the executor's working set for this plan (see :func:`measure_working`).
        kept_peak: peak of kept states, run inputs counted (bytes).
        predicted_peak: ``kept_peak + working``, what the budget bounds.
    """

    plan: Plan
    sizes: StepSizes
    budget: int
    working: int
    kept_peak: int

    @property
    def predicted_peak(self) -> int:
        return self.kept_peak + self.working

    def time_overhead(self, beta: float = 2.0) -> float:
        return self.plan.time_overhead(beta)

    def summary(self) -> str:
        p = self.plan
        return (
            f"policy={p.policy} T={p.chain.length} forward_steps={p.forward_steps} "
            f"(x{p.recompute_factor:.2f}) predicted_peak={format_size(self.predicted_peak)} "
            f"of budget {format_size(self.budget)}"
        )


def plan_recurrence(
    sizes: StepSizes,
    length: int,
    budget: int,
    policy: str,
    working: Working,
    *,
    owner: str,
    batch_size: int | None = None,
    segment: int | None = None,
) -> BudgetPlan:
    """Plan ``length`` steps of a probed cell within ``budget`` bytes (``segment``: Chen's
    segment length, for ``policy="chen"``).

    The planner's optimal recurrences do not count the start state autograd saves for a
    run begun from a sweep's running state; we re-solve with a smaller planner budget
    until the plan fits with it counted (at worst: recompute everything, ``2 s``).

    Raises:
        InfeasibleBudgetError: the budget is below ``working + 2 s``, stated in bytes.
    """
    return _plan_cached(sizes, length, budget, policy, working, owner, batch_size, segment)


#: Longest sequence whose HSM plan is replayed to measure its peak (see _plan_cached).
_REPLAY_LIMIT = 20_000


@lru_cache(maxsize=64)
def _plan_cached(
    sizes: StepSizes,
    length: int,
    budget: int,
    policy: str,
    working_set: Working,
    owner: str,
    batch_size: int | None,
    segment: int | None = None,
) -> BudgetPlan:
    s = sizes.state_bytes
    # Plan for the larger working set, and report the one the plan needs. Both carry one
    # state of slack: measured peaks agree with the prediction to within one state (when
    # the running state is released relative to a run's backward), and the budget is a bound.
    slack = s
    working = working_set.multi + slack
    avail = budget - working
    chain = Chain(length, float(s), float(sizes.internal_bytes))
    if policy in ("store_all", "chen", "recompute_all"):  # fixed shapes: their peak is the minimum
        plan = solve(chain, 1e300, policy, segment=segment)
        peak = simulate(plan, count_run_inputs=True).peak
        if peak > avail:
            need = math.ceil(peak) + working
            raise _too_small(owner, budget, need, sizes, length, batch_size)
        return BudgetPlan(plan, sizes, budget, working_set.for_plan(plan) + slack, int(peak))
    minimum = working + 2 * s
    if avail < 2 * s:
        raise _too_small(owner, budget, minimum, sizes, length, batch_size)
    target = float(avail)
    if policy == "hsm" and length > _REPLAY_LIMIT:
        # one run at a time, so at most one start state more than the planner counts:
        # plan for that, rather than replaying hundreds of thousands of ops
        target -= s
        while True:  # HSM keeps c = floor(budget / s) slots: c + 1 states with a run's input
            plan = solve(chain, max(float(s), target), policy)
            peak = float(s * (math.floor(plan.budget / s + 1e-9) + 1))
            if peak <= avail or target <= s:
                break
            target -= s
        return BudgetPlan(plan, sizes, budget, working_set.for_plan(plan) + slack, int(peak))
    for _ in range(8):  # usually one or two rounds
        plan = solve(chain, target, policy)
        peak = simulate(plan, count_run_inputs=True).peak
        if peak <= avail:
            return BudgetPlan(plan, sizes, budget, working_set.for_plan(plan) + slack, int(peak))
        target -= max(peak - avail, s)
        if target < s:
            break
    plan = solve(chain, float(s), "recompute_all")
    peak = simulate(plan, count_run_inputs=True).peak
    return BudgetPlan(plan, sizes, budget, working_set.for_plan(plan) + slack, int(peak))


def _too_small(
    owner: str, budget: int, minimum: int, sizes: StepSizes, length: int, batch: int | None
) -> InfeasibleBudgetError:
    b = f", batch {batch}" if batch is not None else ""
    return InfeasibleBudgetError(
        f"{owner}: memory_budget={format_size(budget)} is below the minimum "
        f"{format_size(minimum)} for seq_len={length}{b} (state {format_size(sizes.state_bytes)}, "
        f"internal {format_size(sizes.internal_bytes)} per step); raise the budget to at least "
        f"{format_size(minimum)} or shorten the sequence",
        minimum=minimum,
    )
