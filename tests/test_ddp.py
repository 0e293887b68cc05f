"""DistributedDataParallel over a budgeted ``Recurrent``: 2 gloo processes on CPU.

Each rank wraps an LSTM under an MSM budget small enough to force recomputation in
``DistributedDataParallel`` and back-propagates the mean loss over its half of a fixed
global batch. DDP averages the two ranks' gradients, which gives the gradient of the mean
over the whole batch: it must equal a single process over the whole batch, with plain
autograd and with the same kind of budget.

The ranks are subprocesses running this file (``python tests/test_ddp.py RANK ...``), so
a hang is cut off by a timeout instead of stalling the suite; they talk over 127.0.0.1
only (``MASTER_ADDR`` and ``GLOO_SOCKET_IFNAME=lo``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import mbrnn

WORLD = 2
T, B, F, H, OUT = 12, 4, 3, 5, 2  # B is the global batch: B // WORLD per rank
KEPT_INTERNAL = 2  # budget = minimum + this many internal states: forces recomputation
TIMEOUT_S = 60.0


class Model(nn.Module):
    """A budgeted LSTM and a linear head on every step's output."""

    def __init__(self, memory_budget: int | None) -> None:
        super().__init__()
        self.rnn = mbrnn.Recurrent(mbrnn.LSTMCell(F, H), memory_budget=memory_budget,
                                   policy="msm")
        self.head = nn.Linear(H, OUT)

    def forward(self, x: Tensor) -> Tensor:  # (T, b, F) -> (T, b, OUT)
        y, _ = self.rnn(x)
        return self.head(y)


def make_model(batch: int, *, budgeted: bool) -> Model:
    """Same seed, same weights in every process; the budget depends on the batch."""
    torch.manual_seed(0)
    model = Model(None).double()
    if budgeted:
        rnn = model.rnn
        sizes = rnn.probe(batch, dtype=torch.float64)
        rnn.memory_budget = (rnn.minimum_budget(T, batch, dtype=torch.float64)
                             + KEPT_INTERNAL * sizes.internal_bytes)
    return model


def global_batch() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(T, B, F, generator=gen, dtype=torch.float64)
    target = torch.randn(T, B, OUT, generator=gen, dtype=torch.float64)
    return x, target


def local_loss(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Mean over this batch of each sequence's summed squared error."""
    per_seq = ((model(x) - target) ** 2).sum(dim=(0, 2))  # (b,)
    return per_seq.mean()


def grads(model: nn.Module) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        out[name.removeprefix("module.")] = p.grad.flatten().tolist()
    return out


# --- one rank (run as a subprocess) -----------------------------------------------------


def rank_main(rank: int, port: int, out_dir: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        b = B // WORLD
        model = make_model(b, budgeted=True)
        rnn = model.rnn
        ddp = DistributedDataParallel(model)
        x, target = global_batch()
        sl = slice(rank * b, (rank + 1) * b)
        local_loss(ddp, x[:, sl], target[:, sl]).backward()
        assert rnn.last_stats is not None and rnn.last_plan is not None
        result = {
            "grads": grads(ddp),
            "forward_steps": rnn.last_stats.forward_steps,
            "planned_forward_steps": rnn.last_plan.plan.forward_steps,
        }
        (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
        del ddp
        dist.barrier()  # both ranks done communicating before either tears gloo down
    finally:
        dist.destroy_process_group()


# --- the test ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(tmp_path: Path) -> list[dict]:
    port = _free_port()
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "error"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(rank), str(port), str(tmp_path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in range(WORLD)
    ]
    logs: list[str] = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT_S)
            logs.append(out)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.communicate()
        pytest.fail(f"the DDP ranks did not finish within {TIMEOUT_S:g} s")
    for rank, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"rank {rank} exited with {p.returncode}:\n{log}"
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]


def _single(*, budgeted: bool) -> tuple[dict[str, Tensor], Model]:
    model = make_model(B, budgeted=budgeted)
    x, target = global_batch()
    local_loss(model, x, target).backward()
    g = {k: torch.tensor(v, dtype=torch.float64) for k, v in grads(model).items()}
    return g, model


@pytest.mark.skipif(not torch.distributed.is_available(),
                    reason="torch.distributed is not available in this torch build")
@pytest.mark.skipif(torch.distributed.is_available() and not torch.distributed.is_gloo_available(),
                    reason="torch.distributed has no gloo backend in this torch build")
def test_ddp_gradients_equal_single_process(tmp_path: Path) -> None:
    ranks = _spawn(tmp_path)

    ref, _ = _single(budgeted=False)
    budgeted, model = _single(budgeted=True)
    stats = model.rnn.last_stats
    assert stats is not None and stats.forward_steps > T  # the single run recomputed
    for r in ranks:  # so did every rank, as planned
        assert r["forward_steps"] == r["planned_forward_steps"] > T

    assert set(budgeted) == set(ref) == {
        "rnn.cell.weight_ih", "rnn.cell.weight_hh", "rnn.cell.bias_ih", "rnn.cell.bias_hh",
        "head.weight", "head.bias"}
    for name, g_ref in ref.items():
        assert (budgeted[name] - g_ref).abs().max().item() <= 1e-10, name
        for rank, r in enumerate(ranks):
            g = torch.tensor(r["grads"][name], dtype=torch.float64)
            assert g.shape == g_ref.shape, (rank, name)
            assert (g - g_ref).abs().max().item() <= 1e-10, (rank, name)
            assert (g - budgeted[name]).abs().max().item() <= 1e-10, (rank, name)
    # and the ranks agree bit for bit: DDP gave both the same averaged gradient
    assert ranks[0]["grads"] == ranks[1]["grads"]
    # the check can fail: one half's own gradient is not the global one
    half = _half_batch_grads()
    assert max((half[k] - ref[k]).abs().max().item() for k in ref) > 1e-3


def _half_batch_grads() -> dict[str, Tensor]:
    model = make_model(B // WORLD, budgeted=False)
    x, target = global_batch()
    local_loss(model, x[:, : B // WORLD], target[:, : B // WORLD]).backward()
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in grads(model).items()}


if __name__ == "__main__":
    rank_main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
