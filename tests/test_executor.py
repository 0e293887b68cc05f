"""The executor against plain autograd: exact gradients for every policy and budget."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mbrnn.errors import InfeasibleBudgetError, RecomputeMismatchError
from mbrnn.plan import Chain, solve
from mbrnn.runtime import draw_base_seed, run_plan, step_rng
from mbrnn.runtime.memory import measure_peak

POLICIES = ["store_all", "recompute_all", "chen", "hsm", "ism", "msm", "auto"]


class DropoutElman(nn.Module):
    """A user-style step with dropout inside: the replay must redraw the same mask."""

    def __init__(self, f: int, h: int, p: float) -> None:
        super().__init__()
        self.lin = nn.Linear(f + h, h)
        self.p = p

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        (h,) = state
        z = torch.tanh(self.lin(torch.cat([x, h], dim=1)))
        z = nn.functional.dropout(z, self.p, training=True)
        return z * 2.0, (z,)


def _lstm_step(cell: nn.LSTMCell):
    def step(x: Tensor, st: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        h, c = cell(x, (st[0], st[1]))
        return h, (h, c)

    return step


def _reference(step, x, state0, params, seed, rng: bool):
    torch.manual_seed(seed)
    base = draw_base_seed()
    st = tuple(state0)
    ys = []
    for t in range(x.shape[0]):
        if rng:
            with step_rng(base, t + 1):
                y, st = step(x[t], st)
        else:
            y, st = step(x[t], st)
        ys.append(y)
    return torch.stack(ys), st


def _loss(y: Tensor, st: tuple[Tensor, ...], w: Tensor, mask: Tensor) -> Tensor:
    # outputs at a subset of steps, and the final state
    return (y * w * mask).sum() + (st[0] ** 2).sum() + 0.5 * st[-1].sum()


def _grads(loss: Tensor, inputs: list[Tensor]) -> list[Tensor]:
    return list(torch.autograd.grad(loss, inputs, allow_unused=True))


def _budgets(chain: Chain) -> list[float]:
    s, full = chain.state_size, chain.store_all_peak
    return [s, 2 * s, 3.5 * s, 0.1 * full, 0.25 * full, 0.5 * full, 0.8 * full, full]


def _check(step, params, x, state0, T, alpha, rng: bool, seed: int = 7) -> int:
    w = torch.randn(x.shape[0], x.shape[1], 1, dtype=x.dtype)
    mask = (torch.arange(T) % 3 != 1).to(x.dtype)[:, None, None]
    inputs = [x, *state0, *params]
    y_ref, st_ref = _reference(step, x, state0, params, seed, rng)
    g_ref = _grads(_loss(y_ref, st_ref, w, mask), inputs)
    chain = Chain(T, 1.0, alpha)
    checked = 0
    for policy in POLICIES:
        for budget in _budgets(chain):
            try:
                plan = solve(chain, budget, policy)
            except InfeasibleBudgetError:
                continue
            torch.manual_seed(seed)
            y, st, stats = run_plan(step, x, state0, params, plan, preserve_rng_state=rng)
            torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
            g = _grads(_loss(y, st, w, mask), inputs)
            assert stats.forward_steps == plan.forward_steps, (policy, budget)
            for a, b in zip(g, g_ref, strict=True):
                assert a is not None and b is not None
                assert (a - b).abs().max().item() <= 1e-10, (policy, budget)
            checked += 1
    return checked


@pytest.mark.parametrize("T", [1, 2, 7, 23])
def test_lstm_gradients_exact_all_policies(T: int) -> None:
    torch.manual_seed(T)
    cell = nn.LSTMCell(3, 5).double()
    x = torch.randn(T, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    n = _check(_lstm_step(cell), list(cell.parameters()), x, (h0, c0), T, 3.0, rng=False)
    assert n >= 8


@pytest.mark.parametrize("T", [5, 17])
def test_dropout_inside_the_step_replays_exactly(T: int) -> None:
    torch.manual_seed(0)
    cell = DropoutElman(3, 4, p=0.4).double()
    x = torch.randn(T, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    n = _check(cell, list(cell.parameters()), x, (h0,), T, 2.0, rng=True)
    assert n >= 8


def test_dropout_without_rng_replay_would_differ() -> None:
    """The replay matters: without it, recomputed masks differ and gradients are wrong."""
    torch.manual_seed(0)
    T = 12
    cell = DropoutElman(3, 4, p=0.5).double()
    x = torch.randn(T, 2, 3, dtype=torch.float64)
    h0 = torch.zeros(2, 4, dtype=torch.float64)
    params = list(cell.parameters())
    plan = solve(Chain(T, 1.0, 2.0), 2.0, "recompute_all")
    grads = []
    for rng in (True, False):
        torch.manual_seed(1)
        y, _st, _ = run_plan(cell, x, (h0,), params, plan, preserve_rng_state=rng)
        grads.append(_grads(y.sum(), params))
    y_ref, _ = _reference(cell, x, (h0,), params, 1, rng=True)
    g_ref = _grads(y_ref.sum(), params)
    assert all((a - b).abs().max() <= 1e-10 for a, b in zip(grads[0], g_ref, strict=True))
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(grads[1], g_ref, strict=True))


def test_float32_relative_error() -> None:
    torch.manual_seed(3)
    T = 40
    cell = nn.LSTMCell(8, 16)
    step = _lstm_step(cell)
    x = torch.randn(T, 4, 8, requires_grad=True)
    s0 = (torch.zeros(4, 16), torch.zeros(4, 16))
    params = list(cell.parameters())
    y_ref, _ = _reference(step, x, s0, params, 0, rng=False)
    g_ref = _grads(y_ref.pow(2).sum(), [x, *params])
    plan = solve(Chain(T, 1.0, 4.0), 20.0, "msm")
    y, _, _ = run_plan(step, x, s0, params, plan)
    g = _grads(y.pow(2).sum(), [x, *params])
    for a, b in zip(g, g_ref, strict=True):
        assert ((a - b).norm() / b.norm()).item() <= 1e-5


def test_autocast_bf16_matches_plain_autocast() -> None:
    torch.manual_seed(4)
    T = 15
    cell = DropoutElman(8, 8, p=0.0)  # nn.Linear: autocast runs it in bf16 on CPU
    step = cell
    x = torch.randn(T, 2, 8, requires_grad=True)
    s0 = (torch.zeros(2, 8),)
    params = list(cell.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_ref, _ = _reference(step, x, s0, params, 0, rng=False)
        plan = solve(Chain(T, 1.0, 3.0), 6.0, "msm")
        y, _, stats = run_plan(step, x, s0, params, plan)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    g_ref = _grads(y_ref.float().sum(), [x, *params])
    g = _grads(y.float().sum(), [x, *params])
    assert stats.forward_steps == plan.forward_steps > T
    # input gradients: the same bf16 ops, but two code paths (a kept run's autograd.grad
    # against one backward), so bf16 tolerances rather than bits
    torch.testing.assert_close(g[0], g_ref[0], rtol=1.6e-2, atol=1e-5)
    for a, b in zip(g[1:], g_ref[1:], strict=True):
        # plain autograd's autocast weight cache sums every step's weight gradient through
        # one bf16 cast; the replay casts per step and sums in float32: bf16-level agreement
        assert ((a - b).norm() / b.norm()).item() <= 1e-2


def test_no_output_gradient_only_final_state() -> None:
    torch.manual_seed(5)
    T = 11
    cell = nn.LSTMCell(3, 4).double()
    step = _lstm_step(cell)
    x = torch.randn(T, 2, 3, dtype=torch.float64)
    s0 = (torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64))
    params = list(cell.parameters())
    _, st_ref = _reference(step, x, s0, params, 0, rng=False)
    g_ref = _grads(st_ref[1].sum(), params)
    plan = solve(Chain(T, 1.0, 3.0), 4.0, "msm")
    _, st, _ = run_plan(step, x, s0, params, plan)
    g = _grads(st[1].sum(), params)
    for a, b in zip(g, g_ref, strict=True):
        assert (a - b).abs().max() <= 1e-12


def test_outputs_false_keeps_no_sequence_and_gives_the_same_gradients() -> None:
    """A caller that needs the final state alone (a classifier): no (T, B, H) output is
    allocated or kept, and the gradients are plain autograd's."""
    torch.manual_seed(6)
    T = 40
    cell = nn.LSTMCell(3, 16).double()
    step = _lstm_step(cell)
    x = torch.randn(T, 8, 3, dtype=torch.float64, requires_grad=True)
    s0 = (torch.zeros(8, 16, dtype=torch.float64), torch.zeros(8, 16, dtype=torch.float64))
    params = [x, *cell.parameters()]
    _, st_ref = _reference(step, x, s0, list(cell.parameters()), 0, rng=False)
    g_ref = _grads(st_ref[0].sum(), params)
    plan = solve(Chain(T, 1.0, 3.0), 12.0, "msm")
    peaks = {}
    for outputs in (True, False):
        def run(outputs: bool = outputs) -> list[Tensor]:
            y, st, _ = run_plan(step, x, s0, list(cell.parameters()), plan, outputs=outputs)
            assert y.shape == ((T, 8, 16) if outputs else (T, 8, 0))
            return _grads(st[0].sum(), params)
        g: list[Tensor] = []
        peaks[outputs] = measure_peak(lambda run=run, g=g: g.extend(run()))
        for a, b in zip(g, g_ref, strict=True):
            assert (a - b).abs().max() <= 1e-12
    assert peaks[True] - peaks[False] >= T * 8 * 16 * 8  # the (T, B, H) output, float64


def test_param_grads_accumulate_through_hooks() -> None:
    """Gradients reach .grad through autograd, so hooks and accumulation behave as usual."""
    torch.manual_seed(6)
    cell = nn.LSTMCell(3, 4).double()
    params = list(cell.parameters())
    seen = []
    handle = params[0].register_hook(lambda g: seen.append(g.clone()))
    x = torch.randn(9, 2, 3, dtype=torch.float64)
    s0 = (torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64))
    plan = solve(Chain(9, 1.0, 3.0), 3.0, "msm")
    names = [n for n, _ in cell.named_parameters()]
    for _ in range(2):
        proxies = [p.detach().requires_grad_() for p in params]

        def step_on_proxies(x_t, st, proxies=proxies):
            return torch.func.functional_call(cell, dict(zip(names, proxies, strict=True)),
                                              (x_t, (st[0], st[1])))

        def step2(x_t, st, f=step_on_proxies):
            h, c = f(x_t, st)
            return h, (h, c)

        y, _, _ = run_plan(step2, x, s0, params, plan, graph_params=proxies)
        y.sum().backward()
    handle.remove()
    assert len(seen) == 2
    torch.testing.assert_close(params[0].grad, seen[0] + seen[1])


class ShapeShifter(nn.Module):
    """Returns a different output shape on its second call for step 3: not deterministic."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.calls = 0

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        self.calls += 1
        h = torch.tanh(self.lin(x) + state[0])
        y = h if self.calls <= 5 else torch.cat([h, h], dim=1)
        return y, (h,)


def test_recompute_mismatch_names_the_step() -> None:
    cell = ShapeShifter()
    x = torch.randn(5, 1, 2)
    plan = solve(Chain(5, 1.0, 2.0), 2.0, "recompute_all")
    y, _, _ = run_plan(cell, x, (torch.zeros(1, 2),), list(cell.parameters()), plan)
    with pytest.raises(RecomputeMismatchError, match=r"recomputing step \d+ of 5"):
        y.sum().backward()


def test_backward_twice_is_a_clear_error() -> None:
    cell = nn.LSTMCell(2, 2)
    x = torch.randn(4, 1, 2)
    s0 = (torch.zeros(1, 2), torch.zeros(1, 2))
    y, _, _ = run_plan(_lstm_step(cell), x, s0, list(cell.parameters()),
                       solve(Chain(4, 1.0, 2.0), 2.0, "msm"))
    y.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        y.sum().backward()


def test_plan_length_must_match() -> None:
    cell = nn.LSTMCell(2, 2)
    with pytest.raises(ValueError, match="T=4 steps, x has T=5"):
        run_plan(_lstm_step(cell), torch.randn(5, 1, 2), (torch.zeros(1, 2), torch.zeros(1, 2)),
                 list(cell.parameters()), solve(Chain(4, 1.0, 2.0), 2.0, "msm"))
