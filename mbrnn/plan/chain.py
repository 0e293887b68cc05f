"""The per-step cost model the planner optimises over.

A recurrence of ``length`` steps maps a hidden state ``h[t-1]`` to ``h[t]``. Keeping a
hidden state costs ``state_size``; keeping a step's *internal state* (everything autograd
saves to back-propagate that step, its output state included) costs ``internal_size``.
Units are the caller's (bytes in practice); only ratios and the budget matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Chain", "Units"]


def _check_size(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Chain: {name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"Chain: {name} must be finite and > 0, got {value!r}")
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


@dataclass(frozen=True)
class Chain:
    """Sizes of one recurrence, validated on construction.

    Args:
        length: number of time steps ``T`` (>= 1).
        state_size: memory of one hidden state (> 0).
        internal_size: memory autograd keeps for one step, output state included
            (>= ``state_size``).
    """

    length: int
    state_size: float = 1.0
    internal_size: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise TypeError(f"Chain: length must be an int, got {type(self.length).__name__}")
        if self.length <= 0:
            raise ValueError(f"Chain: length must be >= 1, got {self.length}")
        s = _check_size("state_size", self.state_size)
        a = _check_size("internal_size", self.internal_size)
        if a < s:
            raise ValueError(
                f"Chain: internal_size={self.internal_size!r} is below state_size="
                f"{self.state_size!r}; a step's internal state includes its output state, "
                "so internal_size must be >= state_size"
            )

    @property
    def alpha(self) -> float:
        """internal_size / state_size (>= 1)."""
        return self.internal_size / self.state_size

    @property
    def store_all_peak(self) -> float:
        """Peak of keeping every internal state: ``s + (T - 1) * a``."""
        return self.state_size + (self.length - 1) * self.internal_size

    def with_length(self, length: int) -> Chain:
        return Chain(length, self.state_size, self.internal_size)

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
