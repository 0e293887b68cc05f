"""mbrnn.data.vocab: word, char and byte vocabularies, saved as a tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data_helpers import LEVELS, normalize_words, write_text
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers

from mbrnn.data import Vocab


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
