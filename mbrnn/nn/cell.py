r"""The cell contract: the user writes one time step, the library owns the loop.

A recurrent network is a step function applied ``T`` times,

.. math::
    (y_t, s_t) = f_\theta(x_t, s_{t-1}), \qquad t = 1, \dots, T,

and memory-efficient BPTT (Gruslys et al., "Memory-Efficient Backpropagation Through
Time", NeurIPS 2016) works by *re-running* some steps during the backward pass instead of
keeping everything autograd saved for them. That is only correct if re-running a step
gives exactly what the first run gave, so a :class:`Cell` must be a pure function of its
input, its state, its parameters and the global RNG state. See :class:`Cell` for the
contract, and ``state_flatten`` / ``state_unflatten`` / ``state_map`` for the helpers the
executor uses to carry states around.
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Sequence
from typing import Generic, cast

import torch
from torch import Tensor, nn

from ..runtime.state import (
    State,
    StateSpec,
    StateT,
    _leaf_paths,
    state_flatten,
    state_map,
    state_unflatten,
)

__all__ = [
    "Cell",
    "State",
    "StateSpec",
    "StateT",
    "state_flatten",
    "state_map",
    "state_unflatten",
]

# --------------------------------------------------------------------------------------
# Argument validation shared by cells
# --------------------------------------------------------------------------------------


def _check_size(owner: str, name: str, value: object) -> int:
    """Validate a positive integer size argument (TypeError for type, ValueError for range)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
    return value


def _check_bool(owner: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, got {type(value).__name__}")
    return value


def _check_probability(owner: str, name: str, value: object) -> float:
    """Validate a dropout probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a float, got {type(value).__name__}")
    p = float(value)
    if not (math.isfinite(p) and 0.0 <= p < 1.0):
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value!r}")
    return p


def _shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# --------------------------------------------------------------------------------------
# Cell
# --------------------------------------------------------------------------------------


class Cell(nn.Module, abc.ABC, Generic[StateT]):
    r"""Base class for one step of a recurrent network.

    Subclass it, implement :meth:`init_state` and :meth:`forward`, and the library runs
    the loop and the memory-budgeted backward pass. ``Cell`` is generic in the type of its
    state, so ``class MyLSTM(Cell[tuple[Tensor, Tensor]])`` can annotate ``forward`` with
    the exact state type; a plain ``Cell`` subclass works too.

    .. math::
        (y_t, s_t) = f_\theta(x_t, s_{t-1})

    The contract (what the executor relies on):

    1. **Pure step.** :meth:`forward` depends only on ``x``, ``state``, the module's
       parameters/buffers, ``self.training`` and the global RNG. It does not mutate Python
       attributes, buffers or parameters, and it never modifies ``x`` or ``state`` in
       place (no ``h.mul_()``, ``c += ...``): the executor re-runs steps from stored
       states during the backward pass, and a state changed in place would be wrong the
       second time.
    2. **Randomness through the global RNG only** (``F.dropout``, ``torch.rand``...), never
       through a private ``torch.Generator``. The executor saves the RNG state before a
       step and restores it before recomputing the step, so dropout masks are replayed
       exactly. Each step must draw the same amount of randomness when replayed, which
       holds for any draw whose shape depends only on the input shapes.
    3. **State structure.** A :data:`State` is a Tensor or a plain (possibly nested) tuple
       of Tensors. :meth:`forward` returns a new state with the same structure, shapes,
       dtypes and device as the one it was given, and :meth:`init_state` defines that
       structure. By convention every state tensor has the batch as its first dimension.
       Return distinct tensors from :meth:`init_state` (``torch.zeros_like``), not the
       same tensor twice.
    4. **Shapes.** ``x`` is ``(batch, input_size)`` and ``y`` is ``(batch, hidden_size)``:
       ``hidden_size`` is the size of the per-step output, whatever the state holds.

    Validation runs at two levels. :meth:`check_input` is cheap (a few integer
    comparisons, no allocation, no device sync) so that :meth:`forward` can call it every
    step; the built-in cells do. :meth:`validate` is thorough (input and state structure,
    shapes, dtypes, devices against :meth:`init_state` and the parameters); the executor
    calls it once per sequence, on the first input and the initial state, and you can call
    it in your own tests. Both raise ``TypeError`` for wrong types or structures and
    ``ValueError`` for wrong shapes, with messages prefixed by the cell's class name.

    Args:
        input_size: the number of features of the per-step input ``x`` (>= 1).
        hidden_size: the number of features of the per-step output ``y`` (>= 1).

    Inputs: x, state
        - **x** of shape ``(batch, input_size)``: the input at this step.
        - **state**: the state from the previous step (or :meth:`init_state`).

    Outputs: y, new_state
        - **y** of shape ``(batch, hidden_size)``: the output at this step.
        - **new_state**: the next state, with the structure of ``state``.

    Example: a user cell, an LSTM with peephole connections (Gers & Schmidhuber, 2000)::

        >>> import torch
        >>> import torch.nn.functional as F
        >>> from torch import Tensor, nn
        >>> from mbrnn.nn.cell import Cell
        >>> LSTMState = tuple[Tensor, Tensor]  # (h, c)
        >>> class PeepholeLSTMCell(Cell[LSTMState]):
        ...     '''LSTM whose input, forget and output gates also see the cell state.'''
        ...     def __init__(self, input_size: int, hidden_size: int) -> None:
        ...         super().__init__(input_size, hidden_size)
        ...         self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        ...         self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        ...         self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        ...         self.weight_peep = nn.Parameter(torch.empty(3, hidden_size))  # i, f, o
        ...         bound = hidden_size**-0.5
        ...         for p in self.parameters():
        ...             nn.init.uniform_(p, -bound, bound)
        ...     def init_state(self, batch_size: int, *, device=None, dtype=None) -> LSTMState:
        ...         h = self.state_zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        ...         return (h, torch.zeros_like(h))
        ...     def forward(self, x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        ...         self.check_input(x, state)
        ...         h, c = state
        ...         gates = F.linear(x, self.weight_ih, self.bias) + F.linear(h, self.weight_hh)
        ...         i, f, g, o = gates.chunk(4, dim=1)
        ...         i = torch.sigmoid(i + self.weight_peep[0] * c)
        ...         f = torch.sigmoid(f + self.weight_peep[1] * c)
        ...         c_next = f * c + i * torch.tanh(g)  # a new tensor; c is left untouched
        ...         o = torch.sigmoid(o + self.weight_peep[2] * c_next)
        ...         h_next = o * torch.tanh(c_next)
        ...         return h_next, (h_next, c_next)
        >>> cell = PeepholeLSTMCell(8, 16)
        >>> state = cell.init_state(4)
        >>> y, state = cell(torch.randn(4, 8), state)
        >>> y.shape, state[1].shape
        (torch.Size([4, 16]), torch.Size([4, 16]))
        >>> cell(torch.randn(4, 7), state)
        Traceback (most recent call last):
        ...
        ValueError: PeepholeLSTMCell: input has 7 features, expected input_size=8
    """

    input_size: int
    hidden_size: int

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = _check_size(name, "input_size", input_size)
        self.hidden_size = _check_size(name, "hidden_size", hidden_size)

    @abc.abstractmethod
    def init_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> StateT:
        """The initial state for ``batch_size`` sequences: zeros, by convention.

        ``device`` and ``dtype`` default to those of the cell's parameters
        (:meth:`state_zeros` does this). Implementations must honour an explicit
        ``device``: :meth:`validate` calls ``init_state(batch, device="meta")`` to learn
        the expected shapes without allocating memory.
        """

    @abc.abstractmethod
    def forward(self, x: Tensor, state: StateT) -> tuple[Tensor, StateT]:
        """One step: ``x`` of shape ``(batch, input_size)`` and the previous state to
        ``(y, new_state)``, ``y`` of shape ``(batch, hidden_size)``."""

    # ----------------------------------------------------------------------------------

    def _factory_defaults(
        self, device: torch.device | str | None, dtype: torch.dtype | None
    ) -> tuple[torch.device | str | None, torch.dtype | None]:
        if device is None or dtype is None:
            for t in itertools.chain(self.parameters(), self.buffers()):
                if t.is_floating_point():
                    device = t.device if device is None else device
                    dtype = t.dtype if dtype is None else dtype
                    break
        return device, dtype

    def state_zeros(
        self,
        *size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """A zero tensor of ``size`` on the parameters' device and dtype unless given.

        A helper for :meth:`init_state`; falls back to torch's defaults for a cell with no
        floating-point parameters or buffers.
        """
        device, dtype = self._factory_defaults(device, dtype)
        return torch.zeros(size, device=device, dtype=dtype)

    def check_input(self, x: Tensor, state: object) -> None:
        """Cheap per-step check that ``x`` is ``(batch, input_size)``.

        Only compares integers on the fast path, so :meth:`forward` can call it every
        step; when the check fails it defers to :meth:`validate` for the message. The base
        version checks ``x`` only; built-in cells override it to check their state's
        shapes too. For a full check of the state, call :meth:`validate`.

        Raises:
            TypeError, ValueError: as :meth:`validate`.
        """
        if not (isinstance(x, Tensor) and x.dim() == 2 and x.shape[1] == self.input_size):
            self.validate(x, state)

    def validate(self, x: Tensor, state: object) -> None:
        """Thorough check of one step's input and state (run once per sequence).

        Checks that ``x`` is a 2-D floating-point tensor with ``input_size`` features and
        the dtype and device of the parameters, and that ``state`` has the structure,
        shapes, dtype and device of ``init_state(x.shape[0])``. Costs one
        :meth:`init_state` call on the ``meta`` device (no memory), so it is meant for the
        start of a sequence rather than every step.

        Raises:
            TypeError: ``x`` is not a floating-point Tensor; a dtype or state structure
                mismatch.
            ValueError: a shape or device mismatch.
        """
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: Expected input to be a Tensor, got {type(x).__name__}")
        if x.dim() != 2:
            raise ValueError(
                f"{name}: Expected input to be 2D (batch, input_size), got {x.dim()}D instead"
            )
        if x.shape[1] != self.input_size:
            raise ValueError(
                f"{name}: input has {x.shape[1]} features, expected input_size={self.input_size}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{name}: Expected a floating-point input, got dtype {x.dtype}")
        p_device, p_dtype = self._factory_defaults(None, None)
        if p_dtype is not None and x.dtype != p_dtype:
            raise TypeError(
                f"{name}: input has dtype {x.dtype} but the parameters are {p_dtype}; "
                f"cast the input or call cell.to({p_dtype})"
            )
        if p_device is not None and x.device != torch.device(p_device):
            raise ValueError(
                f"{name}: input is on {x.device} but the parameters are on {p_device}; "
                "move one of them"
            )

        batch = x.shape[0]
        tensors, spec = state_flatten(cast(State, state))
        expected, expected_spec = state_flatten(
            self.init_state(batch, device="meta", dtype=x.dtype)
        )
        if spec != expected_spec:
            raise TypeError(
                f"{name}: state has structure {spec}, expected {expected_spec} "
                "(the structure init_state returns)"
            )
        for path, t, ref in zip(_leaf_paths(spec), tensors, expected, strict=True):
            if t.shape != ref.shape:
                raise ValueError(
                    f"{name}: state{path} has shape {_shape_str(t.shape)}, expected "
                    f"{_shape_str(ref.shape)} for batch size {batch} "
                    f"(see init_state({batch}))"
                )
            if t.dtype != x.dtype:
                raise TypeError(
                    f"{name}: state{path} has dtype {t.dtype}, expected {x.dtype} to match "
                    "the input"
                )
            if t.device != x.device:
                raise ValueError(
                    f"{name}: state{path} is on {t.device} but the input is on {x.device}"
                )
