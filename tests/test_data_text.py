"""mbrnn.data.text: corpora from the shared data and from local files.

Tests against the shared datasets skip when ``$MBRNN_DATA`` (default ``../shared/data``)
does not hold them, and run whenever it does.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from data_helpers import normalize_words, shared, write_text

from mbrnn.data import Corpus, Vocab, corpus_from_texts, load_corpus


def reference_word_corpus(folder: Path) -> tuple[list[str], dict[str, list[int]]]:
    """pytorch/examples word_language_model's data.Corpus, inlined: the oracle."""
    word2idx: dict[str, int] = {}
    idx2word: list[str] = []
    ids: dict[str, list[int]] = {}
    for split in ("train", "valid", "test"):
        with open(folder / f"{split}.txt", encoding="utf8") as f:
            for line in f:
                for word in [*line.split(), "<eos>"]:
                    if word not in word2idx:
                        idx2word.append(word)
                        word2idx[word] = len(idx2word) - 1
        with open(folder / f"{split}.txt", encoding="utf8") as f:
            ids[split] = [word2idx[w] for line in f for w in [*line.split(), "<eos>"]]
    return idx2word, ids


# -- corpora from the shared data ------------------------------------------------------


@pytest.fixture(scope="module")
def wikitext2() -> tuple[Corpus, float]:
    folder = shared("wikitext-2")
    start = time.perf_counter()
    corpus = load_corpus(folder)
    return corpus, time.perf_counter() - start


def test_wikitext2_word_level_matches_pytorch_examples(wikitext2: tuple[Corpus, float]) -> None:
    corpus, seconds = wikitext2
    assert corpus.train.numel() == 2_088_628
    assert corpus.valid.numel() == 217_646
    assert corpus.test.numel() == 245_569
    assert len(corpus.vocab) == 33_278 and corpus.level == "word"
    assert seconds < 10, f"WikiText-2 took {seconds:.1f} s to load"
    idx2word, ids = reference_word_corpus(shared("wikitext-2"))
    assert corpus.vocab.tokens == tuple(idx2word)
    for split in ("train", "valid", "test"):
        assert torch.equal(corpus.split(split), torch.tensor(ids[split]))


def test_wikitext2_decodes_its_text(wikitext2: tuple[Corpus, float]) -> None:
    corpus, _ = wikitext2
    text = (shared("wikitext-2") / "valid.txt").read_text(encoding="utf-8")
    assert corpus.vocab.decode(corpus.valid) == normalize_words(text)


def test_tiny_shakespeare_char_level_90_10() -> None:
    path = shared("tinyshakespeare") / "input.txt"
    start = time.perf_counter()
    corpus = load_corpus(path, level="char", fractions=(0.9, 0.1, 0.0))
    seconds = time.perf_counter() - start
    text = path.read_text(encoding="utf-8")
    assert len(text) == 1_115_394 and seconds < 5
    assert len(corpus.vocab) == 65
    assert corpus.vocab.tokens == tuple(sorted(set(text)))  # nanoGPT's stoi
    n_train = int(len(text) * 0.9)
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (
        n_train,
        len(text) - n_train,
        0,
    )
    assert corpus.vocab.decode(corpus.valid) == text[n_train:]
    assert corpus.vocab.decode(corpus.train[:14]) == "First Citizen:"


def test_tiny_shakespeare_byte_level_default_fractions() -> None:
    path = shared("tinyshakespeare") / "input.txt"
    corpus = load_corpus(path, level="byte")
    sizes = [corpus.split(s).numel() for s in ("train", "valid", "test")]
    assert sum(sizes) == path.stat().st_size == 1_115_394
    assert sizes[0] == int(1_115_394 * 0.9) and sizes[2] == int(1_115_394 * 0.05)
    assert len(corpus.vocab) == 256


# -- corpora from local files --------------------------------------------------------------

def test_load_corpus_wikitext_layout(wikitext_dir: Path) -> None:
    corpus = load_corpus(wikitext_dir)
    vocab = corpus.vocab
    assert vocab.tokens == ("=", "Title", "<eos>", "the", "cat", "<unk>", "sat")
    assert corpus.train.tolist() == [0, 1, 0, 2, 2, 3, 4, 5, 6, 2]
    assert corpus.valid.tolist() == [3, 5, 6, 2]  # "dog" is not in train: <unk>
    assert corpus.test.tolist() == [4, 6, 2]
    assert repr(corpus) == "Corpus(level='word', vocab=7, train=10, valid=4, test=3)"


@pytest.mark.parametrize("suffix", [".txt", ".tokens"])
def test_load_corpus_ptb_layout(tmp_path: Path, suffix: str) -> None:
    for split, text in [("train", "a b\nb c\n"), ("valid", "c\n"), ("test", "a\n")]:
        write_text(tmp_path / f"ptb.{split}{suffix}", text)
    corpus = load_corpus(tmp_path)
    assert corpus.vocab.tokens == ("a", "b", "<eos>", "c")
    assert corpus.test.tolist() == [0, 2]


def test_load_corpus_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no corpus in"):
        load_corpus(tmp_path)
    write_text(tmp_path / "train.txt", "a\n")
    write_text(tmp_path / "valid.txt", "a\n")
    with pytest.raises(FileNotFoundError, match=r"test\.txt"):
        load_corpus(tmp_path)
    write_text(tmp_path / "test.txt", "a\n")
    write_text(tmp_path / "ptb.train.txt", "a\n")
    with pytest.raises(ValueError, match="several corpora"):
        load_corpus(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(tmp_path / "nowhere.txt")


def test_load_corpus_explicit_splits(wikitext_dir: Path) -> None:
    corpus = load_corpus(wikitext_dir, splits={"train": "train.txt", "valid": "valid.txt"})
    assert corpus.valid.numel() == 4 and corpus.test.numel() == 0
    # With a model's vocabulary no train split is needed.
    test_only = load_corpus(splits={"test": wikitext_dir / "test.txt"}, vocab=corpus.vocab)
    assert test_only.test.tolist() == [4, 6, 2] and test_only.train.numel() == 0
    test_only.vocab.check_compatible(corpus.vocab)
    with pytest.raises(ValueError, match="train split is needed"):
        load_corpus(splits={"test": wikitext_dir / "test.txt"})
    with pytest.raises(ValueError, match="unknown split names"):
        load_corpus(wikitext_dir, splits={"validation": "valid.txt"})


def test_word_level_unknown_words_without_unk_name_the_split(tmp_path: Path) -> None:
    train = write_text(tmp_path / "a.txt", "the cat\n")
    valid = write_text(tmp_path / "b.txt", "the dog\n")
    with pytest.raises(ValueError, match=r"valid split \(.*b\.txt\).*'dog'"):
        load_corpus(splits={"train": train, "valid": valid})


def test_char_level_vocab_covers_all_splits(tmp_path: Path) -> None:
    files = {
        "train": write_text(tmp_path / "tr.txt", "abc"),
        "valid": write_text(tmp_path / "va.txt", "xy"),
    }
    corpus = load_corpus(splits=files, level="char")
    assert corpus.vocab.tokens == ("a", "b", "c", "x", "y")
    assert corpus.valid.tolist() == [3, 4]


def test_byte_level_reads_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"ab\r\n\xff" * 10)  # \r\n kept; invalid UTF-8 kept
    corpus = load_corpus(path, level="byte", fractions=(0.5, 0.5, 0.0))
    assert torch.cat([corpus.train, corpus.valid]).tolist() == list(b"ab\r\n\xff" * 10)


def test_load_corpus_file_errors(tmp_path: Path) -> None:
    empty = write_text(tmp_path / "empty.txt", "")
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        load_corpus(empty)
    train = write_text(tmp_path / "train.txt", "a\n")
    with pytest.raises(FileNotFoundError, match=r"valid file .*missing\.txt"):
        load_corpus(splits={"train": train, "valid": tmp_path / "missing.txt"})
    with pytest.raises(ValueError, match="unknown level 'words'"):
        load_corpus(train, level="words")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="give a file or folder"):
        load_corpus()
    with pytest.raises(ValueError, match="fractions only applies"):
        load_corpus(tmp_path, fractions=(0.9, 0.1, 0.0))
    with pytest.raises(ValueError, match="given vocab is char-level"):
        load_corpus(train, vocab=Vocab.build("a", level="char"))


@pytest.mark.parametrize(
    ("fractions", "error"),
    [
        ((0.9, 0.1), ValueError),
        ((0.5, 0.5, 0.5), ValueError),
        ((1.1, -0.1, 0.0), ValueError),
        ((0.0, 0.5, 0.5), ValueError),
        ((math.nan, 0.5, 0.5), ValueError),
        ("0.9", ValueError),
        ((0.9, "0.1", 0.0), TypeError),
    ],
)
def test_bad_fractions(tmp_path: Path, fractions: object, error: type[Exception]) -> None:
    path = write_text(tmp_path / "text.txt", "a b c d\n" * 10)
    with pytest.raises(error, match="fractions"):
        load_corpus(path, fractions=fractions)  # type: ignore[arg-type]


def test_fraction_split_too_small(tmp_path: Path) -> None:
    path = write_text(tmp_path / "tiny.txt", "abc")
    with pytest.raises(ValueError, match=r"3 tokens, too few .* test split is empty"):
        load_corpus(path, level="char", fractions=(0.5, 0.25, 0.25))
    corpus = load_corpus(path, level="char", fractions=(1.0, 0.0, 0.0))
    assert corpus.train.tolist() == [0, 1, 2] and corpus.valid.numel() == 0


def test_corpus_from_texts_and_validation() -> None:
    corpus = corpus_from_texts({"train": "a b\n", "test": "b\n"})
    assert corpus.test.tolist() == [1, 2] and corpus.valid.numel() == 0
    with pytest.raises(ValueError, match=r"the valid split \(the valid text\) has no tokens"):
        corpus_from_texts({"train": "a b\n", "valid": ""})
    halves = corpus_from_texts("abcd", level="char", fractions=(0.5, 0.25, 0.25))
    assert [halves.train.tolist(), halves.valid.tolist(), halves.test.tolist()] == [
        [0, 1],
        [2],
        [3],
    ]
    with pytest.raises(TypeError, match="int64"):
        Corpus(torch.zeros(3), corpus.valid, corpus.test, corpus.vocab)
    with pytest.raises(ValueError, match="unknown split"):
        corpus.split("validation")
