"""Modules and cells: the user writes one step, the library owns the loop."""

from .cell import Cell as Cell
from .cell import State as State
from .cell import StateSpec as StateSpec
from .cell import state_flatten as state_flatten
from .cell import state_map as state_map
from .cell import state_unflatten as state_unflatten
from .cells import GRUCell as GRUCell
from .cells import LayerNormLSTMCell as LayerNormLSTMCell
from .cells import LSTMCell as LSTMCell
from .cells import RNNCell as RNNCell
from .cells import StackedCell as StackedCell
from .recurrent import Recurrent as Recurrent
from .rnn import GRU as GRU
from .rnn import LSTM as LSTM
from .rnn import RNN as RNN

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Cell",
    "GRUCell",
    "LSTMCell",
    "LayerNormLSTMCell",
    "RNNCell",
    "Recurrent",
    "StackedCell",
    "State",
    "StateSpec",
    "state_flatten",
    "state_map",
    "state_unflatten",
]
