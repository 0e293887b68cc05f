"""mbrnn: memory-efficient backpropagation through time for PyTorch.

After Gruslys et al., "Memory-Efficient Backpropagation Through Time", NeurIPS 2016.
"""

from .errors import InfeasibleBudgetError as InfeasibleBudgetError
from .errors import PlanError as PlanError
from .errors import RecomputeMismatchError as RecomputeMismatchError

__version__ = "0.1.0"

__all__ = ["InfeasibleBudgetError", "PlanError", "RecomputeMismatchError", "__version__"]
