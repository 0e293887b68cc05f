"""The planner's policies and the one ranking every ``auto`` uses.

``auto`` evaluates the candidate policies and keeps the plan of the lowest :func:`rank`:
forward steps plus ``run_cost`` steps per run (a fused kernel call has a fixed cost of
its own; a per-step loop has none, ``run_cost=0``), ties going to fewer runs. The pure
planner (:func:`~mbrnn.plan.solver.solve`) and the runtime's fitting loop
(:func:`mbrnn.runtime.fit.fit`) both rank with it.
"""

from __future__ import annotations

from enum import Enum
from typing import Final, Literal

__all__ = ["POLICIES", "Policy", "PolicyName", "check_policy", "rank"]


class Policy(str, Enum):
    """What a plan may keep: the paper's three strategies, the baselines, and ``auto``."""

    STORE_ALL = "store_all"
    RECOMPUTE_ALL = "recompute_all"
    CHEN = "chen"
    HSM = "hsm"
    ISM = "ism"
    MSM = "msm"
    AUTO = "auto"


PolicyName = Literal["store_all", "recompute_all", "chen", "hsm", "ism", "msm", "auto"]

POLICIES: Final = tuple(p.value for p in Policy)


def check_policy(owner: str, policy: object) -> str:
    """``policy`` as a plain string, or a ``TypeError``/``ValueError`` naming ``owner``."""
    if isinstance(policy, Policy):
        return policy.value
    if not isinstance(policy, str):
        raise TypeError(f"{owner}: policy must be a str, got {type(policy).__name__}")
    if policy not in POLICIES:
        raise ValueError(
            f"{owner}: unknown policy {policy!r}; expected one of {', '.join(POLICIES)}"
        )
    return policy


def rank(forward_steps: int, runs: int, run_cost: float) -> tuple[float, int]:
    """What ``auto`` minimises: ``(forward_steps + run_cost * runs, runs)``."""
    return forward_steps + run_cost * runs, runs
