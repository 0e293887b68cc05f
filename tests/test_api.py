"""The package's shape: explicit exports, imports that point one way, one fitting path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import mbrnn
from mbrnn import GRU, LSTM, RNN, Recurrent
from mbrnn.nn.cells import LSTMCell
from mbrnn.runtime.fit import Working
from mbrnn.runtime.probe import FusedSizes, StepSizes

PACKAGE = Path(mbrnn.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every mbrnn module ``path`` imports, at any depth (functions and TYPE_CHECKING
    blocks included): a cycle through a lazy import is still a cycle in the design."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "mbrnn"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mbrnn":
                continue
            for alias in node.names:  # `from . import x` imports the submodule x
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
    return {m for m in out if m in known and m != name}


def test_no_import_cycle() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {_module_name(p) for p in files}
    graph = {_module_name(p): _imports(p, known) for p in files}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
    # and the layers point one way: nothing below imports what is above it
    layers = ["mbrnn.plan", "mbrnn.runtime", "mbrnn.nn", "mbrnn.models", "mbrnn.training",
              "mbrnn.cli"]
    for module, targets in graph.items():
        level = next((i for i, p in enumerate(layers) if module.startswith(p)), None)
        if level is None:
            continue
        for target in targets:
            above = [p for p in layers[level + 1:] if target.startswith(p)]
            assert not above, f"{module} imports {target}, a layer above it"


def test_public_names_are_exported() -> None:
    for name in mbrnn.__all__:
        assert getattr(mbrnn, name) is not None
    assert mbrnn.Budget is mbrnn.budget.Budget
    assert callable(mbrnn.from_pretrained)


def test_public_exports() -> None:
    for name in mbrnn.__all__:
        assert getattr(mbrnn, name) is not None
    assert mbrnn.LSTM is LSTM and mbrnn.nn.GRU is GRU and mbrnn.RNN is RNN
    assert {"LSTM", "GRU", "RNN"} <= set(mbrnn.__all__)


def test_recurrent_and_lstm_plan_identically_for_identical_sizes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Both front ends fit through runtime.fit: given the same sizes, working set and
    per-run cost, Recurrent and LSTM produce the same plan."""
    step = StepSizes(state_bytes=2048, internal_bytes=6144, output_bytes=1024, saved_bytes=6144)
    working = Working(single=9000, multi=12000)
    rec = Recurrent(LSTMCell(8, 16), memory_budget=1)
    lstm = LSTM(8, 16, memory_budget=1)
    monkeypatch.setattr(Recurrent, "_probe", lambda self, *a: (step, working))
    monkeypatch.setattr(LSTM, "_probe",
                        lambda self, *a: (FusedSizes(step, 0, 0, 0, 0), working))
    for policy in ("auto", "msm", "ism", "hsm", "chen"):
        rec.policy = lstm.policy = policy
        for budget in (60_000, 150_000, 400_000):
            try:
                a = rec.plan_for(400, 8, memory_budget=budget)
            except mbrnn.InfeasibleBudgetError:
                with pytest.raises(mbrnn.InfeasibleBudgetError):
                    lstm.plan_for(400, 8, memory_budget=budget, input_requires_grad=False)
                continue
            # the fused segment's per-call cost is what may differ: make it the same
            monkeypatch.setattr("mbrnn.runtime.fused.FusedSegment.run_cost_steps", 0.0)
            b = lstm.plan_for(400, 8, memory_budget=budget, input_requires_grad=False)
            assert list(a.plan.ops) == list(b.plans[0].plan.ops), (policy, budget)
            assert a.predicted_peak == b.predicted_peak
            assert a.plan.policy == b.plans[0].plan.policy
    assert torch.is_grad_enabled()
