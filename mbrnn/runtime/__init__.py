"""The runtime: carries out plans with autograd, measures cells and memory, fits plans.

- :mod:`~mbrnn.runtime.executor`: ``run_plan`` and the ``Segment`` protocol;
- :mod:`~mbrnn.runtime.fused`: the fused-kernel segment of ``LSTM``/``GRU``/``RNN``;
- :mod:`~mbrnn.runtime.probe`: what a step or a fused call keeps, the working set;
- :mod:`~mbrnn.runtime.fit`: the one fitting loop and ``auto``;
- :mod:`~mbrnn.runtime.state`: states as pytrees;
- :mod:`~mbrnn.runtime.memory`: the peak-memory meter.
"""

from .executor import ExecStats as ExecStats
from .executor import draw_base_seed as draw_base_seed
from .executor import run_plan as run_plan
from .executor import step_rng as step_rng

__all__ = ["ExecStats", "draw_base_seed", "run_plan", "step_rng"]
