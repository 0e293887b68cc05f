"""Typed exceptions raised by mbrnn.

Callers branch on the type, never on the message text.
"""

from __future__ import annotations

__all__ = ["ConfigError", "InfeasibleBudgetError", "PlanError", "RecomputeMismatchError"]


class ConfigError(ValueError):
    """Bad input to a training or evaluation run: its config, data, checkpoint or budget.

    Raised before training starts, with a message that names the key or file, the value and
    the fix. ``mbrnn.training.TrainError`` is another name for this class.
    """


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
