"""mbrnn.data.hf: corpora from Hugging Face datasets, checked against the local files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data_helpers import LEVELS

from mbrnn.data import corpus_from_hf, load_corpus, load_hf_corpus


def test_corpus_from_hf_matches_files(wikitext_dir: Path) -> None:
    import datasets

    def rows(name: str) -> list[str]:  # hub wikitext rows keep their newline
        return (wikitext_dir / name).read_text(encoding="utf-8").splitlines(keepends=True)

    dataset = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": rows("train.txt")}),
            "validation": datasets.Dataset.from_dict({"text": rows("valid.txt")}),
            "test": datasets.Dataset.from_dict({"text": rows("test.txt")}),
        }
    )
    expected = load_corpus(wikitext_dir)
    for level in LEVELS:
        corpus = corpus_from_hf(dataset, level=level)
        reference = expected if level == "word" else load_corpus(wikitext_dir, level=level)
        assert corpus.vocab == reference.vocab
        for split in ("train", "valid", "test"):
            assert torch.equal(corpus.split(split), reference.split(split))


def test_load_hf_corpus_local_text_builder(wikitext_dir: Path, tmp_path: Path) -> None:
    files = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
    corpus = load_hf_corpus(
        "text",
        data_files={k: str(wikitext_dir / v) for k, v in files.items()},
        cache_dir=str(tmp_path / "hf-cache"),
    )
    expected = load_corpus(wikitext_dir)
    assert corpus.vocab == expected.vocab
    assert torch.equal(corpus.valid, expected.valid) and torch.equal(corpus.test, expected.test)


def test_load_hf_corpus_calls_the_hub_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path: str, name: str | None = None, **kwargs: object) -> object:
        calls.append((path, name, kwargs))
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a b", "b"]})})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    corpus = load_hf_corpus("Salesforce/wikitext", "wikitext-2-raw-v1", revision="abc")
    assert calls == [("Salesforce/wikitext", "wikitext-2-raw-v1", {"revision": "abc"})]
    assert corpus.train.tolist() == [0, 1, 2, 1, 2] and corpus.test.numel() == 0


def test_corpus_from_hf_single_dataset_and_errors() -> None:
    import datasets

    single = datasets.Dataset.from_dict({"body": [f"line {i}" for i in range(20)]})
    corpus = corpus_from_hf(single, text_column="body", fractions=(0.5, 0.5, 0.0))
    assert corpus.train.numel() == corpus.valid.numel() == 30
    with pytest.raises(ValueError, match=r"no column 'text'.*\['body'\]"):
        corpus_from_hf(single)
    with pytest.warns(UserWarning, match="ignoring splits"):
        kept = corpus_from_hf({"train": ["a"], "unsupervised": ["b"]})
    assert kept.vocab.tokens == ("a", "<eos>")
    with pytest.raises(ValueError, match="two validation splits"):
        corpus_from_hf({"train": ["a"], "validation": ["a"], "dev": ["a"]})
    with pytest.raises(ValueError, match=r"split 'test' of the dataset\) has no tokens"):
        corpus_from_hf({"train": ["a"], "test": []})
    with pytest.raises(TypeError, match="must hold strings"):
        corpus_from_hf({"train": [1, 2]})
