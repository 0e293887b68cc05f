"""scripts/bench_calls.py: the --quick smoke run and its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import load_script

from mbrnn.nn.rnn import RUN_COST_STEPS


def test_quick_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_script("bench_calls", monkeypatch)
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "calls.json").read_text())
    assert result["run_cost_steps"] == RUN_COST_STEPS
    (row,) = result["calls"]
    assert (row["B"], row["H"], row["long"]) == (4, 16, 8)
    assert row["step_seconds_1"] > 0 and row["step_seconds_long"] > 0
    assert row["call_cost_steps"] == pytest.approx(
        (row["step_seconds_1"] - row["step_seconds_long"]) / row["step_seconds_long"])
    ph = result["phases"]
    assert ph["T"] == 20 and ph["forward_no_grad"] > 0 and ph["forward_backward"] > 0
    assert (tmp_path / "calls.png").read_bytes().startswith(b"\x89PNG")
