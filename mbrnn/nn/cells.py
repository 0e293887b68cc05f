r"""Built-in cells: LSTM, GRU, Elman RNN, LayerNorm-LSTM, and stacks of cells.

:class:`LSTMCell`, :class:`GRUCell` and :class:`RNNCell` are drop-in equivalents of
``torch.nn.LSTMCell``, ``torch.nn.GRUCell`` and ``torch.nn.RNNCell``: same parameter names,
shapes, gate order and initialisation, and the same ATen step kernels (``torch._VF``), so
outputs and gradients match bit for bit and ``load_state_dict`` works across. They differ
only in taking batched input alone and in returning ``(y, state)`` as a :class:`Cell`.

:class:`LayerNormLSTMCell` is the layer-normalised LSTM of Ba, Kiros & Hinton, "Layer
Normalization", arXiv:1607.06450 (2016). :class:`StackedCell` turns a sequence of cells into
one multi-layer cell, with dropout between layers as ``torch.nn.LSTM`` applies it.

The memory-efficient BPTT these cells serve is Gruslys et al., "Memory-Efficient
Backpropagation Through Time", NeurIPS 2016.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TypeAlias, cast

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn

from .cell import (
    Cell,
    State,
    StateT,
    _check_bool,
    _check_probability,
    _check_size,
)

__all__ = ["GRUCell", "LSTMCell", "LayerNormLSTMCell", "RNNCell", "StackedCell"]

_Device: TypeAlias = torch.device | str | None

# NOTE [ torch._VF step kernels ]
# LSTMCell, GRUCell and RNNCell call the ATen step kernels that torch.nn.*Cell call
# (torch._VF.lstm_cell etc.). That keeps outputs and gradients bit-identical to torch and,
# on CUDA, uses the fused kernels, which save less for backward than the same step written
# with F.linear and pointwise ops: a smaller per-step internal state for the planner.


def _is_hidden(t: object, batch: int, size: int) -> bool:
    """Cheap check that ``t`` is a ``(batch, size)`` tensor."""
    return isinstance(t, Tensor) and t.dim() == 2 and t.shape[0] == batch and t.shape[1] == size


def _x_ok(x: object, input_size: int) -> bool:
    return isinstance(x, Tensor) and x.dim() == 2 and x.shape[1] == input_size


class _GatedCell(Cell[StateT]):
    """Shared parameters of the torch-compatible cells: ``num_chunks`` stacked gates."""

    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None
    bias_hh: Tensor | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        num_chunks: int,
        device: _Device,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.bias = _check_bool(type(self).__name__, "bias", bias)
        kw = {"device": device, "dtype": dtype}
        # Registration order matches torch's RNNCellBase, so that reset_parameters draws
        # the same numbers from the RNG: same seed, same weights as torch.nn.*Cell.
        self.weight_ih = nn.Parameter(torch.empty(num_chunks * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(num_chunks * hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(num_chunks * hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(num_chunks * hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter from :math:`\\mathcal{U}(-1/\\sqrt{H}, 1/\\sqrt{H})`, as torch."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        return s


class LSTMCell(_GatedCell[tuple[Tensor, Tensor]]):
    r"""A long short-term memory cell, equivalent to ``torch.nn.LSTMCell``.

    .. math::
        \begin{array}{ll}
        i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \\
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' = f \odot c + i \odot g \\
        h' = o \odot \tanh(c') \\
        y = h'
        \end{array}

    Args:
        input_size: the number of features of the input ``x``.
        hidden_size: the number of features of ``h`` and ``c``.
        bias: if ``False``, the cell has no ``bias_ih`` and ``bias_hh``. Default: ``True``.
        device, dtype: where and how to create the parameters (keyword-only).

    Inputs: x, (h, c)
        - **x** of shape ``(batch, input_size)``.
        - **h**, **c** of shape ``(batch, hidden_size)``: see :meth:`init_state`.

    Outputs: y, (h', c')
        - **y** of shape ``(batch, hidden_size)``: the same tensor as ``h'``.
        - **h'**, **c'** of shape ``(batch, hidden_size)``.

    Attributes:
        weight_ih: ``(4*hidden_size, input_size)``, gates stacked in the order i, f, g, o.
        weight_hh: ``(4*hidden_size, hidden_size)``.
        bias_ih, bias_hh: ``(4*hidden_size,)``.

    Every parameter starts from :math:`\mathcal{U}(-1/\sqrt{H}, 1/\sqrt{H})`; with the same
    seed the weights equal those of ``torch.nn.LSTMCell``.

    Example::

        >>> cell = LSTMCell(8, 16)
        >>> h, c = cell.init_state(4)
        >>> y, (h, c) = cell(torch.randn(4, 8), (h, c))
        >>> y.shape
        torch.Size([4, 16])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def init_state(
        self, batch_size: int, *, device: _Device = None, dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor]:
        """Zero ``(h, c)``, each ``(batch_size, hidden_size)``."""
        h = self.state_zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return h, torch.zeros_like(h)

    def check_input(self, x: Tensor, state: object) -> None:
        """Cheap per-step shape check of ``x`` and ``(h, c)``; see :meth:`Cell.check_input`."""
        if not (
            _x_ok(x, self.input_size)
            and type(state) is tuple
            and len(state) == 2
            and _is_hidden(state[0], x.shape[0], self.hidden_size)
            and _is_hidden(state[1], x.shape[0], self.hidden_size)
        ):
            self.validate(x, state)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        self.check_input(x, state)
        h, c = _VF.lstm_cell(
            x,
            state,
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
        )
        return h, (h, c)


class GRUCell(_GatedCell[Tensor]):
    r"""A gated recurrent unit cell, equivalent to ``torch.nn.GRUCell``.

    .. math::
        \begin{array}{ll}
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
        h' = (1 - z) \odot n + z \odot h \\
        y = h'
        \end{array}

    Args:
        input_size: the number of features of the input ``x``.
        hidden_size: the number of features of ``h``.
        bias: if ``False``, the cell has no ``bias_ih`` and ``bias_hh``. Default: ``True``.
        device, dtype: where and how to create the parameters (keyword-only).

    Inputs: x, h
        - **x** of shape ``(batch, input_size)``.
        - **h** of shape ``(batch, hidden_size)``.

    Outputs: y, h'
        - **y**, **h'** of shape ``(batch, hidden_size)``: the same tensor.

    Attributes:
        weight_ih: ``(3*hidden_size, input_size)``, gates stacked in the order r, z, n.
        weight_hh: ``(3*hidden_size, hidden_size)``.
        bias_ih, bias_hh: ``(3*hidden_size,)``.

    Example::

        >>> cell = GRUCell(8, 16)
        >>> y, h = cell(torch.randn(4, 8), cell.init_state(4))
        >>> y.shape
        torch.Size([4, 16])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def init_state(
        self, batch_size: int, *, device: _Device = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Zero ``h`` of shape ``(batch_size, hidden_size)``."""
        return self.state_zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def check_input(self, x: Tensor, state: object) -> None:
        """Cheap per-step shape check of ``x`` and ``h``; see :meth:`Cell.check_input`."""
        if not (_x_ok(x, self.input_size) and _is_hidden(state, x.shape[0], self.hidden_size)):
            self.validate(x, state)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        self.check_input(x, state)
        h = _VF.gru_cell(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h, h


class RNNCell(_GatedCell[Tensor]):
    r"""An Elman RNN cell with tanh or ReLU non-linearity, equivalent to ``torch.nn.RNNCell``.

    .. math::
        h' = \phi(W_{ih} x + b_{ih} + W_{hh} h + b_{hh}), \qquad y = h',

    with :math:`\phi` = ``tanh`` or ``relu``.

    Args:
        input_size: the number of features of the input ``x``.
        hidden_size: the number of features of ``h``.
        bias: if ``False``, the cell has no ``bias_ih`` and ``bias_hh``. Default: ``True``.
        nonlinearity: ``"tanh"`` or ``"relu"``. Default: ``"tanh"``.
        device, dtype: where and how to create the parameters (keyword-only).

    Inputs: x, h
        - **x** of shape ``(batch, input_size)``.
        - **h** of shape ``(batch, hidden_size)``.

    Outputs: y, h'
        - **y**, **h'** of shape ``(batch, hidden_size)``: the same tensor.

    Attributes:
        weight_ih: ``(hidden_size, input_size)``.
        weight_hh: ``(hidden_size, hidden_size)``.
        bias_ih, bias_hh: ``(hidden_size,)``.

    Example::

        >>> cell = RNNCell(8, 16, nonlinearity="relu")
        >>> y, h = cell(torch.randn(4, 8), cell.init_state(4))
        >>> bool((y >= 0).all())
        True
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(nonlinearity, str):
            raise TypeError(
                f"RNNCell: nonlinearity must be a str, got {type(nonlinearity).__name__}"
            )
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"RNNCell: unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'"
            )
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def init_state(
        self, batch_size: int, *, device: _Device = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Zero ``h`` of shape ``(batch_size, hidden_size)``."""
        return self.state_zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def check_input(self, x: Tensor, state: object) -> None:
        """Cheap per-step shape check of ``x`` and ``h``; see :meth:`Cell.check_input`."""
        if not (_x_ok(x, self.input_size) and _is_hidden(state, x.shape[0], self.hidden_size)):
            self.validate(x, state)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        self.check_input(x, state)
        step = _VF.rnn_tanh_cell if self.nonlinearity == "tanh" else _VF.rnn_relu_cell
        h = step(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h, h

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s


class LayerNormLSTMCell(Cell[tuple[Tensor, Tensor]]):
    r"""An LSTM cell with layer normalisation (Ba, Kiros & Hinton, 2016, Sec. 3.1).

    The input and recurrent pre-activations are normalised separately, over all four gates
    together, and the cell state is normalised before the output non-linearity:

    .. math::
        \begin{array}{ll}
        (i, f, g, o) = \mathrm{LN}(W_{ih} x; \alpha_1) + \mathrm{LN}(W_{hh} h; \alpha_2) + b \\
        c' = \sigma(f) \odot c + \sigma(i) \odot \tanh(g) \\
        h' = \sigma(o) \odot \tanh(\mathrm{LN}(c'; \alpha_3, \beta_3)) \\
        y = h'
        \end{array}

    where :math:`\mathrm{LN}(z; \alpha, \beta) = \alpha \odot (z - \mu(z)) /
    \sqrt{\sigma^2(z) + \epsilon} + \beta` over the feature dimension. The shifts of the
    two gate normalisations are folded into the single bias :math:`b` (they would be
    redundant). The state carries the un-normalised :math:`c'`. Gates are ordered i, f, g, o
    as in :class:`LSTMCell`.

    Args:
        input_size: the number of features of the input ``x``.
        hidden_size: the number of features of ``h`` and ``c``.
        bias: if ``False``, there is no gate bias :math:`b` and no cell shift
            :math:`\beta_3`. Default: ``True``.
        eps: the :math:`\epsilon` of every normalisation (> 0). Default: ``1e-5``.
        device, dtype: where and how to create the parameters (keyword-only).

    Inputs: x, (h, c)
        - **x** of shape ``(batch, input_size)``.
        - **h**, **c** of shape ``(batch, hidden_size)``.

    Outputs: y, (h', c')
        - **y** of shape ``(batch, hidden_size)``: the same tensor as ``h'``.
        - **h'**, **c'** of shape ``(batch, hidden_size)``.

    Attributes:
        weight_ih: ``(4*hidden_size, input_size)``, from :math:`\mathcal{U}(-1/\sqrt{H}, 1/\sqrt{H})`.
        weight_hh: ``(4*hidden_size, hidden_size)``, likewise.
        bias: ``(4*hidden_size,)``, likewise.
        norm_ih.weight, norm_hh.weight: gains :math:`\alpha_1, \alpha_2` of shape
            ``(4*hidden_size,)``, ones.
        norm_c.weight, norm_c.bias: :math:`\alpha_3, \beta_3` of shape ``(hidden_size,)``,
            ones and zeros.

    Example::

        >>> cell = LayerNormLSTMCell(8, 16)
        >>> y, (h, c) = cell(torch.randn(4, 8), cell.init_state(4))
        >>> y.shape
        torch.Size([4, 16])
    """

    bias: Tensor | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        eps: float = 1e-5,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size)
        _check_bool("LayerNormLSTMCell", "bias", bias)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)):
            raise TypeError(f"LayerNormLSTMCell: eps must be a float, got {type(eps).__name__}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"LayerNormLSTMCell: eps must be finite and > 0, got {eps!r}")
        self.eps = float(eps)
        kw = {"device": device, "dtype": dtype}
        gates = 4 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size, **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(gates, **kw))
        else:
            self.register_parameter("bias", None)
        self.norm_ih = nn.LayerNorm(gates, eps=self.eps, bias=False, **kw)
        self.norm_hh = nn.LayerNorm(gates, eps=self.eps, bias=False, **kw)
        self.norm_c = nn.LayerNorm(hidden_size, eps=self.eps, bias=bias, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights and bias from :math:`\\mathcal{U}(-1/\\sqrt{H}, 1/\\sqrt{H})`; gains one,
        shifts zero."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)
        for norm in (self.norm_ih, self.norm_hh, self.norm_c):
            norm.reset_parameters()

    def init_state(
        self, batch_size: int, *, device: _Device = None, dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor]:
        """Zero ``(h, c)``, each ``(batch_size, hidden_size)``."""
        h = self.state_zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return h, torch.zeros_like(h)

    def check_input(self, x: Tensor, state: object) -> None:
        """Cheap per-step shape check of ``x`` and ``(h, c)``; see :meth:`Cell.check_input`."""
        if not (
            _x_ok(x, self.input_size)
            and type(state) is tuple
            and len(state) == 2
            and _is_hidden(state[0], x.shape[0], self.hidden_size)
            and _is_hidden(state[1], x.shape[0], self.hidden_size)
        ):
            self.validate(x, state)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        self.check_input(x, state)
        h, c = state
        gates_shape = (4 * self.hidden_size,)
        gates = F.layer_norm(
            F.linear(x, self.weight_ih), gates_shape, self.norm_ih.weight, None, self.eps
        ) + F.layer_norm(
            F.linear(h, self.weight_hh), gates_shape, self.norm_hh.weight, None, self.eps
        )  # (B, 4H)
        if self.bias is not None:
            gates = gates + self.bias
        i, f, g, o = gates.chunk(4, dim=1)  # each (B, H)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        c_norm = F.layer_norm(
            c_next, (self.hidden_size,), self.norm_c.weight, self.norm_c.bias, self.eps
        )
        h_next = torch.sigmoid(o) * torch.tanh(c_norm)
        return h_next, (h_next, c_next)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is None:
            s += ", bias=False"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        return s


class StackedCell(Cell[tuple[State, ...]]):
    r"""Several cells run one after the other within a time step: a multi-layer cell.

    Layer :math:`l` reads the output of layer :math:`l-1`; the stack's output is the last
    layer's. As in ``torch.nn.LSTM``, dropout is applied to the output of every layer but
    the last, in training mode only, and only on the way up: the layer's own state is not
    dropped.

    .. math::
        \begin{array}{ll}
        (y^{(l)}, s'^{(l)}) = \mathrm{cell}_l(\tilde y^{(l-1)}, s^{(l)}),
            \quad \tilde y^{(0)} = x \\
        \tilde y^{(l)} = \mathrm{dropout}_p(y^{(l)}) \quad (l < L), \qquad y = y^{(L)}
        \end{array}

    The state is the tuple of the layers' states, so stacks nest. Each layer's dropout
    mask is drawn afresh at every step from the global RNG (``F.dropout``), layer by layer
    in order; nothing is drawn in eval mode or when ``dropout == 0``.

    Args:
        cells: one or more :class:`Cell` s; each one's ``input_size`` must equal the
            previous one's ``hidden_size``.
        dropout: the probability of zeroing an element between layers, in ``[0, 1)``.
            Default: ``0.0``.

    Inputs: x, state
        - **x** of shape ``(batch, cells[0].input_size)``.
        - **state**: a tuple with one state per layer.

    Outputs: y, new_state
        - **y** of shape ``(batch, cells[-1].hidden_size)``.
        - **new_state**: a tuple with one new state per layer.

    Example::

        >>> stack = StackedCell([GRUCell(8, 16), LSTMCell(16, 32)], dropout=0.1)
        >>> state = stack.init_state(4)  # (h0, (h1, c1))
        >>> y, state = stack(torch.randn(4, 8), state)
        >>> y.shape
        torch.Size([4, 32])
        >>> lstm = StackedCell.lstm(8, 16, num_layers=3, dropout=0.2)
        >>> len(lstm.init_state(4))
        3
    """

    cells: nn.ModuleList

    def __init__(self, cells: Sequence[Cell], dropout: float = 0.0) -> None:
        if isinstance(cells, Cell) or not isinstance(cells, (Sequence, nn.ModuleList)):
            raise TypeError(
                f"StackedCell: cells must be a sequence of Cells, got {type(cells).__name__}"
            )
        layers = list(cells)
        if not layers:
            raise ValueError("StackedCell: cells must hold at least one Cell, got none")
        for i, cell in enumerate(layers):
            if not isinstance(cell, Cell):
                raise TypeError(
                    f"StackedCell: cells[{i}] is a {type(cell).__name__}, expected a Cell "
                    "(subclass mbrnn.nn.cell.Cell)"
                )
        for i in range(1, len(layers)):
            if layers[i].input_size != layers[i - 1].hidden_size:
                raise ValueError(
                    f"StackedCell: cells[{i}] has input_size={layers[i].input_size}, but "
                    f"cells[{i - 1}] outputs hidden_size={layers[i - 1].hidden_size}; "
                    "consecutive layers must match"
                )
        p = _check_probability("StackedCell", "dropout", dropout)
        super().__init__(layers[0].input_size, layers[-1].hidden_size)
        self.cells = nn.ModuleList(layers)
        self.dropout = p
        if p > 0 and len(layers) == 1:
            warnings.warn(
                f"StackedCell: dropout={dropout!r} has no effect with a single layer; "
                "dropout is applied between layers only",
                UserWarning,
                stacklevel=2,
            )

    @property
    def num_layers(self) -> int:
        """The number of layers."""
        return len(self.cells)

    def init_state(
        self, batch_size: int, *, device: _Device = None, dtype: torch.dtype | None = None
    ) -> tuple[State, ...]:
        """The tuple of every layer's ``init_state``."""
        return tuple(
            cast(Cell, cell).init_state(batch_size, device=device, dtype=dtype)
            for cell in self.cells
        )

    def check_input(self, x: Tensor, state: object) -> None:
        """Cheap check of ``x`` and of the number of layer states; each layer checks its own
        state when it runs. See :meth:`Cell.check_input`."""
        if not (
            _x_ok(x, self.input_size) and type(state) is tuple and len(state) == len(self.cells)
        ):
            self.validate(x, state)

    def forward(self, x: Tensor, state: tuple[State, ...]) -> tuple[Tensor, tuple[State, ...]]:
        self.check_input(x, state)
        last = len(self.cells) - 1
        new_states: list[State] = []
        for i, cell in enumerate(self.cells):
            x, s = cell(x, state[i])
            new_states.append(s)
            if i < last and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
        return x, tuple(new_states)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}" if self.dropout else ""

    # ----------------------------------------------------------------------------------
    # Convenience constructors: the stacks torch.nn.LSTM / GRU / RNN compute.
    # ----------------------------------------------------------------------------------

    @staticmethod
    def _sizes(owner: str, input_size: int, hidden_size: int, num_layers: int) -> list[int]:
        _check_size(owner, "input_size", input_size)
        _check_size(owner, "hidden_size", hidden_size)
        _check_size(owner, "num_layers", num_layers)
        return [input_size] + [hidden_size] * (num_layers - 1)

    @classmethod
    def lstm(
        cls,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ) -> StackedCell:
        """A stack of :class:`LSTMCell` s: the step of ``torch.nn.LSTM(input_size,
        hidden_size, num_layers, bias=bias, dropout=dropout)``. With the same seed the
        weights equal torch's (layer ``l``'s ``weight_ih`` is torch's ``weight_ih_l{l}``)."""
        sizes = cls._sizes("StackedCell.lstm", input_size, hidden_size, num_layers)
        layers = [LSTMCell(n, hidden_size, bias, device=device, dtype=dtype) for n in sizes]
        return cls(layers, dropout)

    @classmethod
    def gru(
        cls,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ) -> StackedCell:
        """A stack of :class:`GRUCell` s: the step of ``torch.nn.GRU``."""
        sizes = cls._sizes("StackedCell.gru", input_size, hidden_size, num_layers)
        layers = [GRUCell(n, hidden_size, bias, device=device, dtype=dtype) for n in sizes]
        return cls(layers, dropout)

    @classmethod
    def rnn(
        cls,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        nonlinearity: str = "tanh",
        bias: bool = True,
        dropout: float = 0.0,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ) -> StackedCell:
        """A stack of :class:`RNNCell` s: the step of ``torch.nn.RNN``."""
        sizes = cls._sizes("StackedCell.rnn", input_size, hidden_size, num_layers)
        layers = [
            RNNCell(n, hidden_size, bias, nonlinearity, device=device, dtype=dtype) for n in sizes
        ]
        return cls(layers, dropout)
