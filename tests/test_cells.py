"""Tests for mbrnn.nn.cell (the Cell contract) and mbrnn.nn.cells.

One shared contract suite runs over every built-in cell, stacks of them, and a user cell
written here the way the Cell docstring teaches; then torch.nn equivalence, per-cell
behaviour and error messages. The state helpers (mbrnn.runtime.state) are in test_state.py.
"""

from __future__ import annotations

import doctest
import math
import re
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

import mbrnn.nn.cell as cell_module
import mbrnn.nn.cells as cells_module
from mbrnn.nn.cell import Cell, State, state_flatten, state_map, state_unflatten
from mbrnn.nn.cells import GRUCell, LayerNormLSTMCell, LSTMCell, RNNCell, StackedCell

F_IN, HID, BATCH = 5, 8, 3


from helpers import PeepholeLSTM, leaves  # noqa: E402  (shared with test_recurrent)

# name -> factory(input_size, hidden_size) -> Cell
FACTORIES: dict[str, Callable[[int, int], Cell]] = {
    "lstm": lambda n, h: LSTMCell(n, h),
    "lstm-nobias": lambda n, h: LSTMCell(n, h, bias=False),
    "gru": lambda n, h: GRUCell(n, h),
    "rnn-tanh": lambda n, h: RNNCell(n, h),
    "rnn-relu": lambda n, h: RNNCell(n, h, nonlinearity="relu"),
    "ln-lstm": lambda n, h: LayerNormLSTMCell(n, h),
    "ln-lstm-nobias": lambda n, h: LayerNormLSTMCell(n, h, bias=False),
    "peephole": lambda n, h: PeepholeLSTM(n, h),
    "stacked-lstm-dropout": lambda n, h: StackedCell.lstm(n, h, 2, dropout=0.3),
    "stacked-mixed-dropout": lambda n, h: StackedCell(
        [GRUCell(n, h), PeepholeLSTM(h, h), RNNCell(h, h + 2)], dropout=0.25
    ),
    "stacked-nested": lambda n, h: StackedCell(
        [StackedCell.gru(n, h, 2, dropout=0.5), LayerNormLSTMCell(h, h)], dropout=0.5
    ),
}
DROPOUT_CELLS = {"stacked-lstm-dropout", "stacked-mixed-dropout", "stacked-nested"}


@pytest.fixture(params=sorted(FACTORIES))
def cell_name(request: pytest.FixtureRequest) -> str:
    return request.param


def make(name: str, n: int = F_IN, h: int = HID, dtype: torch.dtype = torch.float64) -> Cell:
    torch.manual_seed(0)
    return FACTORIES[name](n, h).to(dtype)


def random_state(cell: Cell, batch: int = BATCH) -> State:
    return state_map(torch.randn_like, cell.init_state(batch))


def assert_states_equal(a: State, b: State) -> None:
    ta, sa = state_flatten(a)
    tb, sb = state_flatten(b)
    assert sa == sb
    for x, y in zip(ta, tb, strict=True):
        assert torch.equal(x, y)


# --------------------------------------------------------------------------------------
# The contract suite: every cell
# --------------------------------------------------------------------------------------


def test_init_state_is_zeros_with_batch_first(cell_name: str) -> None:
    cell = make(cell_name)
    tensors, spec = state_flatten(cell.init_state(BATCH))
    assert len(tensors) == spec.num_leaves >= 1
    for t in tensors:
        assert t.shape[0] == BATCH
        assert t.dtype == torch.float64  # follows the parameters after .to(float64)
        assert t.device == torch.device("cpu")
        assert not t.any()
    assert len({t.data_ptr() for t in tensors}) == len(tensors)  # distinct tensors


def test_init_state_honours_device_and_dtype(cell_name: str) -> None:
    cell = make(cell_name)
    ref, ref_spec = state_flatten(cell.init_state(BATCH))
    meta, meta_spec = state_flatten(cell.init_state(BATCH, device="meta", dtype=torch.float32))
    assert meta_spec == ref_spec
    for m, r in zip(meta, ref, strict=True):
        assert m.device.type == "meta"
        assert m.dtype == torch.float32
        assert m.shape == r.shape


def test_forward_shapes_and_structure(cell_name: str) -> None:
    cell = make(cell_name)
    state = cell.init_state(BATCH)
    y, new_state = cell(torch.randn(BATCH, F_IN, dtype=torch.float64), state)
    assert y.shape == (BATCH, cell.hidden_size)
    assert y.dtype == torch.float64
    old, old_spec = state_flatten(state)
    new, new_spec = state_flatten(new_state)
    assert new_spec == old_spec
    assert [t.shape for t in new] == [t.shape for t in old]
    # a second step from the new state works too
    y2, _ = cell(torch.randn(BATCH, F_IN, dtype=torch.float64), new_state)
    assert y2.shape == y.shape


def test_forward_does_not_modify_inputs_in_place(cell_name: str) -> None:
    cell = make(cell_name).train()
    x = torch.randn(BATCH, F_IN, dtype=torch.float64)
    state = random_state(cell)
    before = [(t._version, t.clone()) for t in [x, *leaves(state)]]
    params = {k: (p._version, p.clone()) for k, p in cell.named_parameters()}
    cell(x, state)
    for t, (version, copy) in zip([x, *leaves(state)], before, strict=True):
        assert t._version == version
        assert torch.equal(t, copy)
    for k, p in cell.named_parameters():
        assert p._version == params[k][0]
        assert torch.equal(p, params[k][1])


def test_replaying_the_rng_state_replays_the_step(cell_name: str) -> None:
    cell = make(cell_name).train()
    x = torch.randn(BATCH, F_IN, dtype=torch.float64)
    state = random_state(cell)
    rng = torch.get_rng_state()
    y1, s1 = cell(x, state)
    torch.set_rng_state(rng)
    y2, s2 = cell(x, state)
    assert torch.equal(y1, y2)
    assert_states_equal(s1, s2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        y3, s3 = cell(x, state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        y4, s4 = cell(x, state)
    assert torch.equal(y3, y4)
    assert_states_equal(s3, s4)


@pytest.mark.parametrize("name", sorted(DROPOUT_CELLS))
def test_dropout_is_active_in_training_only(name: str) -> None:
    cell = make(name).train()
    x = torch.randn(BATCH, F_IN, dtype=torch.float64)
    state = random_state(cell)
    torch.manual_seed(1)
    y1, _ = cell(x, state)
    torch.manual_seed(2)
    y2, _ = cell(x, state)
    assert not torch.equal(y1, y2)  # different masks
    cell.eval()
    rng = torch.get_rng_state()
    torch.manual_seed(1)
    e1, _ = cell(x, state)
    torch.manual_seed(2)
    e2, _ = cell(x, state)
    assert torch.equal(e1, e2)
    torch.set_rng_state(rng)
    before = torch.get_rng_state()
    cell(x, state)
    assert torch.equal(torch.get_rng_state(), before)  # eval draws nothing


def test_gradcheck_float64(cell_name: str) -> None:
    cell = make(cell_name, n=3, h=4).train()
    names = [k for k, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    state_tensors, spec = state_flatten(random_state(cell, batch=2))
    state_tensors = [t.requires_grad_() for t in state_tensors]
    n_state = len(state_tensors)

    def step(x: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        state = state_unflatten(rest[:n_state], spec)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same dropout masks on every evaluation
            y, new = functional_call(
                cell, dict(zip(names, rest[n_state:], strict=True)), (x, state)
            )
        return (y, *leaves(new))

    # exhaustive in the input and state; a random projection (fast mode) with the
    # parameters too, which keeps the larger cells quick
    def step_inputs(*xs: Tensor) -> tuple[Tensor, ...]:
        return step(*xs, *params)

    assert torch.autograd.gradcheck(step_inputs, (x, *state_tensors))
    assert torch.autograd.gradcheck(step, (x, *state_tensors, *params), fast_mode=True)


def test_validate_accepts_init_state(cell_name: str) -> None:
    cell = make(cell_name)
    x = torch.randn(BATCH, F_IN, dtype=torch.float64)
    assert cell.validate(x, cell.init_state(BATCH)) is None


def test_3d_input_is_rejected(cell_name: str) -> None:
    cell = make(cell_name)
    name = type(cell).__name__
    msg = f"{name}: Expected input to be 2D (batch, input_size), got 3D instead"
    with pytest.raises(ValueError, match=re.escape(msg)):
        cell(torch.randn(2, BATCH, F_IN, dtype=torch.float64), cell.init_state(BATCH))


def test_wrong_feature_count_is_rejected(cell_name: str) -> None:
    cell = make(cell_name)
    msg = f"{type(cell).__name__}: input has {F_IN - 1} features, expected input_size={F_IN}"
    with pytest.raises(ValueError, match=re.escape(msg)):
        cell(torch.randn(BATCH, F_IN - 1, dtype=torch.float64), cell.init_state(BATCH))


def test_validate_names_the_expected_state_shape(cell_name: str) -> None:
    cell = make(cell_name)
    x = torch.randn(BATCH, F_IN, dtype=torch.float64)
    expected = leaves(cell.init_state(BATCH))[0].shape
    wrong = leaves(cell.init_state(BATCH + 1))[0].shape
    fmt = ", ".join
    msg = (
        f"{type(cell).__name__}: state"
        + r"(\[\d\])*"
        + re.escape(
            f" has shape ({fmt(map(str, wrong))}), expected ({fmt(map(str, expected))}) "
            f"for batch size {BATCH}"
        )
    )
    with pytest.raises(ValueError, match=msg):
        cell.validate(x, cell.init_state(BATCH + 1))


def test_validate_rejects_a_wrong_state_structure(cell_name: str) -> None:
    cell = make(cell_name)
    x = torch.randn(BATCH, F_IN, dtype=torch.float64)
    state = cell.init_state(BATCH)
    wrong = (state, state) if isinstance(state, Tensor) else leaves(state)[0]
    _, spec = state_flatten(state)
    with pytest.raises(TypeError, match=re.escape(f"expected {spec}")):
        cell.validate(x, wrong)


def test_validate_rejects_dtype_mismatches(cell_name: str) -> None:
    cell = make(cell_name)
    x64 = torch.randn(BATCH, F_IN, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"input has dtype torch\.float32 but the parameters are"):
        cell.validate(x64.float(), cell.init_state(BATCH))
    with pytest.raises(TypeError, match=r"state(\[\d\])* has dtype torch.float32, expected"):
        cell.validate(x64, cell.init_state(BATCH, dtype=torch.float32))
    with pytest.raises(TypeError, match="Expected input to be a Tensor, got list"):
        cell.validate(x64.tolist(), cell.init_state(BATCH))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# torch.nn equivalence
# --------------------------------------------------------------------------------------

TORCH_PAIRS = {
    "lstm": (LSTMCell, nn.LSTMCell, {}),
    "lstm-nobias": (LSTMCell, nn.LSTMCell, {"bias": False}),
    "gru": (GRUCell, nn.GRUCell, {}),
    "gru-nobias": (GRUCell, nn.GRUCell, {"bias": False}),
    "rnn-tanh": (RNNCell, nn.RNNCell, {}),
    "rnn-relu": (RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
}


@pytest.mark.parametrize("pair", sorted(TORCH_PAIRS))
def test_same_seed_same_parameters_as_torch(pair: str) -> None:
    ours_cls, torch_cls, kw = TORCH_PAIRS[pair]
    torch.manual_seed(7)
    ours = ours_cls(F_IN, HID, **kw)
    torch.manual_seed(7)
    ref = torch_cls(F_IN, HID, **kw)
    ours_params = dict(ours.named_parameters())
    ref_params = dict(ref.named_parameters())
    assert ours_params.keys() == ref_params.keys()
    for k, p in ref_params.items():
        assert torch.equal(ours_params[k], p)


@pytest.mark.parametrize("pair", sorted(TORCH_PAIRS))
def test_matches_torch_cell_outputs_and_gradients(pair: str) -> None:
    ours_cls, torch_cls, kw = TORCH_PAIRS[pair]
    torch.manual_seed(0)
    ref = torch_cls(F_IN, HID, dtype=torch.float64, **kw)
    ours = ours_cls(F_IN, HID, dtype=torch.float64, **kw)
    ours.load_state_dict(ref.state_dict(), strict=True)
    xs = torch.randn(6, BATCH, F_IN, dtype=torch.float64, requires_grad=True)
    state0 = random_state(ours)
    state0 = state_map(lambda t: t.requires_grad_(), state0)
    weights = torch.randn(6, BATCH, HID, dtype=torch.float64)

    def run_ours() -> Tensor:
        state, loss = state0, torch.zeros((), dtype=torch.float64)
        for t in range(6):
            y, state = ours(xs[t], state)
            loss = loss + (weights[t] * y).sum()
        return loss + sum(s.sum() for s in leaves(state))

    def run_ref() -> Tensor:
        state = state0 if isinstance(state0, Tensor) else tuple(state0)
        loss = torch.zeros((), dtype=torch.float64)
        for t in range(6):
            state = ref(xs[t], state)
            y = state[0] if isinstance(state, tuple) else state
            loss = loss + (weights[t] * y).sum()
        return loss + sum(s.sum() for s in leaves(state))

    inputs = [xs, *leaves(state0)]
    loss_ours = run_ours()
    g_ours = torch.autograd.grad(loss_ours, [*inputs, *ours.parameters()])
    loss_ref = run_ref()
    g_ref = torch.autograd.grad(loss_ref, [*inputs, *ref.parameters()])
    assert abs(loss_ours.item() - loss_ref.item()) <= 1e-12
    for a, b in zip(g_ours, g_ref, strict=True):
        assert (a - b).abs().max().item() <= 1e-12


@pytest.mark.parametrize(
    "kind,torch_cls", [("lstm", nn.LSTM), ("gru", nn.GRU), ("rnn", nn.RNN)], ids=str
)
def test_stack_matches_torch_multilayer_rnn(kind: str, torch_cls: type[nn.Module]) -> None:
    layers = 3
    torch.manual_seed(3)
    stack = getattr(StackedCell, kind)(F_IN, HID, layers, dropout=0.5, dtype=torch.float64)
    torch.manual_seed(3)
    ref = torch_cls(F_IN, HID, layers, dropout=0.5, dtype=torch.float64)
    # same seed, same weights, and weight_ih_l{l} is cells[l].weight_ih
    mapped = {
        f"cells.{l}.{name}": p
        for name_l, p in ref.named_parameters()
        for name, l in [(name_l.rsplit("_l", 1)[0], int(name_l.rsplit("_l", 1)[1]))]
    }
    ours = dict(stack.named_parameters())
    assert ours.keys() == mapped.keys()
    for k, p in mapped.items():
        assert torch.equal(ours[k], p)
    stack.eval()  # dropout off on both sides
    ref.eval()
    xs = torch.randn(7, BATCH, F_IN, dtype=torch.float64)
    state = stack.init_state(BATCH)
    ys = []
    for t in range(7):
        y, state = stack(xs[t], state)
        ys.append(y)
    out, hidden = ref(xs)
    assert (torch.stack(ys) - out).abs().max().item() <= 1e-12
    h_ref = hidden[0] if kind == "lstm" else hidden
    h_ours = torch.stack([s[0] if kind == "lstm" else s for s in state])
    assert (h_ours - h_ref).abs().max().item() <= 1e-12


def test_stack_dropout_between_layers_only() -> None:
    f64 = torch.float64
    layers = [
        LSTMCell(F_IN, HID, dtype=f64),
        GRUCell(HID, HID, dtype=f64),
        LSTMCell(HID, HID, dtype=f64),
    ]
    stack3 = StackedCell(layers, dropout=0.4).train()
    x = torch.randn(BATCH, F_IN, dtype=torch.float64)
    state = random_state(stack3)
    torch.manual_seed(5)
    y, new = stack3(x, state)
    # by hand: layer, dropout, layer, dropout, layer, in that RNG order
    torch.manual_seed(5)
    h, s0 = layers[0](x, state[0])
    h, s1 = layers[1](F.dropout(h, 0.4), state[1])
    h, s2 = layers[2](F.dropout(h, 0.4), state[2])
    assert torch.equal(y, h)
    assert_states_equal(new, (s0, s1, s2))
    # the layer states carry the undropped outputs
    assert not (new[0][0] == 0).any()


# --------------------------------------------------------------------------------------
# LayerNormLSTMCell
# --------------------------------------------------------------------------------------


def test_layer_norm_lstm_parameters() -> None:
    cell = LayerNormLSTMCell(F_IN, HID)
    shapes = {k: tuple(p.shape) for k, p in cell.named_parameters()}
    assert shapes == {
        "weight_ih": (4 * HID, F_IN),
        "weight_hh": (4 * HID, HID),
        "bias": (4 * HID,),
        "norm_ih.weight": (4 * HID,),
        "norm_hh.weight": (4 * HID,),
        "norm_c.weight": (HID,),
        "norm_c.bias": (HID,),
    }
    bound = 1 / math.sqrt(HID)
    assert cell.weight_ih.abs().max() <= bound
    assert torch.equal(cell.norm_ih.weight, torch.ones(4 * HID))
    no_bias = dict(LayerNormLSTMCell(F_IN, HID, bias=False).named_parameters())
    assert "bias" not in no_bias and "norm_c.bias" not in no_bias


def test_layer_norm_lstm_differs_from_lstm_and_is_scale_invariant() -> None:
    torch.manual_seed(0)
    ln = LayerNormLSTMCell(F_IN, HID, eps=1e-12, dtype=torch.float64)
    lstm = LSTMCell(F_IN, HID, bias=False, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih.copy_(ln.weight_ih)
        lstm.weight_hh.copy_(ln.weight_hh)
        assert ln.bias is not None
        ln.bias.zero_()
    x = torch.randn(BATCH, F_IN, dtype=torch.float64)
    state = random_state(ln)
    y_ln, _ = ln(x, state)
    y_lstm, _ = lstm(x, state)
    assert (y_ln - y_lstm).abs().max() > 1e-2
    # Ba et al. 2016: LN makes the step invariant to re-scaling each weight matrix.
    with torch.no_grad():
        ln.weight_ih.mul_(10.0)
        ln.weight_hh.mul_(4.0)
        lstm.weight_ih.mul_(10.0)
        lstm.weight_hh.mul_(4.0)
    y_ln_scaled, _ = ln(x, state)
    y_lstm_scaled, _ = lstm(x, state)
    assert (y_ln_scaled - y_ln).abs().max() < 1e-9
    assert (y_lstm_scaled - y_lstm).abs().max() > 1e-2


# --------------------------------------------------------------------------------------
# Construction errors and the base class
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell, RNNCell, LayerNormLSTMCell])
def test_size_arguments_are_validated(cls: Callable[..., Cell]) -> None:
    name = getattr(cls, "__name__", "")
    with pytest.raises(ValueError, match=f"{name}: hidden_size must be >= 1, got 0"):
        cls(4, 0)
    with pytest.raises(ValueError, match=f"{name}: input_size must be >= 1, got -2"):
        cls(-2, 4)
    with pytest.raises(TypeError, match=f"{name}: input_size must be an int, got float"):
        cls(4.0, 4)
    with pytest.raises(TypeError, match=f"{name}: hidden_size must be an int, got bool"):
        cls(4, True)
    with pytest.raises(TypeError, match=f"{name}: bias must be a bool, got int"):
        cls(4, 4, 1)


def test_rnn_nonlinearity_is_validated() -> None:
    with pytest.raises(ValueError, match="RNNCell: unknown nonlinearity 'sigmoid'"):
        RNNCell(4, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="RNNCell: nonlinearity must be a str"):
        RNNCell(4, 4, nonlinearity=None)  # type: ignore[arg-type]


def test_layer_norm_eps_is_validated() -> None:
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        LayerNormLSTMCell(4, 4, eps=0.0)
    with pytest.raises(TypeError, match="eps must be a float, got str"):
        LayerNormLSTMCell(4, 4, eps="1e-5")  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [-0.1, 1.0, float("nan")])
def test_stack_dropout_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match=r"StackedCell: dropout must be in \[0, 1\)"):
        StackedCell.lstm(4, 4, 2, dropout=p)


def test_stack_construction_errors() -> None:
    with pytest.raises(TypeError, match="StackedCell: dropout must be a float, got str"):
        StackedCell.lstm(4, 4, 2, dropout="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="StackedCell: cells must hold at least one Cell"):
        StackedCell([])
    with pytest.raises(TypeError, match=r"StackedCell: cells\[1\] is a Linear, expected a Cell"):
        StackedCell([LSTMCell(4, 4), nn.Linear(4, 4)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="cells must be a sequence of Cells, got LSTMCell"):
        StackedCell(LSTMCell(4, 4))  # type: ignore[arg-type]
    msg = r"cells\[1\] has input_size=5, but cells\[0\] outputs hidden_size=4"
    with pytest.raises(ValueError, match=msg):
        StackedCell([LSTMCell(3, 4), GRUCell(5, 4)])
    with pytest.raises(
        ValueError, match=re.escape("StackedCell.gru: num_layers must be >= 1, got 0")
    ):
        StackedCell.gru(4, 4, 0)
    with pytest.warns(
        UserWarning, match=re.escape("dropout=0.5 has no effect with a single layer")
    ):
        StackedCell.rnn(4, 4, 1, dropout=0.5)


def test_stack_sizes_and_state() -> None:
    stack = StackedCell([GRUCell(3, 4), LSTMCell(4, 6)])
    assert (stack.input_size, stack.hidden_size, stack.num_layers) == (3, 6, 2)
    assert str(state_flatten(stack.init_state(2))[1]) == "(Tensor, (Tensor, Tensor))"


def test_built_in_forward_checks_its_state_shape() -> None:
    cell = LSTMCell(F_IN, HID)
    h, c = cell.init_state(BATCH)
    with pytest.raises(ValueError, match=re.escape(f"LSTMCell: state[1] has shape ({BATCH}, 7)")):
        cell(torch.randn(BATCH, F_IN), (h, c[:, :7]))
    with pytest.raises(TypeError, match=r"GRUCell: state has structure \(Tensor, Tensor\)"):
        GRUCell(F_IN, HID)(torch.randn(BATCH, F_IN), (h, c))


def test_cell_without_forward_cannot_be_instantiated() -> None:
    class Incomplete(Cell):
        def init_state(self, batch_size, *, device=None, dtype=None) -> State:
            return self.state_zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    with pytest.raises(TypeError, match="abstract"):
        Incomplete(2, 2)  # type: ignore[abstract]


def test_state_zeros_defaults() -> None:
    cell = PeepholeLSTM(2, 3).double()
    assert cell.state_zeros(4, 3).dtype == torch.float64
    assert cell.state_zeros(4, 3, dtype=torch.float16).dtype == torch.float16


def test_docstring_examples_run() -> None:
    for module in (cell_module, cells_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0
        assert result.failed == 0
