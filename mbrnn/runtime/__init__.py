"""The runtime: carries out plans with autograd, measures cells and memory."""

from .executor import ExecStats as ExecStats
from .executor import draw_base_seed as draw_base_seed
from .executor import run_plan as run_plan
from .executor import step_rng as step_rng

__all__ = ["ExecStats", "draw_base_seed", "run_plan", "step_rng"]
