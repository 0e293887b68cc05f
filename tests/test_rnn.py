"""mbrnn.LSTM / GRU / RNN against torch.nn: same weights, same outputs, exact gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from rnn_helpers import CONFIGS, F64, _flat, _loss, _max_diff, _pair
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from mbrnn import GRU, LSTM, RNN, InfeasibleBudgetError
from mbrnn.nn.rnn import RUN_COST_STEPS, FusedPlan
from mbrnn.runtime import draw_base_seed, step_rng
from mbrnn.runtime.memory import measure_peak

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny calls on 2 cores

POLICIES = ["auto", "msm", "ism", "hsm", "chen"]


def _init_state(ref: nn.RNNBase, B: int, dtype: torch.dtype = F64) -> Any:
    dirs = 2 if ref.bidirectional else 1
    h = torch.randn(ref.num_layers * dirs, B, ref.proj_size or ref.hidden_size, dtype=dtype,
                    requires_grad=True)
    if isinstance(ref, nn.LSTM):
        c = torch.randn(ref.num_layers * dirs, B, ref.hidden_size, dtype=dtype,
                        requires_grad=True)
        return (h, c)
    return h


def _budgets(m: Any, T: int, B: int, packed: bool = False) -> list[int]:
    """From the minimum to storing everything, through a few kept internal states."""
    low = m.minimum_budget(T, B, dtype=F64, packed=packed)
    a = m._probe(0, B, torch.device("cpu"), F64, packed)[0].step.internal_bytes
    n = len(m._recurrences())
    return [low, low + n * 2 * a, low + n * 5 * a, low + n * (T + 4) * a]


# ---------------------------------------------------------------------------------------
# Drop-in: constructor, parameters, state_dict
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lstm_proj2", "lstm_bi2", "gru_bi", "rnn_relu_bi2"])
def test_state_dict_is_torchs(name: str) -> None:
    ours_cls, theirs_cls, kw = CONFIGS[name]
    torch.manual_seed(0)
    ref = theirs_cls(5, 6, **kw)
    ours = ours_cls(5, 6, **kw, memory_budget="1MiB")
    assert isinstance(ours, theirs_cls)
    sd_ref, sd = ref.state_dict(), ours.state_dict()
    assert list(sd) == list(sd_ref)  # same keys, same order
    assert all(sd[k].shape == sd_ref[k].shape for k in sd)
    ours.load_state_dict(sd_ref, strict=True)
    assert all(torch.equal(sd_ref[k], v) for k, v in ours.state_dict().items())
    back = theirs_cls(5, 6, **kw)
    back.load_state_dict(ours.state_dict(), strict=True)  # and the reverse
    made = ours_cls.from_torch(ref, memory_budget="2MiB", policy="msm")
    assert all(torch.equal(a, b) for a, b in zip(made.parameters(), ref.parameters(),
                                                  strict=True))
    assert (made.memory_budget, made.policy) == ("2MiB", "msm")
    assert "memory_budget='2MiB'" in repr(made)


def test_constructor_matches_torch() -> None:
    m = LSTM(3, 8, 2, False, True, 0.0, True, 4, "cpu", F64, memory_budget=1000)
    assert (m.num_layers, m.bias, m.batch_first, m.bidirectional, m.proj_size) == (
        2, False, True, True, 4)
    assert m.weight_hr_l1_reverse.dtype == F64
    r = RNN(3, 8, 1, "relu", memory_budget=None)
    assert r.nonlinearity == "relu" and r.mode == "RNN_RELU"
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        GRU(3, 8, dropout=0.5)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        LSTM(3, 4, proj_size=4)
    with pytest.raises(TypeError, match=r"expected a torch\.nn\.LSTM, got GRU"):
        LSTM.from_torch(nn.GRU(3, 4))
    with pytest.raises(ValueError, match="unknown policy 'fastest'"):
        LSTM(3, 4, policy="fastest")
    with pytest.raises(TypeError, match="fraction"):
        LSTM(3, 4, memory_budget=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fraction"):
        GRU(3, 4, memory_budget=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="memory_budget"):
        GRU(3, 4, memory_budget=[1])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Exact gradients against torch, every policy and budget
# ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*only with .* forward steps:UserWarning")  # named policies at tiny budgets
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_torch_for_every_policy_and_budget(name: str) -> None:
    torch.manual_seed(0)
    T, B, F, H = 12, 3, 4, 5
    m, ref = _pair(name, F, H)
    x = torch.randn(T, B, F, dtype=F64, requires_grad=True)
    hx = _init_state(ref, B)
    w = torch.randn(T, B, (ref.proj_size or H) * (2 if ref.bidirectional else 1), dtype=F64)
    y_ref, s_ref = ref(x, hx)
    inputs = [x, *_flat(hx), *ref.parameters()]
    g_ref = torch.autograd.grad(_loss(y_ref, s_ref, w), inputs)
    seen = set()
    for policy in POLICIES:
        m.policy = policy
        for budget in _budgets(m, T, B):
            m.memory_budget = budget
            try:
                fp = m.plan_for(T, B, dtype=F64)
            except InfeasibleBudgetError:
                assert policy == "chen"  # a fixed-shape baseline above the minimum
                continue
            y, s = m(x, hx)
            assert m.last_plan == fp
            assert fp.predicted_peak <= budget
            g = torch.autograd.grad(_loss(y, s, w), [x, *_flat(hx), *m.parameters()])
            assert m.last_stats is not None
            assert sum(st.forward_steps for st in m.last_stats) == fp.forward_steps
            seen.add(fp.forward_steps)
            assert _max_diff([y, *_flat(s)], [y_ref, *_flat(s_ref)]) <= 1e-10
            assert _max_diff(g, g_ref) <= 1e-10, (name, policy, budget)
    assert len(seen) >= 3  # the grid really ran different plans


def test_float32_matches_torch_relatively() -> None:
    torch.manual_seed(0)
    T, B, F, H = 16, 4, 6, 16
    for name in ("lstm3", "lstm_bi2"):  # oneDNN's kernel (GRU's is ATen's, as in float64)
        m, ref = _pair(name, F, H, torch.float32)
        x = torch.randn(T, B, F, requires_grad=True)
        y_ref, s_ref = ref(x)
        w = torch.randn_like(y_ref)
        g_ref = torch.autograd.grad(_loss(y_ref, s_ref, w), [x, *ref.parameters()])
        sizes = m._probe(0, B, torch.device("cpu"), torch.float32, False)[0]
        m.memory_budget = m.minimum_budget(T, B) + 6 * len(m._recurrences()) * (
            sizes.step.internal_bytes)
        y, s = m(x)
        assert m.last_plan is not None and m.last_plan.forward_steps > T * len(m._recurrences())
        g = torch.autograd.grad(_loss(y, s, w), [x, *m.parameters()])
        for a, b in zip([y, *_flat(s), *g], [y_ref, *_flat(s_ref), *g_ref], strict=True):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max(), name


@pytest.mark.filterwarnings("ignore:.*only with .* forward steps:UserWarning")  # named policies at tiny budgets
@pytest.mark.parametrize("name", ["lstm_proj2", "gru_bi", "lstm_bi2"])
def test_packed_sequences(name: str) -> None:
    torch.manual_seed(0)
    T, B, F, H = 11, 4, 3, 5
    lengths = torch.tensor([7, 11, 3, 7])  # unsorted, with a tie
    m, ref = _pair(name, F, H)
    x = torch.randn(T, B, F, dtype=F64, requires_grad=True)
    hx = _init_state(ref, B)
    y_ref, s_ref = ref(pack_padded_sequence(x, lengths, enforce_sorted=False), hx)
    w = torch.randn_like(y_ref.data)
    inputs = [x, *_flat(hx), *ref.parameters()]
    g_ref = torch.autograd.grad(_loss(y_ref.data, s_ref, w), inputs)
    for budget in _budgets(m, T, B, packed=True):
        m.memory_budget = budget
        y, s = m(pack_padded_sequence(x, lengths, enforce_sorted=False), hx)
        assert isinstance(y, PackedSequence)
        for a, b in zip(y[1:], y_ref[1:], strict=True):
            assert a is not None and b is not None and torch.equal(a, b)  # the caller's order
        g = torch.autograd.grad(_loss(y.data, s, w), [x, *_flat(hx), *m.parameters()])
        assert _max_diff([y.data, *_flat(s)], [y_ref.data, *_flat(s_ref)]) <= 1e-10
        assert _max_diff(g, g_ref) <= 1e-10, (name, budget)


def test_unbatched_batch_first_and_missing_state() -> None:
    torch.manual_seed(0)
    for name in ("lstm_proj2", "gru_bi"):
        ours, theirs, kw = CONFIGS[name]
        ref = theirs(3, 5, batch_first=True, **kw).double()
        m = ours.from_torch(ref, memory_budget="1MiB")
        x = torch.randn(2, 9, 3, dtype=F64, requires_grad=True)  # (B, T, F)
        h0 = tuple(s[:, 0].detach() for s in _flat(_init_state(ref, 1)))  # unbatched state
        cases = [(x,), (x[0],), (x[0], h0 if isinstance(ref, nn.LSTM) else h0[0])]
        for args in cases:
            y_ref, s_ref = ref(*args)
            y, s = m(*args)
            assert m.last_plan is not None  # the budgeted path ran
            assert y.shape == y_ref.shape
            assert _max_diff([y, *_flat(s)], [y_ref, *_flat(s_ref)]) <= 1e-12
            g_ref = torch.autograd.grad(y_ref.square().sum(), x)
            g = torch.autograd.grad(y.square().sum(), x)
            assert _max_diff(g, g_ref) <= 1e-12


# ---------------------------------------------------------------------------------------
# Dropout between layers: explicit masks that replay exactly
# ---------------------------------------------------------------------------------------


def _dropout_reference(m: LSTM, x: Tensor, seed: int, p: float) -> tuple[Tensor, Tensor]:
    """Plain autograd, layer by layer with torch's own single-layer LSTMs, with the
    masks the executor's per-step seeding draws: step t's masks come from one
    ``bernoulli_`` right after ``step_rng(base, t)``."""
    T, B, _ = x.shape
    L, H = m.num_layers, m.hidden_size
    torch.manual_seed(seed)
    base = draw_base_seed()
    masks = torch.empty(T, L - 1, B, H, dtype=x.dtype)
    for t in range(T):
        with step_rng(base, t + 1):
            masks[t].bernoulli_(1 - p)
    y, hs = x, []
    for layer in range(L):
        one = nn.LSTM(y.shape[2], H).to(x.dtype)
        for suffix in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(one, f"{suffix}_l0", getattr(m, f"{suffix}_l{layer}"))
        if layer > 0:
            y = y * masks[:, layer - 1] / (1 - p)
        y, (h, _) = one(y)
        hs.append(h)
    return y, torch.cat(hs)


def test_dropout_masks_replay_exactly_under_recomputation() -> None:
    torch.manual_seed(0)
    T, B, F, H, p = 14, 3, 4, 5, 0.4
    m = LSTM(F, H, num_layers=3, dropout=p, dtype=F64, memory_budget=1, policy="auto")
    x = torch.randn(T, B, F, dtype=F64, requires_grad=True)
    w = torch.randn(T, B, H, dtype=F64)
    y_ref, h_ref = _dropout_reference(m, x, seed=7, p=p)
    g_ref = torch.autograd.grad((y_ref * w).sum() + h_ref.sum(), [x, *m.parameters()])
    fwd = set()
    for budget in _budgets(m, T, B):
        m.memory_budget = budget
        torch.manual_seed(7)
        y, (h, _) = m(x)
        g = torch.autograd.grad((y * w).sum() + h.sum(), [x, *m.parameters()])
        assert m.last_plan is not None
        fwd.add(m.last_plan.forward_steps)
        assert _max_diff([y, h], [y_ref, h_ref]) <= 1e-12
        assert _max_diff(g, g_ref) <= 1e-10
    assert len(fwd) >= 3
    y_eval = m.eval()(x)[0]
    assert not torch.allclose(y_eval, y_ref)  # the masks did drop units


def test_bidirectional_dropout_is_the_same_for_every_budget() -> None:
    torch.manual_seed(0)
    T, B = 10, 2
    m = GRU(3, 4, num_layers=2, dropout=0.5, bidirectional=True, dtype=F64, memory_budget=1)
    x = torch.randn(T, B, 3, dtype=F64, requires_grad=True)
    results = []
    for budget in _budgets(m, T, B)[::3]:
        m.memory_budget = budget
        torch.manual_seed(3)
        y, h = m(x)
        results.append([y, h, *torch.autograd.grad(y.sum() + h.sum(), [x, *m.parameters()])])
    assert _max_diff(results[0], results[1]) <= 1e-12


# ---------------------------------------------------------------------------------------
# The plain path, planning
# ---------------------------------------------------------------------------------------


def test_no_budget_or_no_grad_is_torchs_forward() -> None:
    torch.manual_seed(0)
    m, ref = _pair("lstm_bi2", 3, 4, torch.float32)
    m.memory_budget = None
    x = torch.randn(6, 2, 3)
    y, (h, c) = m(x)
    y_ref, (h_ref, c_ref) = ref(x)
    assert torch.equal(y, y_ref) and torch.equal(h, h_ref) and torch.equal(c, c_ref)
    assert m.last_plan is None and y.grad_fn is not None
    m.memory_budget = "1MiB"
    with torch.no_grad():
        y2, _ = m(x)
        y2_ref, _ = ref(x)
    # no_grad may pick other kernels than grad mode (oneDNN on AVX2 does): compare each
    # mode with torch's own module in the same mode
    assert m.last_plan is None and torch.equal(y2, y2_ref)
    torch.testing.assert_close(y2, y_ref)


def test_plan_for_predicts_without_running() -> None:
    torch.manual_seed(0)
    m = LSTM(8, 16, num_layers=2, memory_budget="auto")
    before = [p.detach().clone() for p in m.parameters()]
    store = m.plan_for(500, 4, memory_budget=None)
    assert store.plans[0].plan.policy == "store_all" and store.time_overhead() == 1.0
    small = m.plan_for(500, 4, memory_budget=int(0.05 * store.predicted_peak))
    assert small.predicted_peak <= 0.05 * store.predicted_peak
    assert 1.0 < small.time_overhead() < 1.8  # 5 %: MSM, 1,465 steps in 593 runs
    assert "predicted_peak" in small.summary()
    auto = m.plan_for(500, 4)  # the module's own "auto": what is free now
    assert auto.budget > 2**20 and auto.plans[0].plan.policy == "store_all"
    half = m.plan_for(500, 4, memory_budget="50%")
    assert half.budget == pytest.approx(auto.budget / 2, rel=0.1)
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))
    with pytest.raises(ValueError, match="seq_len must be an int >= 1"):
        m.plan_for(0, 4)


@pytest.mark.filterwarnings("ignore:.*only with .* forward steps:UserWarning")  # named policies at tiny budgets
def test_auto_prefers_fewer_runs_among_equally_cheap_plans() -> None:
    """auto ranks by forward steps + RUN_COST_STEPS per run (NOTE [ Per-run time ])."""
    m = LSTM(8, 16, dtype=F64, memory_budget=1)
    store = m.plan_for(300, 4, memory_budget=2**40)

    def cost(p: FusedPlan) -> int:
        return p.forward_steps + RUN_COST_STEPS * p.runs

    for frac in (0.05, 0.1, 0.3, 0.6):
        budget = int(frac * store.predicted_peak)
        auto = m.plan_for(300, 4, memory_budget=budget)
        assert auto.predicted_peak <= budget
        for policy in ("ism", "msm", "hsm", "chen"):
            m.policy = policy
            try:
                other = m.plan_for(300, 4, memory_budget=budget)
            except InfeasibleBudgetError:
                continue
            assert cost(auto) <= cost(other), (frac, policy)
            if cost(other) == cost(auto):
                assert auto.runs <= other.runs
        m.policy = "auto"


def test_a_named_policy_runs_as_named_and_says_when_auto_is_far_cheaper() -> None:
    """No silent policy change: ISM near its minimum recomputes everything (quadratic),
    and runs so, with a warning that names what auto would run."""
    m = LSTM(32, 64, policy="ism", memory_budget=1)
    budget = int(1.2 * m.minimum_budget(300, 4))
    with pytest.warns(UserWarning, match=r"policy='ism' fits .* only with 45,150 forward "
                                         r"steps; policy='auto' would run"):
        fp = m.plan_for(300, 4, memory_budget=budget)
    assert fp.plans[0].plan.policy == "ism" and fp.forward_steps == 300 * 301 // 2
    assert fp.predicted_peak <= budget
    m.policy = "auto"
    auto = m.plan_for(300, 4, memory_budget=budget)
    assert 2 * auto.forward_steps < fp.forward_steps


def test_a_named_policy_that_cannot_fit_raises_naming_the_ones_that_do() -> None:
    m = LSTM(32, 64, policy="chen", memory_budget=1)
    least = m.minimum_budget(1000, 8)
    m.policy = "auto"
    assert m.plan_for(1000, 8, memory_budget=least // 2).predicted_peak <= least // 2
    m.policy = "chen"
    with pytest.raises(InfeasibleBudgetError, match=r"policy 'chen' needs for seq_len=1000, "
                       r"batch 8 .* or use policy='auto' \(.*msm.* fit this budget\)") as e:
        m.plan_for(1000, 8, memory_budget=least // 2)
    assert e.value.minimum == least
    assert m.plan_for(1000, 8, memory_budget=least).plans[0].plan.policy == "chen"


def test_auto_fits_chens_plan_with_shorter_segments() -> None:
    """NOTE [ Shorter segments ]: below sqrt(T) segments' need, auto cuts shorter ones;
    the gradients are still exact."""
    torch.manual_seed(0)
    T, B = 400, 3
    ref = nn.LSTM(6, 10, num_layers=2).to(F64)
    m = LSTM.from_torch(ref, memory_budget=1, policy="chen")
    chen = m.plan_for(T, B, memory_budget=2**40)  # sqrt(T) segments, whatever the budget
    assert chen.plans[0].plan.policy == "chen" and chen.runs == 2 * 20 - 1
    budget = int(0.9 * m.minimum_budget(T, B, dtype=F64))
    with pytest.raises(InfeasibleBudgetError):
        m.plan_for(T, B, memory_budget=budget)  # the baseline keeps its segments
    m.policy = "msm"
    msm = m.plan_for(T, B, memory_budget=budget)
    m.policy, m.memory_budget = "auto", budget
    fp = m.plan_for(T, B)
    plan = fp.plans[0].plan
    assert plan.policy == "chen" and fp.predicted_peak <= budget
    assert chen.runs < fp.runs < msm.runs  # shorter segments, still far fewer runs
    assert fp.forward_steps <= 2 * T
    x = torch.randn(T, B, 6, dtype=F64, requires_grad=True)
    w = torch.randn(T, B, 10, dtype=F64)
    y, state = m(x)
    g = torch.autograd.grad(_loss(y, state, w), [x, *m.parameters()])
    y_ref, state_ref = ref(x)
    g_ref = torch.autograd.grad(_loss(y_ref, state_ref, w), [x, *ref.parameters()])
    assert m.last_plan is not None and m.last_plan.plans[0].plan.policy == "chen"
    assert _max_diff([y, *g], [y_ref, *g_ref]) <= 1e-10


def test_auto_trades_a_few_steps_for_many_fewer_runs() -> None:
    """A fused call costs about RUN_COST_STEPS steps: auto takes a plan of a few more
    steps in fewer runs (here Chen's with shorter segments, over MSM's optimum in steps)."""
    m = LSTM(8, 16, memory_budget=1, bucket_ratio=1.0)
    store = m.plan_for(300, 4, memory_budget=None)
    budget = int(0.12 * store.predicted_peak)
    auto = m.plan_for(300, 4, memory_budget=budget)
    m.policy = "msm"
    msm = m.plan_for(300, 4, memory_budget=budget)
    assert msm.forward_steps < auto.forward_steps  # MSM is optimal in steps ...
    assert auto.runs < msm.runs  # ... but auto took the plan with fewer runs
    assert auto.forward_steps + RUN_COST_STEPS * auto.runs <= (
        msm.forward_steps + RUN_COST_STEPS * msm.runs)


def test_fused_probe_is_not_a_cells_probe() -> None:
    """The fused kernel keeps a different amount per step than a per-step cell."""
    from mbrnn.nn import LSTMCell
    from mbrnn.runtime.probe import probe_cell

    m = LSTM(16, 32, memory_budget=1)
    fused = m._probe(0, 8, torch.device("cpu"), torch.float32, False)[0]
    cell = probe_cell(LSTMCell(16, 32), input_size=16, batch_size=8)
    assert fused.step.state_bytes == cell.state_bytes == 2 * 8 * 32 * 4
    assert fused.step.internal_bytes != cell.internal_bytes
    assert fused.step.output_bytes == 8 * 32 * 4


def test_budget_too_small_states_the_minimum() -> None:
    m = LSTM(3, 4, num_layers=2, bidirectional=True, dtype=F64, memory_budget=100)
    x = torch.randn(12, 2, 3, dtype=F64)
    with pytest.raises(InfeasibleBudgetError, match=r"below the minimum .* seq_len=12, batch 2"
                       ) as e:
        m(x)
    m.memory_budget = int(e.value.minimum)
    m(x)[0].sum().backward()  # the stated minimum works
    assert m.minimum_budget(12, 2) == int(e.value.minimum)


def test_bad_input_is_torchs_error() -> None:
    m = LSTM(3, 4, memory_budget="1MiB")
    with pytest.raises(ValueError, match="LSTM: Expected input to be 2D or 3D, got 4D"):
        m(torch.randn(2, 2, 2, 3))
    with pytest.raises(RuntimeError, match=r"input\.size\(-1\) must be equal to input_size"):
        m(torch.randn(5, 2, 7))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size"):
        m(torch.randn(5, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(RuntimeError, match="hx should also be 3-D"):
        m(torch.randn(5, 2, 3), (torch.zeros(2, 4), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match="empty sequence"):
        m(torch.randn(0, 2, 3))


# ---------------------------------------------------------------------------------------
# Memory truth
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["auto", "msm"])
@pytest.mark.parametrize(("name", "T"), [("lstm", 300), ("lstm3", 100)])
def test_measured_peak_is_within_the_budget(name: str, T: int, policy: str) -> None:
    torch.manual_seed(0)
    B, F, H = 4, 8, 16
    ours, _, kw = CONFIGS[name]
    m = ours(F, H, **kw, memory_budget=1, policy=policy)
    x = torch.randn(T, B, F)
    y_bytes = T * B * H * 4
    store = m.plan_for(T, B, memory_budget=2**40)
    low = m.minimum_budget(T, B)
    for frac in (0.05, 0.3, 1.0):
        budget = int(low + frac * (store.predicted_peak - low))
        m.memory_budget = budget
        fp = m.plan_for(T, B, input_requires_grad=False)

        def run() -> None:
            y, _ = m(x)
            y.sum().backward()

        bptt = measure_peak(run) - y_bytes  # y is the caller's
        assert m.last_plan == fp
        assert bptt <= budget, (frac, bptt, budget)
        assert bptt <= fp.predicted_peak, (frac, bptt, fp)  # the prediction is a bound
        # and close where the kept states dominate; at these tiny sizes the working set
        # and the per-run charges dominate smaller budgets, and are over-predicted by up
        # to a third (the benchmark's sizes: bench/bptt.json, predicted_peak)
        if frac == 1.0:
            assert bptt >= 0.8 * fp.predicted_peak, (frac, bptt, fp)


# ---------------------------------------------------------------------------------------
# GPU: cuDNN
# ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["lstm3", "lstm_bi2", "gru2"])
def test_cudnn_matches_torch(name: str) -> None:
    torch.manual_seed(0)
    T, B, F, H = 40, 4, 8, 16
    ours_cls, theirs, kw = CONFIGS[name]
    ref = theirs(F, H, **kw).cuda()
    m = ours_cls.from_torch(ref, memory_budget=1)
    x = torch.randn(T, B, F, device="cuda", requires_grad=True)
    y_ref, s_ref = ref(x)
    g_ref = torch.autograd.grad(y_ref.sum() + _flat(s_ref)[0].sum(), [x, *ref.parameters()])
    store = m.plan_for(T, B, memory_budget=2**40)
    m.memory_budget = int(0.2 * store.predicted_peak) + m.minimum_budget(T, B)
    y, s = m(x)
    g = torch.autograd.grad(y.sum() + _flat(s)[0].sum(), [x, *m.parameters()])
    assert m.last_plan is not None and m.last_plan.forward_steps > T * len(m._recurrences())
    for a, b in zip([y, *g], [y_ref, *g_ref], strict=True):
        assert (a - b).abs().max() <= 1e-4 * (1 + b.abs().max())


@pytest.mark.gpu
def test_cudnn_dropout_replays_and_stays_quiet() -> None:
    torch.manual_seed(0)
    m = LSTM(8, 16, num_layers=2, dropout=0.3, device="cuda", memory_budget=1)
    x = torch.randn(30, 4, 8, device="cuda")
    grads = []
    for budget in (m.minimum_budget(30, 4) * 2, 2**40):
        m.memory_budget = budget
        torch.manual_seed(1)
        y, _ = m(x)
        grads.append(torch.autograd.grad(y.sum(), list(m.parameters())))
    assert _max_diff(grads[0], grads[1]) <= 1e-5
