"""mbrnn.training.checkpoint: complete, atomic checkpoints that only their own run resumes."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from training_helpers import tiny_config, write_corpus

from mbrnn.training import CHECKPOINT_FORMAT, TrainError, load_checkpoint, save_checkpoint, train


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("data"))


def test_resume_refuses_another_models_checkpoint(text: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny_config(text, out, max_steps=2))
    with pytest.raises(TrainError, match="hidden_size: checkpoint 8 vs now 16"):
        train(tiny_config(text, out, hidden_size=16, embedding_size=16, resume=True))
    with pytest.raises(TrainError, match="no checkpoint"):
        train(tiny_config(text, tmp_path / "empty", resume=True))


def test_a_checkpoint_holds_everything_to_resume(text: Path, tmp_path: Path) -> None:
    """The keys are the checkpoint format: old runs resume only while they stay the same."""
    cfg = tiny_config(text, tmp_path / "run", max_steps=2)
    train(cfg)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt", cfg)
    assert set(ckpt) == {"format", "config", "model", "optimizer", "scheduler", "step", "epoch",
                         "offset", "state", "rng", "vocab"}
    assert ckpt["format"] == CHECKPOINT_FORMAT == 1 and ckpt["config"] == asdict(cfg)
    assert ckpt["step"] == 2 and len(ckpt["rng"]) == 1 and set(ckpt["rng"][0]) >= {"torch", "python"}


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deep" / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    real_save = torch.save

    def crash_midway(obj: object, f: str) -> None:
        real_save({"half": "written"}, f)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_load_rejects_foreign_and_corrupt_files(text: Path, tmp_path: Path) -> None:
    cfg = tiny_config(text, tmp_path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(TrainError, match="not an mbrnn training checkpoint"):
        load_checkpoint(foreign, cfg)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="not a readable mbrnn checkpoint"):
        load_checkpoint(corrupt, cfg)
