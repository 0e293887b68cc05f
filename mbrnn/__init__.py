"""mbrnn: memory-efficient backpropagation through time for PyTorch.

After Gruslys et al., "Memory-Efficient Backpropagation Through Time", NeurIPS 2016.

The torch-backed names below are exported lazily (PEP 562) so that ``import mbrnn.plan``
stays pure: the planner never imports torch, even through this package's ``__init__``
(``Budget`` imports torch only to resolve ``"auto"``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .budget import Budget as Budget
from .errors import InfeasibleBudgetError as InfeasibleBudgetError
from .errors import PlanError as PlanError
from .errors import RecomputeMismatchError as RecomputeMismatchError

if TYPE_CHECKING:
    from .hub import from_pretrained as from_pretrained
    from .nn import GRU as GRU
    from .nn import LSTM as LSTM
    from .nn import RNN as RNN
    from .nn import Cell as Cell
    from .nn import GRUCell as GRUCell
    from .nn import LayerNormLSTMCell as LayerNormLSTMCell
    from .nn import LSTMCell as LSTMCell
    from .nn import Recurrent as Recurrent
    from .nn import RNNCell as RNNCell
    from .nn import StackedCell as StackedCell

__version__ = "0.1.0"

_LAZY = {
    "Cell": ".nn",
    "GRU": ".nn",
    "GRUCell": ".nn",
    "LSTM": ".nn",
    "RNN": ".nn",
    "LSTMCell": ".nn",
    "LayerNormLSTMCell": ".nn",
    "RNNCell": ".nn",
    "Recurrent": ".nn",
    "StackedCell": ".nn",
    "from_pretrained": ".hub",
}

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Budget",
    "Cell",
    "GRUCell",
    "InfeasibleBudgetError",
    "LSTMCell",
    "LayerNormLSTMCell",
    "PlanError",
    "RNNCell",
    "RecomputeMismatchError",
    "Recurrent",
    "StackedCell",
    "__version__",
    "from_pretrained",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mbrnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
