"""mbrnn.training.loop: exact resume, Ctrl-C, stop_at, classification runs, bf16, DDP, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from training_helpers import (
    TINY,
    tiny_config,
    weights,
    write_corpus,
    write_fashion,
    write_sequences,
)

from mbrnn.cli import main
from mbrnn.training import TrainConfig, TrainError, load_config, loop, train


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fashion(tmp_path_factory.mktemp("fashion"))


# --- exact resume, Ctrl-C -----------------------------------------------------------------


def test_ctrl_c_saves_and_resume_is_bit_identical(text: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight"
    train(tiny_config(text, straight))

    interrupted = tmp_path / "interrupted"
    real_step = loop._train_step
    calls = {"n": 0}

    def step_then_ctrl_c(*args: object, **kwargs: object) -> float:
        calls["n"] += 1
        loss = real_step(*args, **kwargs)  # type: ignore[arg-type]
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of step 3
        return loss

    monkeypatch.setattr(loop, "_train_step", step_then_ctrl_c)
    result = train(tiny_config(text, interrupted))
    assert result["stopped"] and result["step"] == 3
    assert not (interrupted / "model").exists()
    assert torch.load(interrupted / "checkpoint.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(loop, "_train_step", real_step)

    train(tiny_config(text, interrupted, resume=True))
    a, b = weights(straight), weights(interrupted)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- time limit ---------------------------------------------------------------------------


def test_time_limit_ends_the_run_evaluated_and_saved(text: Path, tmp_path: Path) -> None:
    """time_limit: past it, the step that is running is the last; it is evaluated and the
    model saved, as at max_steps (not a stop: no resume needed)."""
    out = tmp_path / "timed"
    result = train(tiny_config(text, out, time_limit=1e-9))
    assert result["step"] == 1 and not result["stopped"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1]
    assert (out / "model" / "model.safetensors").is_file()


# --- bad input stops before training -------------------------------------------------------


def test_missing_or_empty_data_and_small_budget(text: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="not found"):
        train(tiny_config(tmp_path / "nope.txt", tmp_path / "a"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(TrainError, match="empty"):
        train(tiny_config(empty, tmp_path / "b"))
    with pytest.raises(TrainError, match="memory_budget=1KiB is too small"):
        train(tiny_config(text, tmp_path / "c", memory_budget="1KiB"))
    assert not (tmp_path / "c" / "checkpoint.pt").exists()


# --- classification ------------------------------------------------------------------------


def test_classifier_run_resumes_exactly_and_evaluates(images: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def cfg(out: Path, **kw: object) -> TrainConfig:
        return load_config(None, {"task": "classify", "data": str(images), "pixels_per_step": "28",
                                  "hidden_size": "8", "num_layers": "1", "batch_size": "8",
                                  "eval_batch_size": "8", "valid_size": "8", "max_steps": "6",
                                  "eval_every": "3", "checkpoint_every": "2", "bidirectional": "true",
                                  "memory_budget": "256KiB", "progress": "false", "out": str(out),
                                  **{k: str(v) for k, v in kw.items()}})

    train(cfg(tmp_path / "straight"))
    train(cfg(tmp_path / "split", stop_at=4))
    result = train(cfg(tmp_path / "split", resume="true"))
    assert result["step"] == 6 and 0.0 <= result["accuracy"] <= 1.0
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main(["evaluate", "--model", str(tmp_path / "straight" / "model"), "--split", "test",
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 16 and 0.0 <= metrics["accuracy"] <= 1.0


def test_classifier_trains_on_a_folder_of_sequences(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """train/ and test/ folders of class sub-folders holding .npy files of different
    lengths: packed batches, held-out validation, evaluation on test/."""
    rng = np.random.default_rng(0)
    data = tmp_path / "recordings"
    write_sequences(data / "train", 12, rng)
    write_sequences(data / "test", 4, rng)
    out = tmp_path / "run"
    result = train(load_config(None, {
        "task": "classify", "data": str(data), "hidden_size": "8", "num_layers": "1",
        "batch_size": "6", "eval_batch_size": "6", "valid_size": "6", "max_steps": "30",
        "eval_every": "10", "lr": "0.03", "memory_budget": "64KiB", "progress": "false",
        "out": str(out)}))
    assert result["examples"] == 3  # a tenth of the 36 training files held out
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]  # it learns: the classes differ in their mean
    assert all(r["peak_bytes"] > 0 for r in log)  # measured on CPU
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["input_size"] == 3 and config["num_classes"] == 3
    assert main(["evaluate", "--model", str(out / "model"), "--split", "test", "--data", str(data),
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 12 and metrics["accuracy"] >= 0.5
    # one folder with a CSV of labels: no test split to evaluate on
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["path,label"]
    for i in range(20):
        np.save(flat / f"s{i}.npy", rng.normal(i % 2, 0.3, (7, 2)).astype(np.float32))
        rows.append(f"s{i}.npy,{i % 2}")
    (flat / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = load_config(None, {
        "task": "classify", "data": str(flat), "labels_csv": str(flat / "labels.csv"),
        "hidden_size": "4", "num_layers": "1", "batch_size": "4", "max_steps": "2",
        "eval_every": "2", "progress": "false", "out": str(tmp_path / "flat_run")})
    assert train(cfg)["examples"] == 2
    assert main(["evaluate", "--model", str(tmp_path / "flat_run" / "model"), "--split", "test",
                 "--data", str(flat)]) != 0
    assert "no test/ folder" in capsys.readouterr().err


# --- dtypes, data-parallel -----------------------------------------------------------------


def test_bfloat16_autocast_training_runs_and_learns(text: Path, tmp_path: Path) -> None:
    """--dtype=bfloat16 trains under CPU autocast within the budget: finite, falling loss."""
    out = tmp_path / "bf16"
    result = train(tiny_config(text, out, dtype="bfloat16", max_steps=12, eval_every=4, lr=0.02,
                               dropout=0.0, embedding_dropout=0.0))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log)
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert result["step"] == 12


def test_ddp_two_processes_match_one(text: Path, tmp_path: Path) -> None:
    common = [*TINY, f"--data={text}", "--max-steps=3", "--eval-every=3", "--dropout=0",
              "--checkpoint-every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "mbrnn", "train", *common, f"--out={tmp_path / 'ddp'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train(load_config(None, {a[2:].split("=", 1)[0]: a.split("=", 1)[1] for a in common}
                      | {"out": str(tmp_path / "one")}))
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
