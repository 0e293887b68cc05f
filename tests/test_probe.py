from __future__ import annotations

import pytest
import torch
from torch import nn

from mbrnn.plan import Chain
from mbrnn.runtime.memory import MemoryMeter, measure_peak
from mbrnn.runtime.probe import StepSizes, chain_for, probe_cell, probe_step

B, F, H = 4, 5, 8
F32 = 4


class Elman(nn.Module):
    """h' = tanh(x W^T + h U^T + b); y = h'. Autograd saves x, h, W, U and h' only."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.W = nn.Parameter(torch.randn(hidden_size, input_size) / input_size**0.5)
        self.U = nn.Parameter(torch.randn(hidden_size, hidden_size) / hidden_size**0.5)
        self.b = nn.Parameter(torch.zeros(hidden_size))

    def init_state(
        self,
        batch_size: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(x @ self.W.T + h @ self.U.T + self.b)
        return h, h


class Gated(Elman):
    """h' = tanh(a) * sigmoid(a) with a = x W^T + h U^T + b.

    Saved: tanh(a) and sigmoid(a) (by tanh, sigmoid and mul; 2 new (B, H) storages),
    plus x, h and parameters; h' itself is not saved by this step, so
    internal = 3 (B, H) storages.
    """

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = x @ self.W.T + h @ self.U.T + self.b
        h = torch.tanh(a) * torch.sigmoid(a)
        return h, h


class LSTMish(nn.Module):
    """An LSTM step with tuple state (h, c) and a single fused linear layer."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size + hidden_size, 4 * hidden_size)

    def init_state(
        self,
        batch_size: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return z, z.clone()

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, c = state
        i, f, g, o = self.linear(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # 4 x (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


def test_elman_exact() -> None:
    sizes = probe_cell(Elman(F, H), input_size=F, batch_size=B)
    bh = B * H * F32
    # internal: tanh's saved output, which is h'; x, h, W, U are not the step's own
    assert sizes == StepSizes(
        state_bytes=bh, internal_bytes=bh, output_bytes=bh, saved_bytes=2 * bh
    )


def test_gated_hand_count() -> None:
    sizes = probe_cell(Gated(F, H), input_size=F, batch_size=B)
    bh = B * H * F32
    assert sizes.state_bytes == bh
    assert sizes.internal_bytes == 3 * bh  # tanh(a), sigmoid(a), h'
    assert sizes.saved_bytes == 3 * bh  # tanh(a), sigmoid(a), the input h


def test_parameters_and_input_excluded() -> None:
    # a huge input and weight do not change what one step costs to keep
    big = probe_cell(Elman(1000, H), input_size=1000, batch_size=B)
    assert big == probe_cell(Elman(F, H), input_size=F, batch_size=B)


def test_lstm_tuple_state_hand_count() -> None:
    sizes = probe_cell(LSTMish(F, H), input_size=F, batch_size=B)
    bh = B * H * F32
    cat = B * (F + H) * F32  # saved by the linear layer
    assert sizes.state_bytes == 2 * bh  # (h, c)
    assert sizes.output_bytes == bh
    # cat; sigmoid(i), sigmoid(f), tanh(g), sigmoid(o), tanh(c'); then h' and c'
    assert sizes.internal_bytes == cat + 5 * bh + 2 * bh
    assert sizes.saved_bytes == cat + 5 * bh + bh  # + the input c


class Stack(nn.Module):
    """An Elman layer under an LSTM layer: nested state (h0, (h1, c1))."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lower = Elman(input_size, hidden_size)
        self.upper = LSTMish(hidden_size, hidden_size)

    def init_state(
        self,
        batch_size: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        return (
            self.lower.init_state(batch_size, device=device, dtype=dtype),
            self.upper.init_state(batch_size, device=device, dtype=dtype),
        )

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]:
        y0, s0 = self.lower(x, state[0])
        y1, s1 = self.upper(y0, state[1])
        return y1, (s0, s1)


def test_nested_state_adds_up() -> None:
    stack = Stack(F, H)
    sizes = probe_cell(stack, input_size=F, batch_size=B)
    lower = probe_cell(stack.lower, input_size=F, batch_size=B)
    upper = probe_cell(stack.upper, input_size=H, batch_size=B)
    assert sizes.state_bytes == lower.state_bytes + upper.state_bytes
    # the lower layer's output is the upper's input: new inside the stack's step, but
    # saved (by tanh) and counted once; everything else adds up
    assert sizes.internal_bytes == lower.internal_bytes + upper.internal_bytes
    assert sizes.output_bytes == upper.output_bytes


@pytest.mark.parametrize("cell_type", [Elman, Gated, LSTMish, Stack])
def test_float64_doubles_sizes(cell_type: type[nn.Module]) -> None:
    cell = cell_type(F, H)
    single = probe_cell(cell, input_size=F, batch_size=B)
    double = probe_cell(cell.double(), input_size=F, batch_size=B)
    assert double == StepSizes(*(2 * getattr(single, f) for f in StepSizes.__dataclass_fields__))


def _chain_cost(cell: nn.Module, k: int) -> int:
    """Peak bytes of running k steps and keeping all their graphs (final state held)."""
    xs = [torch.randn(B, F) for _ in range(k)]
    state = cell.init_state(B)  # type: ignore[operator]
    kept: list[object] = []

    def run() -> None:
        s = state
        for x in xs:
            _, s = cell(x, s)
        kept.append(s)

    peak = measure_peak(run)
    assert kept  # the graph was alive when the peak was taken
    return peak


@pytest.mark.parametrize("cell_type", [Elman, Gated])
def test_kept_chain_costs_k_internal(cell_type: type[nn.Module]) -> None:
    # the point of the probe: k kept steps cost k * internal_bytes
    cell = cell_type(F, H)
    sizes = probe_cell(cell, input_size=F, batch_size=B)
    k = 32
    assert _chain_cost(cell, k) == pytest.approx(k * sizes.internal_bytes, rel=0.1)
    # growth per kept step is exact: the transients of the last step cancel
    assert _chain_cost(cell, 24) - _chain_cost(cell, 8) == 16 * sizes.internal_bytes


def test_kept_chain_lstm_within_conservative_bounds() -> None:
    # internal_bytes counts the whole output state; in a kept chain torch frees the
    # part of it no backward saves (here h, copied by cat), so the probe is an upper bound
    cell = LSTMish(F, H)
    sizes = probe_cell(cell, input_size=F, batch_size=B)
    growth = (_chain_cost(cell, 24) - _chain_cost(cell, 8)) / 16
    assert sizes.internal_bytes - sizes.state_bytes <= growth <= sizes.internal_bytes


def test_probe_step_with_torch_cell_and_no_leak() -> None:
    cell = nn.RNNCell(F, H)
    x, h = torch.randn(B, F), torch.zeros(B, H)
    with MemoryMeter() as m:
        sizes = probe_step(lambda x, h: (cell(x, h),) * 2, x, h)
    assert m.current == 0  # the probed graph is gone, with no reference cycle left
    assert sizes.state_bytes == B * H * F32
    assert not h.requires_grad  # the caller's state is left alone


def test_probe_cell_leaves_global_rng_alone() -> None:
    cell = Elman(F, H)
    rng = torch.get_rng_state()
    probe_cell(cell, input_size=F, batch_size=B)
    assert torch.equal(rng, torch.get_rng_state())


def test_chain_for() -> None:
    sizes = probe_cell(Gated(F, H), input_size=F, batch_size=B)
    chain = chain_for(sizes, 100)
    assert chain == Chain(100, float(B * H * F32), float(3 * B * H * F32))
    assert chain.alpha == 3.0
    with pytest.raises(ValueError, match="length must be >= 1"):
        chain_for(sizes, 0)
    with pytest.raises(TypeError, match="sizes must be a StepSizes or FusedSizes, got tuple"):
        chain_for((1, 2, 3, 4), 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state_bytes=0"):
        chain_for(StepSizes(0, 0, 0, 0), 10)


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((1, 2, 3, 4.0), TypeError, "saved_bytes must be an int, got float"),
        ((1, 2, -3, 4), ValueError, "output_bytes must be >= 0, got -3"),
        ((8, 4, 0, 0), ValueError, "internal_bytes=4 is below state_bytes=8"),
        ((True, 2, 0, 0), TypeError, "state_bytes must be an int, got bool"),
    ],
)
def test_step_sizes_validation(args: tuple, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        StepSizes(*args)


def _ok(x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return h * 2, h * 2


@pytest.mark.parametrize(
    ("step_fn", "state", "exc", "match"),
    [
        (3, torch.zeros(B, H), TypeError, "step_fn must be callable"),
        (_ok, [torch.zeros(B, H)], TypeError, "state must be a Tensor .*list \\(use a tuple"),
        (_ok, (), TypeError, "state must be .*non-empty.* got an empty tuple"),
        (_ok, (torch.zeros(B, H), (1,)), TypeError, r"state\[1\]\[0\] must be a Tensor"),
        (lambda x, h: h, torch.zeros(B, H), TypeError, "must return a pair"),
        (lambda x, h: (h, h, h), torch.zeros(B, H), TypeError, "tuple of length 3"),
        (lambda x, h: (1, h * 2), torch.zeros(B, H), TypeError, "y as a Tensor, got int"),
        (lambda x, h: (h, h[:, :2] * 2), torch.zeros(B, H), ValueError, "same structure"),
        (
            lambda x, h: (h, (h * 2,)),
            torch.zeros(B, H),
            ValueError,
            r"got \(\[4, 8\] torch.float32,\)",
        ),
        (lambda x, h: (h, h.double()), torch.zeros(B, H), ValueError, "torch.float64"),
    ],
)
def test_probe_step_validation(
    step_fn: object, state: object, exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        probe_step(step_fn, torch.randn(B, F), state)  # type: ignore[arg-type]


def test_probe_step_x_must_be_tensor() -> None:
    with pytest.raises(TypeError, match="x must be a Tensor, got list"):
        probe_step(_ok, [1.0], torch.zeros(B, H))  # type: ignore[arg-type]


def test_probe_cell_validation() -> None:
    with pytest.raises(TypeError, match=r"cell must be a torch\.nn\.Module"):
        probe_cell(_ok, input_size=F, batch_size=B)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="has no init_state"):
        probe_cell(nn.RNNCell(F, H), input_size=F, batch_size=B)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        probe_cell(Elman(F, H), input_size=F, batch_size=0)
    with pytest.raises(TypeError, match="input_size must be an int, got float"):
        probe_cell(Elman(F, H), input_size=5.0, batch_size=B)  # type: ignore[arg-type]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_probe_on_cuda_matches_cpu() -> None:
    cell = LSTMish(F, H)
    on_cpu = probe_cell(cell, input_size=F, batch_size=B)
    assert probe_cell(cell.cuda(), input_size=F, batch_size=B) == on_cpu
