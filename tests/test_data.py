"""Tests for mbrnn.data: paths, vocabularies, corpora, LM batching, sequence datasets.

Tests against the shared datasets skip when ``$MBRNN_DATA`` (default ``../shared/data``)
does not hold them, and run whenever it does.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import math
import struct
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence
from torch.utils.data import DataLoader

import mbrnn.data
from mbrnn.data import (
    BPTTWindow,
    Corpus,
    FashionMNISTSequences,
    SequenceFolder,
    Vocab,
    batchify,
    bptt_windows,
    collate_sequences,
    corpus_from_hf,
    corpus_from_texts,
    data_root,
    load_corpus,
    load_hf_corpus,
    load_sequence,
    read_idx,
    read_wav,
    require_dataset,
    shard_streams,
)

LEVELS = ("word", "char", "byte")


def shared(name: str) -> Path:
    path = data_root() / name
    if not path.is_dir():
        pytest.skip(
            f"shared dataset {name!r} not found at {path}; set MBRNN_DATA to the folder "
            f"that holds it"
        )
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


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


def normalize_words(text: str) -> str:
    """What word-level decode(encode(text)) gives: words single-spaced, every line ended."""
    if not text:
        return ""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return "".join(" ".join(line.split()) + "\n" for line in lines)


# -- paths -------------------------------------------------------------------------------


def test_data_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MBRNN_DATA", str(tmp_path))
    assert data_root() == tmp_path


def test_data_root_default_is_shared_next_to_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    repo_root = Path(mbrnn.data.__file__).resolve().parents[2]
    expected = repo_root.parent / "shared" / "data"
    monkeypatch.delenv("MBRNN_DATA", raising=False)
    assert data_root() == expected
    monkeypatch.setenv("MBRNN_DATA", "")
    assert data_root() == expected


def test_require_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MBRNN_DATA", str(tmp_path))
    (tmp_path / "toy").mkdir()
    assert require_dataset("toy") == tmp_path / "toy"
    with pytest.raises(FileNotFoundError, match="MBRNN_DATA") as info:
        require_dataset("wikitext-2")
    assert "wikitext-2" in str(info.value) and str(tmp_path) in str(info.value)
    for bad in ("", "../toy", str(tmp_path)):
        with pytest.raises(ValueError, match="folder name"):
            require_dataset(bad)


# -- Vocab -------------------------------------------------------------------------------


def test_word_vocab_order_matches_pytorch_dictionary() -> None:
    text = "b a\n\na c\n"
    vocab = Vocab.build(text, level="word")
    assert vocab.tokens == ("b", "a", "<eos>", "c")
    assert vocab.eos_id == 2 and vocab.unk_id is None
    assert vocab.encode(text) == [0, 1, 2, 2, 1, 3, 2]
    assert Vocab.build("x y", level="word").tokens == ("x", "y", "<eos>")  # no newline at all


def test_word_encode_decode() -> None:
    vocab = Vocab.build("to be or\nnot to be\n", level="word")
    assert vocab.encode("to be\n") == [0, 1, 3]
    assert vocab.encode("to be") == [0, 1, 3]  # the last line gets its <eos> too
    assert vocab.encode("") == []
    assert vocab.decode([0, 1, 3, 4, 0]) == "to be\nnot to"
    assert vocab.decode(torch.tensor([3, 3])) == "\n\n"
    assert vocab.decode(vocab.encode("  to\tbe  \n or")) == "to be\nor\n"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab< >\t\n\r\u3000\xa0", max_size=40))
def test_word_roundtrip_normalizes_whitespace(text: str) -> None:
    vocab = Vocab.build(text, level="word")
    assert vocab.decode(vocab.encode(text)) == normalize_words(text)


def test_word_unknowns_map_to_unk_or_fail() -> None:
    with_unk = Vocab.build("the <unk> cat\n", level="word")
    assert with_unk.encode("the dog\n") == [0, 1, 3]
    without_unk = Vocab.build("the cat\n", level="word")
    with pytest.raises(ValueError, match=r"no '<unk>'.*'dog'"):
        without_unk.encode("the dog\n")


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_char_and_byte_roundtrip_exactly(text: str) -> None:
    chars = Vocab.build(text, level="char")
    assert len(chars) == len(set(text))
    assert chars.decode(chars.encode(text)) == text
    byte = Vocab.build(level="byte")
    assert byte.encode(text) == list(text.encode("utf-8"))
    assert byte.decode(byte.encode(text)) == text


def test_char_vocab_rejects_unknown_characters() -> None:
    vocab = Vocab.build("abc", level="char")
    assert vocab.encode("cab") == [2, 0, 1]
    with pytest.raises(ValueError, match="'z'"):
        vocab.encode("abz")


def test_byte_vocab() -> None:
    vocab = Vocab.build(level="byte")
    assert len(vocab) == 256 and vocab.level == "byte"
    assert vocab.encode(b"\xff\x00") == [255, 0]
    assert vocab.decode([0xC3]) == "\ufffd"  # a cut UTF-8 sequence decodes with U+FFFD
    with pytest.raises(TypeError, match="byte-level"):
        Vocab.build("ab", level="char").encode(b"ab")


TEXT = "First line, with words.\nSecond: ümlaut 😀 and\ttabs\n\nlast line\n"


@pytest.mark.parametrize("level", LEVELS)
def test_vocab_save_load_and_raw_tokenizer_agree(level: str, tmp_path: Path) -> None:
    vocab = Vocab.build(TEXT, level=level)  # type: ignore[arg-type]
    written = vocab.save(tmp_path / "model")  # a model folder, created: tokenizer.json in it
    assert written == tmp_path / "model" / "tokenizer.json" and written.is_file()
    named = vocab.save(tmp_path / "named.json")  # a .json path: that file
    assert named == tmp_path / "named.json" and named.is_file()
    loaded = Vocab.load(tmp_path / "model")
    assert loaded == vocab and loaded.level == level and len(loaded) == len(vocab)
    assert Vocab.load(named) == vocab
    assert loaded.encode(TEXT) == vocab.encode(TEXT)
    # The tokenizer.json alone, through the tokenizers library, gives the same ids.
    raw = Tokenizer.from_file(str(written))
    assert raw.encode(TEXT, add_special_tokens=False).ids == vocab.encode(TEXT)


def test_word_split_matches_tokenizer_on_unicode_whitespace(tmp_path: Path) -> None:
    separators = "\t\x0b\x0c\r \x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000"
    joiners = "\x1c\x1d\x1e\x1f\u200b\ufeff\u180e"  # not White_Space: inside words
    text = "".join(f"w{i}{c}" for i, c in enumerate(separators + joiners)) + "end\n"
    vocab = Vocab.build(text, level="word")
    assert len(vocab) == len(separators) + 2  # split words, the joined run, <eos>
    raw = Tokenizer.from_file(str(vocab.save(tmp_path / "vocab.json")))
    assert raw.encode(text, add_special_tokens=False).ids == vocab.encode(text)


def test_vocab_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        Vocab.load(tmp_path / "missing.json")
    bad = write_text(tmp_path / "bad.json", "{not json")
    with pytest.raises(ValueError, match=r"not a valid tokenizer\.json"):
        Vocab.load(bad)
    foreign = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    foreign.pre_tokenizer = pre_tokenizers.Whitespace()
    foreign.save(str(tmp_path / "foreign.json"))
    with pytest.raises(ValueError, match="not in mbrnn's layout"):
        Vocab.load(tmp_path / "foreign.json")


def test_vocab_from_tokens_validates() -> None:
    assert Vocab.from_tokens(["<eos>", "a"], level="word").tokens == ("<eos>", "a")
    cases = [
        (["a", "a", "<eos>"], "word", "duplicate"),
        (["a b", "<eos>"], "word", "without whitespace"),
        (["a"], "word", "must contain '<eos>'"),
        (["ab"], "char", "single characters"),
        (["a"], "byte", "fixed"),
        (["a"], "words", "unknown level"),
    ]
    for tokens, level, message in cases:
        with pytest.raises(ValueError, match=message):
            Vocab.from_tokens(tokens, level=level)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="level must be a str"):
        Vocab.build("a", level=None)  # type: ignore[arg-type]


def test_decode_validates_ids() -> None:
    vocab = Vocab.build("abc", level="char")
    with pytest.raises(ValueError, match="id 3 is out of range for a vocabulary of 3 chars"):
        vocab.decode([0, 3])
    with pytest.raises(ValueError, match="1-D"):
        vocab.decode(torch.zeros(2, 2, dtype=torch.long))


def test_check_compatible() -> None:
    words = Vocab.build("a b\n", level="word")
    Vocab.build("a b\n", level="word").check_compatible(words)  # equal: no error
    chars = Vocab.build("xyz", level="char")
    with pytest.raises(ValueError) as info:
        words.check_compatible(chars)
    message = str(info.value)
    assert message.startswith("corpus vocabulary (3 words) does not match the model's (3 chars)")
    assert "word-level" in message and "vocab=" in message
    other = Vocab.build("a c\n", level="word")
    with pytest.raises(ValueError, match=r"id 1 is 'b' in the corpus's but 'c' in the model's"):
        words.check_compatible(other)
    with pytest.raises(TypeError):
        words.check_compatible("a")  # type: ignore[arg-type]


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


@pytest.fixture
def wikitext_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "wt"
    folder.mkdir()
    write_text(folder / "train.txt", " = Title = \n\n the cat <unk> sat \n")
    write_text(folder / "valid.txt", " the dog sat \n")
    write_text(folder / "test.txt", " cat sat \n")
    return folder


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


# -- Hugging Face datasets -----------------------------------------------------------------


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


# -- LM batching ---------------------------------------------------------------------------


ALPHABET = torch.arange(26)  # a..z as 0..25


def test_batchify_matches_the_diagram() -> None:
    batched = batchify(ALPHABET, 4)
    assert batched.shape == (6, 4) and batched.is_contiguous()
    letters = [["abcdefghijklmnopqrstuvwxyz"[i] for i in row] for row in batched.tolist()]
    assert letters == [
        list("agms"),
        list("bhnt"),
        list("ciou"),
        list("djpv"),
        list("ekqw"),
        list("flrx"),
    ]


def test_batchify_errors() -> None:
    with pytest.raises(ValueError, match="1D"):
        batchify(ALPHABET.view(2, 13), 2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batchify(ALPHABET, 0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        batchify(ALPHABET, True)
    with pytest.raises(ValueError, match="fewer than batch_size=30"):
        batchify(ALPHABET, 30)


def test_bptt_windows_match_the_diagram_and_resume() -> None:
    batched = batchify(ALPHABET, 4)  # (6, 4)
    windows = list(bptt_windows(batched, 2))
    assert [w.position for w in windows] == [0, 2, 4]
    assert [w.input.size(0) for w in windows] == [2, 2, 1]  # the last is shorter
    first = windows[0]
    assert isinstance(first, BPTTWindow) and first.next_position == 2
    assert torch.equal(first.input, batched[0:2]) and torch.equal(first.target, batched[1:3])
    assert torch.equal(windows[2].target, batched[5:6])
    resumed = list(bptt_windows(batched, 2, start=first.next_position))
    assert [w.position for w in resumed] == [2, 4]
    assert all(torch.equal(a.input, b.input) for a, b in zip(resumed, windows[1:], strict=True))
    assert list(bptt_windows(batched, 2, start=5)) == []  # at the end: nothing left


def test_bptt_windows_errors() -> None:
    batched = batchify(ALPHABET, 4)
    with pytest.raises(ValueError, match=r"start must be <= N - 1 = 5, got 6"):
        bptt_windows(batched, 2, start=6)  # raised at the call, not at first next()
    with pytest.raises(ValueError, match="bptt must be >= 1"):
        bptt_windows(batched, 0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        bptt_windows(batched[:1], 2)
    with pytest.raises(ValueError, match="2D"):
        bptt_windows(ALPHABET, 2)


@settings(max_examples=50, deadline=None)
@given(
    length=st.integers(2, 200),
    batch_size=st.integers(1, 8),
    bptt=st.integers(1, 20),
    world_size=st.sampled_from([1, 2, 4]),
)
def test_batching_properties(length: int, batch_size: int, bptt: int, world_size: int) -> None:
    ids = torch.arange(length) * 7 % 101
    if length // batch_size < 2:
        return
    batched = batchify(ids, batch_size)
    n = length // batch_size
    for b in range(batch_size):  # each column is a contiguous piece of the stream
        assert torch.equal(batched[:, b], ids[b * n : (b + 1) * n])
    windows = list(bptt_windows(batched, bptt))
    assert torch.equal(torch.cat([w.input for w in windows]), batched[:-1])
    assert torch.equal(torch.cat([w.target for w in windows]), batched[1:])
    assert all(w.input.size(0) <= bptt for w in windows)
    for w, nxt in itertools.pairwise(windows):
        assert w.next_position == nxt.position
    streams = batch_size * world_size
    wide = batchify(torch.arange(streams * 3), streams)
    shards = [shard_streams(wide, r, world_size) for r in range(world_size)]
    assert all(s.shape == (3, batch_size) and s.is_contiguous() for s in shards)
    assert torch.equal(torch.cat(shards, dim=1), wide)


def test_shard_streams_errors() -> None:
    batched = batchify(ALPHABET, 4)
    assert shard_streams(batched, 1, 2).tolist() == batched[:, 2:].tolist()
    with pytest.raises(ValueError, match="4 streams cannot be split evenly across world_size=3"):
        shard_streams(batched, 0, 3)
    with pytest.raises(ValueError, match="rank must be < world_size=2"):
        shard_streams(batched, 2, 2)


# -- IDX and WAV ---------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, type_code: int, *, compress: bool = False) -> Path:
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    data = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += big_endian.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_read_idx_roundtrip(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (False, True):
        got = read_idx(write_idx(tmp_path / f"img{compress}", images, 0x08, compress=compress))
        assert got.dtype == np.uint8 and np.array_equal(got, images) and got.flags.writeable
    ints = np.array([1, -2, 70000], dtype=np.int32)
    got = read_idx(write_idx(tmp_path / "ints", ints, 0x0C))
    assert got.dtype == np.dtype("int32") and got.dtype.isnative and got.tolist() == [1, -2, 70000]


def test_read_idx_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        read_idx(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01abcd")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    good = write_idx(tmp_path / "labels", np.arange(5, dtype=np.uint8), 0x08)
    good.write_bytes(good.read_bytes()[:-1])
    with pytest.raises(ValueError, match="holds 4 data bytes but its header"):
        read_idx(good)


def write_wav(path: Path, frames: np.ndarray, width: int, rate: int = 8000) -> Path:
    """``frames``: (T, C) integers in the sample width's range, stored as PCM."""
    if width == 1:
        raw = (frames + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in frames.ravel())
    else:
        raw = frames.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(frames.shape[1])
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(raw)
    return path


@pytest.mark.parametrize(("width", "channels"), [(1, 1), (2, 2), (3, 1), (4, 2)])
def test_read_wav(tmp_path: Path, width: int, channels: int) -> None:
    full = 2 ** (8 * width - 1)
    columns = [[-full, 0, full // 2, full - 1], [full - 1, -full // 2, 0, -full]]
    frames = np.array(columns[:channels], dtype=np.int64).T  # (T, C), extremes included
    samples, rate = read_wav(write_wav(tmp_path / "a.wav", frames, width, rate=16000))
    assert rate == 16000 and samples.dtype == np.float32 and samples.shape == (4, channels)
    np.testing.assert_allclose(samples, frames / full, rtol=0, atol=1e-7)
    assert samples.min() >= -1 and samples.max() <= 1


def test_read_wav_rejects_non_wav(tmp_path: Path) -> None:
    path = write_text(tmp_path / "fake.wav", "not audio")
    with pytest.raises(ValueError, match=r"fake\.wav is not a PCM WAV file"):
        read_wav(path)


# -- Fashion-MNIST -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_train() -> FashionMNISTSequences:
    return FashionMNISTSequences(shared("fashion-mnist"), "train")


def test_fashion_mnist_real_data(fashion_train: FashionMNISTSequences) -> None:
    assert len(fashion_train) == 60_000
    assert torch.bincount(fashion_train.labels).tolist() == [6000] * 10
    x, y = fashion_train[0]
    assert x.shape == (784, 1) and x.dtype == torch.float32 and isinstance(y, int) and 0 <= y < 10
    # MEAN and STD are the training pixels' statistics (from an exact histogram).
    counts = np.bincount(fashion_train.images.numpy().ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    mean = (counts * values).sum() / counts.sum()
    std = math.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    assert mean == pytest.approx(FashionMNISTSequences.MEAN, abs=1e-12)
    assert std == pytest.approx(FashionMNISTSequences.STD, abs=1e-12)
    raw = fashion_train.images[0].double() / 255
    assert torch.allclose(x.squeeze(-1).double(), (raw - mean) / std, atol=1e-5)


def test_fashion_mnist_test_split_unnormalized() -> None:
    test = FashionMNISTSequences(shared("fashion-mnist"), "test", normalize=False)
    assert len(test) == 10_000
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    x, _ = test[123]
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.5


@pytest.fixture
def tiny_fashion(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, 0x08, compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5, dtype=np.uint8), 0x08)
    return tmp_path


def test_fashion_mnist_permutation(tiny_fashion: Path) -> None:
    plain = FashionMNISTSequences(tiny_fashion, "test", normalize=False)
    perm = FashionMNISTSequences(tiny_fashion, "test", permute=True, seed=3, normalize=False)
    assert plain.permutation is None and perm.permutation is not None
    order = perm.permutation
    assert sorted(order.tolist()) == list(range(784)) and not torch.equal(order, torch.arange(784))
    for i in range(5):  # the same permutation for every sample
        assert torch.equal(perm[i][0], plain[i][0][order])
        assert perm[i][1] == plain[i][1] == i
    same = FashionMNISTSequences(tiny_fashion, "test", permute=True, seed=3)
    other = FashionMNISTSequences(tiny_fashion, "test", permute=True, seed=4)
    assert same.permutation is not None and other.permutation is not None
    assert torch.equal(same.permutation, order) and not torch.equal(other.permutation, order)


def test_fashion_mnist_errors(tiny_fashion: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz"):
        FashionMNISTSequences(tiny_fashion, "train")
    with pytest.raises(ValueError, match="split must be"):
        FashionMNISTSequences(tiny_fashion, "valid")  # type: ignore[arg-type]
    write_idx(tiny_fashion / "t10k-labels-idx1-ubyte", np.arange(4, dtype=np.uint8), 0x08)
    with pytest.raises(ValueError, match="5 test images but 4 labels"):
        FashionMNISTSequences(tiny_fashion, "test")


# -- SequenceFolder and collate ------------------------------------------------------------


@pytest.fixture
def sequence_root(tmp_path: Path) -> Path:
    root = tmp_path / "seqs"
    (root / "dog" / "nested").mkdir(parents=True)
    (root / "cat").mkdir()
    np.save(root / "cat" / "a.npy", np.arange(5, dtype=np.int16))  # (T,) -> (T, 1)
    np.save(root / "cat" / "b.npy", np.ones((3, 1), dtype=np.float64))
    write_wav(root / "dog" / "c.wav", np.array([[0], [16384], [-32768]]), 2)
    write_wav(root / "dog" / "nested" / "d.WAV", np.array([[64], [-128]]), 1)
    write_text(root / "dog" / "notes.txt", "ignored")
    return root


def test_sequence_folder_labels_from_subfolders(sequence_root: Path) -> None:
    data = SequenceFolder(sequence_root)
    assert data.classes == ["cat", "dog"] and data.class_to_idx == {"cat": 0, "dog": 1}
    assert [p.name for p, _ in data.samples] == ["a.npy", "b.npy", "c.wav", "d.WAV"]
    assert data.targets == [0, 0, 1, 1]
    x, y = data[0]
    assert x.shape == (5, 1) and x.dtype == torch.float32 and y == 0
    assert x.squeeze(-1).tolist() == [0, 1, 2, 3, 4]
    x, y = data[2]
    assert x.squeeze(-1).tolist() == [0.0, 0.5, -1.0] and y == 1
    with pytest.raises(FileNotFoundError, match=r"dog has no \['\.npy'\] files"):
        SequenceFolder(sequence_root, extensions=(".npy",))
    assert len(SequenceFolder(sequence_root / "dog", extensions=".wav")) == 1  # nested/d.WAV


def test_sequence_folder_labels_from_csv(sequence_root: Path, tmp_path: Path) -> None:
    names = write_text(tmp_path / "names.csv", "path,label\ncat/a.npy,meow\ndog/c.wav,bark\n")
    data = SequenceFolder(sequence_root, labels_csv=names)
    assert data.classes == ["bark", "meow"] and data.targets == [1, 0]
    ints = write_text(tmp_path / "ints.csv", "path,label\ncat/a.npy,10\ncat/b.npy,2\n")
    assert SequenceFolder(sequence_root, labels_csv=ints).targets == [10, 2]
    cases = [
        ("file,label\ncat/a.npy,1\n", ValueError, "'path' and 'label'"),
        ("path,label\ncat/zzz.npy,1\n", FileNotFoundError, r"line 2: .*zzz\.npy does not exist"),
        ("path,label\ndog/notes.txt,1\n", ValueError, r"notes\.txt is not one of"),
        ("path,label\n", ValueError, "lists no files"),
    ]
    for i, (text, error, message) in enumerate(cases):
        with pytest.raises(error, match=message):
            SequenceFolder(sequence_root, labels_csv=write_text(tmp_path / f"bad{i}.csv", text))


def test_sequence_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        SequenceFolder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        SequenceFolder(tmp_path)
    with pytest.raises(ValueError, match="extensions must be"):
        SequenceFolder(tmp_path, extensions=(".mp3",))
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"shape \(2, 2, 2\)"):
        load_sequence(tmp_path / "cube.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="empty sequence"):
        load_sequence(tmp_path / "empty.npy")


def test_collate_pads_and_packs(sequence_root: Path) -> None:
    batch = [(torch.ones(2, 3), 1), (torch.full((4, 3), 2.0), 0), (torch.ones(1, 3), 5)]
    padded, lengths, labels = collate_sequences(batch)
    assert (
        padded.shape == (4, 3, 3) and lengths.tolist() == [2, 4, 1] and labels.tolist() == [1, 0, 5]
    )
    assert padded[2:, 0].abs().sum() == 0 and torch.equal(padded[:, 1], batch[1][0])
    packed, lengths2, _ = collate_sequences(batch, packed=True)
    assert isinstance(packed, PackedSequence) and packed.sorted_indices is not None
    unpacked, unpacked_lengths = pad_packed_sequence(packed)
    assert torch.equal(unpacked, padded) and torch.equal(unpacked_lengths, lengths2)
    loader = DataLoader(
        SequenceFolder(sequence_root),
        batch_size=4,
        collate_fn=functools.partial(collate_sequences, packed=True),
    )
    seqs, lens, targets = next(iter(loader))
    assert isinstance(seqs, PackedSequence) and lens.tolist() == [5, 3, 3, 2]
    assert targets.tolist() == [0, 0, 1, 1]


def test_collate_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        collate_sequences([])
    with pytest.raises(ValueError, match=r"different feature sizes \[1, 2\]"):
        collate_sequences([(torch.ones(2, 1), 0), (torch.ones(2, 2), 1)])
    with pytest.raises(ValueError, match="non-empty"):
        collate_sequences([(torch.ones(0, 1), 0)])


def test_public_api_is_explicit() -> None:
    exported = set(mbrnn.data.__all__)
    assert exported == {name for name in vars(mbrnn.data) if not name.startswith("_")} - {
        "batching",
        "classification",
        "formats",
        "hf",
        "paths",
        "sequences",
        "text",
        "vocab",
    }
