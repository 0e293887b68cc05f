"""Smoke tests of scripts/: each benchmark's --quick run, its JSON and its plots.

scripts/train.py, evaluate.py and sample.py are thin wrappers over ``mbrnn train`` etc.;
test_cli.py runs those commands.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
import torch
from helpers import load_script

from mbrnn.nn.rnn import RUN_COST_STEPS

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STATUSES = {"ok", "infeasible", "same_plan", "skipped"}


# ---------------------------------------------------------------------------------------
# scripts/bench_bptt.py
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("one_thread")  # main sets one thread on CPU and leaves it so
def test_bench_bptt_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_script("bench_bptt", monkeypatch)
    assert bench.main(["--quick", "--quiet", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bptt.json").read_text())
    assert result["quick"] is True and set(result["machine"]) >= {"nproc", "device"}
    methods = {r["method"] for r in result["rows"]}
    assert {"nn.LSTM", "checkpoint", "mbrnn store_all"} <= methods
    assert any(m.startswith("mbrnn 5%") for m in methods)
    for row in result["rows"]:
        if row["status"] == "ok":
            assert row["seconds"] > 0 and row["peak_bytes"] > 0 and row["rnn_bytes"] > 0
            assert row["max_grad_diff"] <= 1e-4
            assert row.get("within_budget", True), row  # a budget bounds rnn_bytes
    assert "targets" in result
    for png in ("bptt_memory_time.png", "bptt_time_vs_T.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------------------------------
# scripts/bench_calls.py
# ---------------------------------------------------------------------------------------


def test_bench_calls_quick_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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


# ---------------------------------------------------------------------------------------
# scripts/bench_planner.py
# ---------------------------------------------------------------------------------------


def test_bench_planner_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_planner",
                                                  ROOT / "scripts" / "bench_planner.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_planner", bench)  # dataclasses look it up
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "solve() seconds" in out and "hierarchical vs exact" in out
    result = json.loads((tmp_path / "planner.json").read_text())
    assert set(result) >= {"machine", "config", "timing", "gap", "total_seconds"}
    assert set(result["machine"]) >= {"nproc", "cpu"}
    assert result["quick"] is True
    rows = result["timing"]
    assert {r["policy"] for r in rows} == set(bench.POLICIES)
    for row in rows:
        assert set(row) >= {"T", "fraction", "budget", "alpha", "policy", "status",
                            "solve_seconds", "emit_seconds", "replay_seconds",
                            "forward_steps", "lower_bound"}
        assert row["alpha"] == 4.0
        if row["status"] == "ok":
            assert row["solve_seconds"] >= 0
            assert row["forward_steps"] >= row["lower_bound"]
        else:
            assert row["reason"]
    assert any(r["status"] == "infeasible" for r in rows)  # store_all below 100 %
    assert {r["leaf"] for r in result["gap"]} == {1024, 128}
    for row in result["gap"]:
        assert set(row) >= {"T", "budget", "policy", "leaf", "exact_C", "hierarchical_C",
                            "gap_percent"}
        assert row["exact_C"] <= row["hierarchical_C"] <= 1.02 * row["exact_C"]
    assert (tmp_path / "planner.png").read_bytes().startswith(PNG_MAGIC)


# ---------------------------------------------------------------------------------------
# scripts/bench_runtime.py: the --quick run, its JSON, and the time cap
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """scripts/bench_runtime.py, once for its tests (dataclasses look it up in sys.modules)."""
    with pytest.MonkeyPatch.context() as mp:
        yield load_script("bench_runtime", mp)


def test_bench_runtime_quick_run(bench: ModuleType, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = bench.QUICK
    threads = torch.get_num_threads()
    assert bench.main(["--quick", "--quiet", "--out", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads  # main leaves the process as it found it
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("| plain |") for line in lines) == len(cfg.lengths)
    assert sum(line.startswith("| msm |") for line in lines) >= len(cfg.lengths)

    result = json.loads((tmp_path / "runtime.json").read_text())
    assert set(result) >= {"machine", "runs", "lengths", "rows"}
    assert set(result["machine"]) >= {"nproc", "cpu", "torch_threads", "torch"}
    [run] = result["runs"]
    assert run["quick"] is True and "--quick" in run["command"]
    assert run["lengths"] == list(cfg.lengths) and run["total_seconds"] > 0
    assert run["machine"]["torch_threads"] == cfg.threads
    assert [info["T"] for info in result["lengths"]] == list(cfg.lengths)
    rows = result["rows"]
    assert {r["policy"] for r in rows if r["method"] == "mbrnn"} == set(bench.POLICIES)
    for info in result["lengths"]:
        T = info["T"]
        assert info["io_bytes"] == 2 * T * cfg.batch * cfg.hidden_size * 4
        assert info["store_all_peak"] > 0 and info["checkpoint_chunk"] ** 2 >= T
        assert set(info["minimum_budgets"]) == set(bench.POLICIES)
        mine = [r for r in rows if r["T"] == T]
        plain = next(r for r in mine if r["method"] == "plain")
        assert any(r["method"] == "checkpoint" and r["status"] == "ok" for r in mine)
        for r in mine:
            assert r["status"] in STATUSES, r
            if r["status"] != "ok":
                assert r["reason"] and r["seconds"] is None and r["measured_peak"] is None
                if r["status"] == "infeasible":
                    assert r["budget"] < r["minimum_budget"]
                continue
            # timing: the median of the repeats, against plain's median
            assert len(r["times"]) == cfg.repeats and min(r["times"]) > 0
            assert r["seconds"] == statistics.median(r["times"])
            assert r["ratio_to_plain"] == pytest.approx(r["seconds"] / plain["seconds"])
            assert r["bptt_peak"] == r["measured_peak"] - info["io_bytes"]
            assert r["measured_peak"] > 0
            if r["method"] != "mbrnn":
                continue
            # memory: the measured peak is within the budget, the plan ran as planned
            assert r["within_budget"] is True
            assert 0 < r["bptt_peak"] <= r["budget"], r
            assert r["predicted_peak"] <= r["budget"]
            assert r["executed_forward_steps"] == r["forward_steps"] >= T
            assert r["budget"] >= r["minimum_budget"] == info["minimum_budgets"][r["policy"]]
        ok = [r for r in mine if r["method"] == "mbrnn" and r["status"] == "ok"]
        assert any(r["forward_steps"] > T for r in ok)  # some rungs recomputed
        assert any(r["forward_steps"] == T for r in ok)  # and store-all did not
        assert any(r["status"] == "infeasible" for r in mine)  # store_all below 100 %
    png = tmp_path / "runtime.png"
    assert png.read_bytes().startswith(PNG_MAGIC)

    # --replot redraws from the JSON alone
    png.unlink()
    assert bench.main(["--replot", "--out", str(tmp_path)]) == 0
    assert png.read_bytes().startswith(PNG_MAGIC)
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("| plain |") for line in lines) == len(cfg.lengths)

    # --merge replaces the lengths it runs again and keeps the others
    short = cfg.lengths[0]
    assert bench.main(["--quick", "--quiet", "--merge", "--out", str(tmp_path), "--T",
                       str(short), "--policies", "msm"]) == 0
    merged = json.loads((tmp_path / "runtime.json").read_text())
    assert [run["lengths"] for run in merged["runs"]] == [list(cfg.lengths), [short]]
    assert [(i["T"], i["run"]) for i in merged["lengths"]] == [
        (n, int(n == short)) for n in cfg.lengths]
    again = [r for r in merged["rows"] if r["T"] == short and r["method"] == "mbrnn"]
    assert again and {r["policy"] for r in again} == {"msm"}
    kept = [r for r in merged["rows"] if r["T"] != short]
    assert kept == [r for r in rows if r["T"] != short]


def test_points_over_the_time_cap_are_skipped(bench: ModuleType) -> None:
    cfg = replace(bench.QUICK, policies=("msm", "chen"), max_point_seconds=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as main does for --quick
    try:
        _, rows, points, _ = bench.prepare_length(cfg, 8, lambda _msg: None)
    finally:
        torch.set_num_threads(threads)
    assert {pt.row.method for pt in points} == {"plain", "checkpoint"}  # always measured
    budgeted = [r for r in rows if r.method == "mbrnn"]
    assert budgeted and {r.status for r in budgeted} <= {"skipped", "infeasible", "same_plan"}
    skipped = [r for r in budgeted if r.status == "skipped"]
    assert {r.policy for r in skipped} == {"msm", "chen"}
    for r in skipped:
        assert "--max-point-seconds 0" in r.reason and r.measured_peak is None
        assert r.predicted_seconds is not None and r.predicted_seconds > 0


def test_prediction_adds_a_forward_step_per_recomputed_step(bench: ModuleType) -> None:
    assert bench.predict_seconds(2.0, 0.01, 100, 100) == 2.0
    assert bench.predict_seconds(2.0, 0.01, 100, 350) == pytest.approx(4.5)
    cfg = replace(bench.QUICK, repeats=5, warmup=1)
    assert bench.point_seconds(1.5, cfg) == pytest.approx(1.5 * 8)


# ---------------------------------------------------------------------------------------
# scripts/bench_planning.py
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("one_thread")  # main sets one thread on CPU and leaves it so
def test_bench_planning_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_script("bench_planning", monkeypatch)
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "planning.json").read_text())
    assert {r["T"] for r in result["first_call"]} == {50, 200}
    assert all(r["first_s"] >= 0 and r["warm_s"] > 0 for r in result["first_call"])
    assert {r["policy"] for r in result["solve"]} == {"msm", "hsm", "auto"}
    v = result["variable"]
    assert v["within_budget"] and len(v["lengths"]) == 4 == len(v["predicted_peaks"])
    assert max(v["predicted_peaks"]) <= v["budget"] and v["bucket_loss_max"] >= 0
    assert (tmp_path / "planning.png").read_bytes()[:8] == PNG_MAGIC
