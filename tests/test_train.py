"""``mbrnn train / evaluate / sample``: configs, exact resume, Ctrl-C, DDP, bad input."""

from __future__ import annotations

import gzip
import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mbrnn.train as train_mod
from mbrnn.cli import main
from mbrnn.train import TrainConfig, TrainError, load_config, train

TINY = ["--level=char", "--embedding-size=8", "--hidden-size=8", "--num-layers=1", "--bptt=8",
        "--batch-size=4", "--eval-batches=2", "--memory-budget=64KiB", "--progress=false",
        "--threads=1"]


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    words = ["the", "king", "and", "queen", "of", "fair", "verona", "where", "we", "lay", "our", "scene"]
    lines = [" ".join(rng.choice(words, 8)) for _ in range(60)]
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cfg(text: Path, out: Path, **kw: object) -> TrainConfig:
    args = dict(a[2:].split("=", 1) for a in TINY)
    args.update(data=str(text), out=str(out), max_steps=6, eval_every=3, checkpoint_every=2,
                dropout=0.2, embedding_dropout=0.1)
    args.update({k: v for k, v in kw.items()})
    return load_config(None, args)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model" / "model.safetensors")


# --- configuration ----------------------------------------------------------------------


def test_presets_load_and_overrides_apply() -> None:
    for preset in sorted(train_mod.CONFIG_DIR.glob("*.toml")):
        assert isinstance(load_config(preset.stem), TrainConfig)
    cfg = load_config("tiny", {"max-steps": "7", "dropout": "0.5", "plot": "true",
                               "fractions": "0.8,0.1,0.1"})
    assert (cfg.max_steps, cfg.dropout, cfg.plot, cfg.fractions) == (7, 0.5, True, [0.8, 0.1, 0.1])


@pytest.mark.parametrize(("overrides", "match"), [
    ({"hiden_size": "8"}, "unknown config key 'hiden_size'"),
    ({"max_steps": "ten"}, "max_steps must be int"),
    ({"dropout": "true"}, "dropout must be float"),
    ({"cell": "transformer"}, "cell must be one of"),
    ({"bptt": "0"}, "bptt must be >= 1"),
])
def test_bad_config_is_a_clear_error(overrides: dict[str, str], match: str) -> None:
    with pytest.raises(TrainError, match=match):
        load_config("tiny", overrides)


def test_cli_rejects_unknown_flags_and_bad_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--hiden-size=3"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    assert main(["train", "--config=no-such-preset"]) == 2
    assert "not found" in capsys.readouterr().err


# --- a run, its outputs, evaluate and sample --------------------------------------------


def test_dry_run_writes_log_plot_checkpoint_and_model(text: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, f"--data={text}", f"--out={out}", "--dry-run", "--plot"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and all(r["loss"] > 0 for r in log)
    assert {"bpc", "ppl", "tokens_per_s", "peak_bytes"} <= set(log[-1])
    assert (out / "curves.png").stat().st_size > 0 and (out / "checkpoint.pt").is_file()
    model = out / "model"
    assert main(["evaluate", "--model", str(model), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "test" and metrics["tokens"] > 0 and metrics["loss"] > 0
    assert main(["sample", "--model", str(model), "--prompt", "the ", "--max-new-tokens", "12",
                 "--top-k", "3"]) == 0
    sample = capsys.readouterr().out
    assert sample.startswith("the ") and len(sample) == len("the ") + 12 + 1


def test_evaluate_rejects_data_the_vocab_cannot_encode(text: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    train(_cfg(text, out, max_steps=1, eval_every=1))
    other = tmp_path / "other.txt"
    other.write_text("ZZZ XYZ 123 qqq\n" * 50)
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(other)]) == 2
    assert "cannot load the corpus" in capsys.readouterr().err


# --- exact resume, Ctrl-C -----------------------------------------------------------------


def test_ctrl_c_saves_and_resume_is_bit_identical(text: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight"
    train(_cfg(text, straight))

    interrupted = tmp_path / "interrupted"
    real_step = train_mod._train_step
    calls = {"n": 0}

    def step_then_ctrl_c(*args: object, **kwargs: object) -> float:
        calls["n"] += 1
        loss = real_step(*args, **kwargs)  # type: ignore[arg-type]
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of step 3
        return loss

    monkeypatch.setattr(train_mod, "_train_step", step_then_ctrl_c)
    result = train(_cfg(text, interrupted))
    assert result["stopped"] and result["step"] == 3
    assert not (interrupted / "model").exists()
    assert torch.load(interrupted / "checkpoint.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(train_mod, "_train_step", real_step)

    train(_cfg(text, interrupted, resume=True))
    a, b = _weights(straight), _weights(interrupted)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_another_models_checkpoint(text: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(_cfg(text, out, max_steps=2))
    with pytest.raises(TrainError, match="hidden_size: checkpoint 8 vs now 16"):
        train(_cfg(text, out, hidden_size=16, embedding_size=16, resume=True))
    with pytest.raises(TrainError, match="no checkpoint"):
        train(_cfg(text, tmp_path / "empty", resume=True))


# --- bad input stops before training -------------------------------------------------------


def test_missing_or_empty_data_and_small_budget(text: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="not found"):
        train(_cfg(tmp_path / "nope.txt", tmp_path / "a"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(TrainError, match="empty"):
        train(_cfg(empty, tmp_path / "b"))
    with pytest.raises(TrainError, match="memory_budget=1KiB is too small"):
        train(_cfg(text, tmp_path / "c", memory_budget="1KiB"))
    assert not (tmp_path / "c" / "checkpoint.pt").exists()


# --- classification ------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 48), ("t10k", 16)):
        labels = rng.integers(0, 10, n)
        pixels = rng.integers(0, 40, (n, 28, 28)) + labels[:, None, None] * 20
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", pixels)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


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
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main(["evaluate", "--model", str(tmp_path / "straight" / "model"), "--split", "test",
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 16 and 0.0 <= metrics["accuracy"] <= 1.0


def _write_sequences(root: Path, n: int, rng: np.random.Generator) -> None:
    """``n`` .npy sequences of 5..19 steps, 3 features, per class; the class shifts them."""
    for label, name in enumerate(("low", "mid", "high")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            steps = int(rng.integers(5, 20))
            np.save(root / name / f"{i}.npy", rng.normal(label, 0.3, (steps, 3)).astype(np.float32))


def test_classifier_trains_on_a_folder_of_sequences(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """train/ and test/ folders of class sub-folders holding .npy files of different
    lengths: packed batches, held-out validation, evaluation on test/."""
    rng = np.random.default_rng(0)
    data = tmp_path / "recordings"
    _write_sequences(data / "train", 12, rng)
    _write_sequences(data / "test", 4, rng)
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


def test_bfloat16_autocast_training_runs_and_learns(text: Path, tmp_path: Path) -> None:
    """--dtype=bfloat16 trains under CPU autocast within the budget: finite, falling loss."""
    out = tmp_path / "bf16"
    result = train(_cfg(text, out, dtype="bfloat16", max_steps=12, eval_every=4, lr=0.02,
                        dropout=0.0, embedding_dropout=0.0))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log)
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert result["step"] == 12


# --- data-parallel ---------------------------------------------------------------------------


def test_ddp_two_processes_match_one(text: Path, tmp_path: Path) -> None:
    common = [*TINY, f"--data={text}", "--max-steps=3", "--eval-every=3", "--dropout=0",
              "--checkpoint-every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "mbrnn.train", *common, f"--out={tmp_path / 'ddp'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train(load_config(None, {a[2:].split("=", 1)[0]: a.split("=", 1)[1] for a in common}
                      | {"out": str(tmp_path / "one")}))
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_permute_reads_fashion_pixels_in_one_fixed_order(images: Path) -> None:
    """--permute=true feeds every image's pixels in the same fixed, non-identity order."""
    from mbrnn.data import FashionMNISTSequences

    base = {"task": "classify", "data": str(images), "valid_size": "8"}
    plain = train_mod.load_images(load_config(None, base), "train")
    permuted = train_mod.load_images(load_config(None, {**base, "permute": "true"}), "train")
    order = FashionMNISTSequences(images, split="train", permute=True).permutation
    assert order is not None and not torch.equal(order, torch.arange(784))
    assert torch.equal(permuted.images, plain.images[:, order])
    assert not torch.equal(permuted.images, plain.images)
