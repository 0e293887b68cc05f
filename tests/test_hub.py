"""save_pretrained / from_pretrained: config.json + model.safetensors, strict, versioned."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mbrnn import hub
from mbrnn.data import Vocab, data_root
from mbrnn.hub import from_pretrained
from mbrnn.models import (
    LanguageModel,
    LanguageModelConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)


def _lm() -> LanguageModel:
    vocab = Vocab.build("abcdefg hij\n", level="char")
    return LanguageModel(LanguageModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=8,
                                             num_layers=1), vocab=vocab)


def test_round_trip_language_model(tmp_path: Path) -> None:
    model = _lm()
    folder = hub.save_pretrained(model, tmp_path / "lm", extra={"note": "x"})
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "language_model" and config["format_version"] == hub.FORMAT_VERSION
    assert (folder / "tokenizer.json").is_file()
    loaded = from_pretrained(str(folder))
    assert isinstance(loaded, LanguageModel) and not loaded.training
    assert loaded.vocab == model.vocab and loaded.pretrained_info == {"note": "x"}
    assert loaded.decoder.weight is loaded.embedding.weight  # still tied
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_round_trip_classifier_and_overrides(tmp_path: Path) -> None:
    model = SequenceClassifier(SequenceClassifierConfig(2, 3, hidden_size=8, bidirectional=True))
    hub.save_pretrained(model, tmp_path / "clf")
    loaded = hub.from_pretrained(tmp_path / "clf", memory_budget="1MiB")
    assert isinstance(loaded, SequenceClassifier) and loaded.config.memory_budget == "1MiB"
    x = torch.randn(5, 2, 2)
    model.eval()
    torch.testing.assert_close(loaded(x), model(x))


def test_loading_is_strict(tmp_path: Path) -> None:
    folder = hub.save_pretrained(_lm(), tmp_path / "lm")
    tensors = load_file(folder / "model.safetensors")
    save_file({**tensors, "extra.weight": torch.zeros(1)}, folder / "model.safetensors")
    with pytest.raises(RuntimeError, match=r"extra\.weight"):
        hub.from_pretrained(folder)
    tensors.pop(next(iter(tensors)))
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(RuntimeError, match="Missing"):
        hub.from_pretrained(folder)


@pytest.mark.parametrize(("key", "value", "match"), [
    ("format_version", 99, "format_version"),
    ("model_type", "gpt", "model_type"),
    ("num_heads", 4, "unknown keys"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, key: str, value: object, match: str) -> None:
    folder = hub.save_pretrained(_lm(), tmp_path / "lm")
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        hub.from_pretrained(folder)


def test_zoo_name_resolves_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.save_pretrained(_lm(), tmp_path / "zoo" / "tiny-char")
    monkeypatch.setattr(hub, "ZOO_DIR", tmp_path / "zoo")

    def no_network(**kwargs: object) -> str:
        raise AssertionError("a zoo name must not reach the Hub")

    monkeypatch.setattr("huggingface_hub.snapshot_download", no_network)
    assert hub.zoo_names() == ["tiny-char"]
    assert isinstance(from_pretrained("tiny-char"), LanguageModel)
    with pytest.raises(FileNotFoundError, match="zoo name"):
        hub.from_pretrained("no-such-model")


def test_hub_repo_id_goes_through_snapshot_download(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder = hub.save_pretrained(_lm(), tmp_path / "snapshot")
    calls: list[dict[str, object]] = []

    def fake_snapshot_download(**kwargs: object) -> str:
        calls.append(kwargs)
        return str(folder)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    model = hub.from_pretrained("someone/char-lm", revision="v1", local_files_only=True)
    assert isinstance(model, LanguageModel)
    assert calls[0]["repo_id"] == "someone/char-lm" and calls[0]["revision"] == "v1"
    assert "model.safetensors" in calls[0]["allow_patterns"]  # type: ignore[operator]


def test_save_rejects_foreign_modules(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="zoo model"):
        hub.save_pretrained(torch.nn.Linear(2, 2), tmp_path)


# --- the shipped zoo -------------------------------------------------------------------


def _zoo_params() -> list[str]:
    return hub.zoo_names()


@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_model_reproduces_its_recorded_metric(name: str) -> None:
    """Each zoo model's config.json records a metric on a fixed slice of its data."""
    from mbrnn.training import evaluate_model

    folder = hub.ZOO_DIR / name
    assert (folder / "README.md").is_file()
    assert all(os.path.getsize(p) < 25 * 2**20 for p in folder.iterdir())
    model = hub.from_pretrained(name)
    check = model.pretrained_info["check"]
    data = model.pretrained_info["training"]["data"]
    if not (Path(data).exists() or (data_root() / data).exists()):
        pytest.skip(f"dataset {data} not available under {data_root()}")
    torch.manual_seed(0)
    metrics = evaluate_model(model, check["split"], batch_size=check["batch_size"],
                             bptt=check.get("bptt"), max_batches=check["max_batches"])
    for key in ("loss", "accuracy"):
        if key in check:
            assert math.isclose(metrics[key], check[key], rel_tol=1e-4, abs_tol=1e-4), (key, metrics)


def test_evaluate_defaults_to_valid_where_there_is_no_test_split(
        capsys: pytest.CaptureFixture[str]) -> None:
    """shakespeare-char-lstm was trained on a 90/10 split: `mbrnn evaluate` with no
    --split falls back on validation; asking for test says the split is empty."""
    from mbrnn.cli import main

    if not (data_root() / "tinyshakespeare").exists():
        pytest.skip(f"dataset tinyshakespeare not available under {data_root()}")
    assert main(["evaluate", "--model", "shakespeare-char-lstm", "--max-batches", "1",
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "valid" and metrics["tokens"] > 0
    assert main(["evaluate", "--model", "shakespeare-char-lstm", "--split", "test"]) != 0
    assert "test split of tinyshakespeare is empty" in capsys.readouterr().err
