"""Typed exceptions raised by mbrnn.

Callers branch on the type, never on the message text.
"""

from __future__ import annotations

__all__ = ["InfeasibleBudgetError", "PlanError", "RecomputeMismatchError"]


class InfeasibleBudgetError(ValueError):
    """The memory budget is below the minimum any schedule needs.

    ``minimum`` holds the smallest budget (in the caller's unit) that would work.
    """

    def __init__(self, message: str, *, minimum: float) -> None:
        super().__init__(message)
        self.minimum = minimum


class PlanError(ValueError):
    """A plan is malformed: an op sequence that cannot be carried out."""


class RecomputeMismatchError(RuntimeError):
    """A recomputed step produced tensors whose metadata differ from the first pass."""
