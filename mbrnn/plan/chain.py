"""The per-step cost model the planner optimises over.

A recurrence of ``length`` steps maps a hidden state ``h[t-1]`` to ``h[t]``. Keeping a
hidden state costs ``state_size``; keeping a step's *internal state* (everything autograd
saves to back-propagate that step, its output state included) costs ``internal_size``.
Units are the caller's (bytes in practice); only ratios and the budget matter.

Four more terms describe what an executor holds beyond the planner's two sizes; they
default to zero, where the accounting is exactly the paper's. The dynamic programs
optimise over the two sizes alone; :func:`~mbrnn.plan.simulate.simulate` counts every
term, so ``simulate(plan).peak`` is the whole prediction for a plan (the runtime adds
its measured working set, a constant):

- ``run_size``: held by every kept run (a ``ForwardKeep`` op) on top of its steps' internal
  states until it is back-propagated, once per call of at most ``call_steps`` steps (a
  fused kernel's workspace header and final states);
- ``sweep_size``: transient while a ``Forward`` op runs (a fused call's output buffer);
- ``backward_step_size``: transient per step while a kept call is back-propagated (the
  fused kernel's backward allocates for all its steps at once);
- ``call_steps``: the most steps one kept call runs (``0``: a whole run is one call).
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, replace

__all__ = ["Chain", "Units"]


def _check_size(name: str, value: object, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Chain: {name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not zero):
        raise ValueError(f"Chain: {name} must be finite and {'>=' if zero else '>'} 0, got {value!r}")
    return v


@dataclass(frozen=True)
class Units:
    """A chain and budget discretised to integers: the planner's exact arithmetic.

    ``unit`` is the size of one integer unit in the caller's unit. Sizes are rounded
    *up* and the budget *down*, so a plan that fits in integer units fits for real.
    """

    unit: float
    s: int
    a: int
    m: int


@dataclass(frozen=True, repr=False)
class Chain:
    """Sizes of one recurrence, validated on construction.

    Args:
        length: number of time steps ``T`` (>= 1).
        state_size: memory of one hidden state (> 0).
        internal_size: memory autograd keeps for one step, output state included
            (>= ``state_size``).
        run_size, sweep_size, backward_step_size: keyword-only, >= 0, default 0: what
            an executor holds per kept call, per running sweep and per step of a call
            being back-propagated (see the module docstring).
        call_steps: keyword-only, the most steps of one kept call (``0``: unbounded).
    """

    length: int
    state_size: float = 1.0
    internal_size: float = 1.0
    _: KW_ONLY
    run_size: float = 0.0
    sweep_size: float = 0.0
    backward_step_size: float = 0.0
    call_steps: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise TypeError(f"Chain: length must be an int, got {type(self.length).__name__}")
        if self.length <= 0:
            raise ValueError(f"Chain: length must be >= 1, got {self.length}")
        s = _check_size("state_size", self.state_size)
        a = _check_size("internal_size", self.internal_size)
        for name in ("run_size", "sweep_size", "backward_step_size"):
            _check_size(name, getattr(self, name), zero=True)
        steps = self.call_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"Chain: call_steps must be an int >= 0 (0: unbounded), got {steps!r}")
        if a < s:
            raise ValueError(
                f"Chain: internal_size={self.internal_size!r} is below state_size="
                f"{self.state_size!r}; a step's internal state includes its output state, "
                "so internal_size must be >= state_size"
            )

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in
                        ("run_size", "sweep_size", "backward_step_size", "call_steps")
                        if getattr(self, k))
        return (f"Chain(length={self.length!r}, state_size={self.state_size!r}, "
                f"internal_size={self.internal_size!r}{extra})")

    @property
    def alpha(self) -> float:
        """internal_size / state_size (>= 1)."""
        return self.internal_size / self.state_size

    @property
    def store_all_peak(self) -> float:
        """Peak of keeping every internal state: ``s + (T - 1) * a``."""
        return self.state_size + (self.length - 1) * self.internal_size

    @property
    def has_executor_terms(self) -> bool:
        """Whether any of the executor's terms is set (the paper's accounting if not)."""
        return bool(self.run_size or self.sweep_size or self.backward_step_size)

    def with_length(self, length: int) -> Chain:
        """The same sizes for ``length`` steps."""
        return replace(self, length=length)

    def calls(self, steps: int) -> int:
        """Kept calls a run of ``steps`` steps takes: ``ceil(steps / call_steps)``."""
        return -(-steps // self.call_steps) if self.call_steps else 1

    def backward_transient(self, steps: int) -> float:
        """What back-propagating a kept run of ``steps`` steps allocates at once: its
        longest call's steps after the first (``backward_step_size`` each)."""
        longest = min(steps, self.call_steps) if self.call_steps else steps
        return max(0, longest - 1) * self.backward_step_size

    def discretise(self, budget: float, resolution: int | None = None) -> Units:
        """Integer units for the exact dynamic programs.

        NOTE [ Discretisation ]
        One unit is ``state_size / q``: a hidden state is exactly ``q`` units and an
        internal state ``ceil(q * alpha)`` units (rounded up), the budget
        ``floor(budget / unit)`` units (rounded down). With an integer ``alpha`` we use
        ``q = 1`` and nothing is rounded. Otherwise ``q`` is the smallest of 1..8 whose
        rounding of the internal size is within 2 % (else 8); ``resolution`` overrides it.
        Rounding only ever over-counts memory, so a plan never exceeds its budget; the
        cost of a finer ``q`` is a DP table ``q`` times wider.
        """
        alpha = self.alpha
        if resolution is None:
            q = 8
            for cand in range(1, 9):
                au = math.ceil(cand * alpha - 1e-9)
                if au <= cand * alpha * 1.02 + 1e-9:
                    q = cand
                    break
        else:
            if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
                raise ValueError(f"resolution must be an int >= 1, got {resolution!r}")
            q = resolution
        unit = self.state_size / q
        a_units = max(q, math.ceil(q * alpha - 1e-9))
        m_units = math.floor(budget / unit + 1e-9)
        return Units(unit=unit, s=q, a=a_units, m=m_units)
