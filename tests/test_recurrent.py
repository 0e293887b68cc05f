"""Recurrent(cell, memory_budget=...): exact gradients for every cell, memory as planned."""

from __future__ import annotations

import pytest
import torch
from helpers import PeepholeLSTM
from torch import Tensor

import mbrnn
from mbrnn import InfeasibleBudgetError, Recurrent
from mbrnn.nn import Cell, GRUCell, LayerNormLSTMCell, LSTMCell, RNNCell, StackedCell
from mbrnn.runtime import draw_base_seed, step_rng
from mbrnn.runtime.memory import measure_peak


def _cells(F: int, H: int) -> dict[str, Cell]:
    return {
        "lstm": LSTMCell(F, H),
        "gru": GRUCell(F, H),
        "rnn_tanh": RNNCell(F, H),
        "rnn_relu": RNNCell(F, H, nonlinearity="relu"),
        "layernorm_lstm": LayerNormLSTMCell(F, H),
        "stacked_lstm_dropout": StackedCell.lstm(F, H, num_layers=2, dropout=0.3),
        "peephole": PeepholeLSTM(F, H),
    }


def _reference(cell: Cell, x: Tensor, seed: int):
    """Plain autograd with the executor's per-step seeding (so dropout masks agree)."""
    torch.manual_seed(seed)
    base = draw_base_seed()
    state = cell.init_state(x.shape[1], dtype=x.dtype)
    ys = []
    for t in range(x.shape[0]):
        with step_rng(base, t + 1):
            y, state = cell(x[t], state)
        ys.append(y)
    return torch.stack(ys), state


def _first(state) -> Tensor:
    while isinstance(state, tuple):
        state = state[-1]
    return state


@pytest.mark.filterwarnings("ignore:.*only with .* forward steps:UserWarning")  # named policies at tiny budgets
@pytest.mark.parametrize("name", list(_cells(3, 4)))
@pytest.mark.parametrize("policy", ["hsm", "ism", "msm", "chen", "auto"])
def test_gradients_match_plain_autograd(name: str, policy: str) -> None:
    torch.manual_seed(0)
    T, B, F, H = 13, 2, 3, 4
    cell = _cells(F, H)[name].double()
    x = torch.randn(T, B, F, dtype=torch.float64, requires_grad=True)
    w = torch.randn(T, B, H, dtype=torch.float64)
    y_ref, st_ref = _reference(cell, x, seed=5)
    params = [x, *cell.parameters()]
    g_ref = torch.autograd.grad((y_ref * w).sum() + _first(st_ref).sum(), params)
    rnn = Recurrent(cell, memory_budget=1, policy=policy)  # placeholder, set below
    sizes = rnn.probe(B, dtype=torch.float64)
    low = rnn.minimum_budget(T, B, dtype=torch.float64)
    a = sizes.internal_bytes
    seen = set()
    for kept in (0, 1, 3, T):  # budgets from the minimum up to everything
        budget = low + kept * a
        rnn.memory_budget = budget
        bp = rnn.plan_for(T, B, dtype=torch.float64)
        seen.add(bp.plan.forward_steps)
        torch.manual_seed(5)
        y, st = rnn(x)
        g = torch.autograd.grad((y * w).sum() + _first(st).sum(), params)
        assert rnn.last_stats is not None
        assert rnn.last_stats.forward_steps == bp.plan.forward_steps
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
        for a_, b_ in zip(g, g_ref, strict=True):
            assert (a_ - b_).abs().max().item() <= 1e-10, (name, policy, budget)
    if policy != "chen":
        assert len(seen) >= 2  # the grid really exercised different plans


def test_no_budget_and_no_grad_run_one_plain_sweep() -> None:
    torch.manual_seed(0)
    cell = LSTMCell(3, 4)
    x = torch.randn(9, 2, 3)
    rnn = Recurrent(cell, memory_budget="1MiB")
    with torch.no_grad():
        y, _ = rnn(x)
    assert rnn.last_stats is None and rnn.last_plan is None and y.grad_fn is None
    with torch.inference_mode():
        y2, _ = rnn(x)
    torch.testing.assert_close(y, y2)
    plain = Recurrent(cell)  # memory_budget=None: plain autograd
    y3, _ = plain(x)
    assert plain.last_stats is None and y3.grad_fn is not None
    torch.testing.assert_close(y, y3.detach())


def test_batch_first_and_unbatched() -> None:
    torch.manual_seed(0)
    cell = GRUCell(3, 5)
    x = torch.randn(7, 2, 3)
    y, h = Recurrent(cell, memory_budget="1MiB")(x)
    yb, hb = Recurrent(cell, memory_budget="1MiB", batch_first=True)(x.transpose(0, 1))
    torch.testing.assert_close(yb.transpose(0, 1), y)
    torch.testing.assert_close(hb, h)
    yu, hu = Recurrent(cell, memory_budget="1MiB")(x[:, 0])
    assert yu.shape == (7, 5) and hu.shape == (5,)
    torch.testing.assert_close(yu, y[:, 0])


def test_initial_state_gradient() -> None:
    torch.manual_seed(0)
    cell = LSTMCell(3, 4).double()
    x = torch.randn(10, 2, 3, dtype=torch.float64)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    y, _ = Recurrent(cell)(x, (h0, c0))
    g_ref = torch.autograd.grad(y.sum(), [h0, c0])
    rnn = Recurrent(cell, memory_budget=1, policy="msm")
    sizes = rnn.probe(2, dtype=torch.float64)
    rnn.memory_budget = rnn.minimum_budget(10, 2, dtype=torch.float64) + 2 * sizes.internal_bytes
    y, _ = rnn(x, (h0, c0))
    g = torch.autograd.grad(y.sum(), [h0, c0])
    assert rnn.last_stats is not None and rnn.last_stats.forward_steps > 10
    for a, b in zip(g, g_ref, strict=True):
        assert (a - b).abs().max() <= 1e-12


# --- memory truth ---------------------------------------------------------------------------


def _measured(rnn: Recurrent, x: Tensor) -> int:
    def run() -> None:
        y, _ = rnn(x)
        y.sum().backward()

    return measure_peak(run)


@pytest.mark.parametrize(
    ("name", "layers", "T"),
    [("lstm", 1, 100), ("lstm", 2, 100), ("gru", 1, 100), ("rnn", 1, 100),
     ("layernorm_lstm", 1, 100), ("peephole", 1, 100), ("lstm", 1, 1000), ("gru", 2, 1000)],
)
def test_measured_peak_matches_plan(name: str, layers: int, T: int) -> None:
    torch.manual_seed(0)
    B, F, H = 8, 16, 32
    makers = {
        "lstm": lambda: StackedCell.lstm(F, H, num_layers=layers),
        "gru": lambda: StackedCell.gru(F, H, num_layers=layers),
        "rnn": lambda: StackedCell.rnn(F, H, num_layers=layers),
        "layernorm_lstm": lambda: LayerNormLSTMCell(F, H),
        "peephole": lambda: PeepholeLSTM(F, H),
    }
    cell = makers[name]()
    x = torch.randn(T, B, F)
    rnn = Recurrent(cell, memory_budget=1, policy="auto")
    sizes = rnn.probe(B)
    y_bytes = T * sizes.output_bytes
    low = rnn.minimum_budget(T, B)
    store = rnn.plan_for(T, B, memory_budget=2**40)
    # at T=1000 the minimum budget means recomputing everything: 500,500 steps; start at 2 %
    for frac in ((0.0,) if T <= 100 else (0.02,)) + (0.05, 0.2, 0.6, 1.0):
        budget = int(low + frac * (store.predicted_peak - low))
        rnn.memory_budget = budget
        bp = rnn.plan_for(T, B)
        measured = _measured(rnn, x)
        # the output y is the caller's tensor (y.sum()'s gradient is an expanded view)
        bptt = measured - y_bytes
        assert bptt <= budget, (name, frac, bptt, budget)
        assert abs(bptt - bp.predicted_peak) <= 0.10 * bp.predicted_peak, (
            name, frac, bptt, bp.predicted_peak, bp.plan.policy)


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error_before_any_work() -> None:
    rnn = Recurrent(LSTMCell(3, 4), memory_budget="1MiB")
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        rnn(torch.randn(2, 2, 2, 3))
    with pytest.raises(ValueError, match="input has 5 features, expected input_size=3"):
        rnn(torch.randn(4, 2, 5))
    with pytest.raises(TypeError, match="floating-point"):
        rnn(torch.ones(4, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="empty sequence"):
        rnn(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match=r"state tensor 1 has shape \(2, 5\), expected \(2, 4\)"):
        rnn(torch.randn(4, 2, 3), (torch.zeros(2, 4), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match="structure"):
        rnn(torch.randn(4, 2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="unknown policy 'best'"):
        Recurrent(LSTMCell(3, 4), policy="best")
    with pytest.raises(TypeError, match="memory_budget"):
        Recurrent(LSTMCell(3, 4), memory_budget=[1])
    with pytest.raises(ValueError, match="memory_budget"):
        Recurrent(LSTMCell(3, 4), memory_budget="lots")
    for bare in (1.5, 1.0, 0.5):  # a float could mean bytes or a fraction: say which to use
        with pytest.raises(TypeError, match=r"fraction .*'50%' or mbrnn\.Budget\.fraction"):
            Recurrent(LSTMCell(3, 4), memory_budget=bare)  # type: ignore[arg-type]


def test_budget_too_small_states_minimum_in_bytes() -> None:
    cell = LSTMCell(3, 4)
    rnn = Recurrent(cell, memory_budget=100)
    x = torch.randn(50, 2, 3)
    before = [p.detach().clone() for p in cell.parameters()]
    with pytest.raises(InfeasibleBudgetError, match=r"below the minimum .* for seq_len=50, batch 2") as e:
        rnn(x)
    assert e.value.minimum > 100
    rnn.memory_budget = e.value.minimum
    y, _ = rnn(x)  # the stated minimum works
    y.sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, cell.parameters(), strict=True))


def test_auto_budget_and_fraction() -> None:
    rnn = Recurrent(LSTMCell(3, 4), memory_budget="auto")
    y, _ = rnn(torch.randn(20, 2, 3))
    y.sum().backward()
    assert rnn.last_plan is not None and rnn.last_plan.plan.policy == "store_all"
    for half in ("50%", mbrnn.Budget.fraction(0.5)):
        frac = Recurrent(LSTMCell(3, 4), memory_budget=half)
        y, _ = frac(torch.randn(20, 2, 3))
        assert frac.last_plan is not None
        whole = rnn.plan_for(20, 2).budget
        assert frac.last_plan.budget == pytest.approx(whole / 2, rel=0.1)


def test_a_sweep_holds_constant_memory() -> None:
    """No step's state outlives the step (a reference cycle once kept them until GC)."""
    import gc

    cell = StackedCell.gru(16, 32, num_layers=2)
    x = torch.randn(300, 8, 16)
    rnn = Recurrent(cell, memory_budget="1MiB")
    gc.disable()
    try:
        with torch.no_grad():
            peak = measure_peak(lambda: rnn(x))
    finally:
        gc.enable()
    y_bytes = 300 * 8 * 32 * 4
    assert peak <= y_bytes + 16 * (8 * 32 * 4), peak
