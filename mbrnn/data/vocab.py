"""Vocabularies for word-, character- and byte-level language modelling.

A :class:`Vocab` is a ``tokenizers.Tokenizer`` with a ``WordLevel`` model, laid out for one
of three levels, so it saves to and loads from a single ``tokenizer.json`` that ships
with a model:

- ``"word"``: whitespace-separated words, one ``<eos>`` per line, as in pytorch/examples
  ``word_language_model``; ids in order of first appearance, as its ``Dictionary`` gives.
- ``"char"``: one id per Unicode character, ids in sorted character order (as nanoGPT's
  ``shakespeare_char``).
- ``"byte"``: the 256 byte values of the UTF-8 encoding, id = byte value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

__all__ = ["EOS", "LEVELS", "UNK", "Level", "Vocab", "check_level"]

Level = Literal["word", "char", "byte"]
LEVELS: tuple[Level, ...] = ("word", "char", "byte")
EOS = "<eos>"
UNK = "<unk>"
TOKENIZER_FILE = "tokenizer.json"

_UNITS = {"word": "words", "char": "chars", "byte": "bytes"}

# NOTE [ Word splitting and the fast encode path ]
# A word is a maximal run of characters that are not Unicode White_Space. That is what the
# tokenizer's WhitespaceSplit pre-tokenizer splits on (Rust char::is_whitespace; checked
# against every code point), so the saved tokenizer.json and Vocab.encode agree. Python's
# str.split() differs only in also splitting on the separators U+001C..U+001F.
# Vocab.encode does the same split with one regex pass and a dict lookup instead of
# Tokenizer.encode_batch: on WikiText-2 train (10.8 MB) on 2 cores the regex path takes
# about 0.6 s, the batch encode 1.2-2.9 s (depending on chunking) plus 0.25 s to read the
# ids back out of its Encoding objects.
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WORD_RE = re.compile(f"[^{_WHITESPACE}]+")
_WORD_OR_NEWLINE_RE = re.compile(f"[^{_WHITESPACE}]+|\n")
_ANY_CHAR = r"[\s\S]"


def _words_and_newlines(text: str) -> list[str]:
    """The words of ``text`` with a ``"\\n"`` marker ending each line, the last included."""
    words = _WORD_OR_NEWLINE_RE.findall(text)
    if text and not text.endswith("\n"):
        words.append("\n")
    return words


def check_level(level: object, *, caller: str = "Vocab") -> Level:
    """Return ``level`` if it is one of :data:`LEVELS`, else raise."""
    if not isinstance(level, str):
        raise TypeError(f"{caller}: level must be a str, got {type(level).__name__}")
    if level not in LEVELS:
        raise ValueError(f"{caller}: unknown level {level!r}; expected one of {list(LEVELS)}")
    return cast(Level, level)


def _bytes_to_unicode() -> list[str]:
    """GPT-2's map from byte values to printable characters (tokenizers' ByteLevel)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


_BYTE_CHARS = _bytes_to_unicode()


def _make_tokenizer(tokens: Sequence[str], level: Level) -> Tokenizer:
    vocab = {t: i for i, t in enumerate(tokens)}
    if level == "word":
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        # Each newline becomes an <eos>, so the raw tokenizer matches Vocab.encode on
        # text that ends with a newline.
        tokenizer.normalizer = normalizers.Replace("\n", f" {EOS} ")
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    elif level == "char":
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(_ANY_CHAR), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
    else:
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                pre_tokenizers.Split(Regex(_ANY_CHAR), behavior="isolated"),
            ]
        )
        tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _infer_level(spec: dict[str, Any]) -> Level | None:
    model = spec.get("model") or {}
    if model.get("type") != "WordLevel":
        return None
    pre = spec.get("pre_tokenizer") or {}
    kind = pre.get("type")
    if kind == "WhitespaceSplit":
        return "word"
    if kind == "Split" and pre.get("pattern") == {"Regex": _ANY_CHAR}:
        return "char"
    if kind == "Sequence":
        parts = [p.get("type") for p in pre.get("pretokenizers", [])]
        if parts == ["ByteLevel", "Split"]:
            return "byte"
    return None


def _preview(items: Iterable[str], limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


class Vocab:
    """A token vocabulary backed by a ``tokenizers.Tokenizer`` (``WordLevel`` model).

    Build one with :meth:`build` (from text) or :meth:`from_tokens`, save it with
    :meth:`save` and get it back with :meth:`load`. The constructor wraps a tokenizer that
    is already in this layout (one made by this class).

    Word level: :meth:`encode` appends one ``<eos>`` per line, the last line included
    even without a final newline; words missing from the vocabulary map to ``<unk>`` when
    the vocabulary has it, and are an error otherwise. :meth:`decode` joins words with
    spaces and turns ``<eos>`` into a newline. Char and byte levels round-trip exactly.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` in this class's layout.

    Example::

        >>> vocab = Vocab.build("to be or\\nnot to be\\n", level="word")
        >>> vocab.encode("to be\\n")
        [0, 1, 3]
        >>> vocab.decode([0, 1, 3])
        'to be\\n'
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(
                f"Vocab: expected a tokenizers.Tokenizer, got {type(tokenizer).__name__}"
            )
        spec = json.loads(tokenizer.to_str())
        level = _infer_level(spec)
        if level is None:
            raise ValueError(
                "Vocab: the tokenizer is not in mbrnn's layout (a WordLevel model with a "
                "WhitespaceSplit, per-character Split or ByteLevel pre-tokenizer); build one "
                "with Vocab.build(...) or Vocab.from_tokens(...)"
            )
        stoi: dict[str, int] = tokenizer.get_vocab(with_added_tokens=False)
        tokens = sorted(stoi, key=stoi.__getitem__)
        if [stoi[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError("Vocab: the tokenizer's ids are not 0..size-1 without gaps")
        if level == "word" and EOS not in stoi:
            raise ValueError(f"Vocab: a word-level tokenizer must contain {EOS!r}")
        if level == "char" and any(len(t) != 1 for t in tokens):
            raise ValueError("Vocab: a char-level tokenizer must hold single characters")
        if level == "byte" and tokens != _BYTE_CHARS:
            raise ValueError("Vocab: a byte-level tokenizer must hold the 256 ByteLevel bytes")
        self._tokenizer = tokenizer
        self._level: Level = level
        self._tokens: tuple[str, ...] = tuple(tokens)
        self._stoi = stoi
        if level == "word":
            self._lookup = {**stoi, "\n": stoi[EOS]}
        elif level == "char":
            codepoints = np.array([ord(t) for t in tokens], dtype=np.uint32)
            order = np.argsort(codepoints)
            self._codepoints = codepoints[order]
            self._codepoint_ids = order.astype(np.int64)

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_tokens(cls, tokens: Sequence[str], *, level: Literal["word", "char"]) -> Vocab:
        """A vocabulary whose id ``i`` is ``tokens[i]``.

        Word tokens must be non-empty and contain no whitespace, and must include
        ``<eos>``; char tokens must be single characters. Use :meth:`build` for bytes.
        """
        checked = check_level(level, caller="Vocab.from_tokens")
        if checked == "byte":
            raise ValueError(
                "Vocab.from_tokens: the byte vocabulary is fixed; use Vocab.build(level='byte')"
            )
        tokens = list(tokens)
        if not all(isinstance(t, str) for t in tokens):
            raise TypeError("Vocab.from_tokens: tokens must be strings")
        if len(set(tokens)) != len(tokens):
            seen: set[str] = set()
            dupes = [t for t in tokens if t in seen or seen.add(t)]
            raise ValueError(f"Vocab.from_tokens: duplicate tokens {_preview(dupes)}")
        if checked == "word":
            bad = [t for t in tokens if _WORD_RE.fullmatch(t) is None]
            if bad:
                raise ValueError(
                    f"Vocab.from_tokens: word tokens must be non-empty without whitespace, "
                    f"got {_preview(bad)}"
                )
            if EOS not in tokens:
                raise ValueError(f"Vocab.from_tokens: a word vocabulary must contain {EOS!r}")
        else:
            bad = [t for t in tokens if len(t) != 1]
            if bad:
                raise ValueError(
                    f"Vocab.from_tokens: char tokens must be single characters, got {_preview(bad)}"
                )
        return cls(_make_tokenizer(tokens, checked))

    @classmethod
    def build(cls, texts: str | Iterable[str] = (), *, level: Level) -> Vocab:
        """Build the vocabulary of ``texts`` (one string or several, in order).

        Word: every word, with ``<eos>``, in order of first appearance (``<eos>`` first
        appears at the end of the first line), exactly as pytorch/examples'
        ``Dictionary``. Char: the sorted distinct characters. Byte: the fixed 256 values
        (``texts`` is ignored).
        """
        level = check_level(level, caller="Vocab.build")
        if level == "byte":
            return cls(_make_tokenizer(_BYTE_CHARS, "byte"))
        if isinstance(texts, str):
            texts = [texts]
        if level == "char":
            chars: set[str] = set()
            for text in texts:
                chars.update(text)
            if not chars:
                raise ValueError("Vocab.build: no characters to build a char vocabulary from")
            return cls.from_tokens(sorted(chars), level="char")
        return cls._from_word_streams([_words_and_newlines(text) for text in texts])

    @classmethod
    def _from_word_streams(cls, streams: Iterable[list[str]]) -> Vocab:
        # First appearance, with the newline marker standing where <eos> first appears.
        order: dict[str, None] = {}
        for words in streams:
            order.update(dict.fromkeys(words))
        if EOS in order:  # a literal "<eos>" word came first; it is the same token
            order.pop("\n", None)
        tokens = [EOS if w == "\n" else w for w in order]
        if EOS not in order and "\n" not in order:
            tokens.append(EOS)
        return cls.from_tokens(tokens, level="word")

    @classmethod
    def _fit_words(cls, text: str) -> tuple[Vocab, np.ndarray]:
        """The word vocabulary of ``text`` and ``text``'s ids, tokenizing only once."""
        words = _words_and_newlines(text)
        vocab = cls._from_word_streams([words])
        return vocab, vocab._word_ids(words)

    # -- persistence -----------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the tokenizer: to ``path`` if it ends in ``.json``, else to
        ``path/tokenizer.json`` (a model folder).

        Missing folders are created. Returns the file written.
        """
        path = Path(path)
        if path.suffix != ".json":
            path = path / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tokenizer.save(str(path))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a vocabulary written by :meth:`save` (a file, or a folder holding
        ``tokenizer.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"Vocab.load: no tokenizer file at {path}")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise ValueError(f"Vocab.load: {path} is not a valid tokenizer.json: {e}") from e
        try:
            return cls(tokenizer)
        except ValueError as e:
            raise ValueError(f"Vocab.load: {path}: {e}") from e

    # -- properties -----------------------------------------------------------------

    @property
    def level(self) -> Level:
        """``"word"``, ``"char"`` or ``"byte"``."""
        return self._level

    @property
    def tokens(self) -> tuple[str, ...]:
        """Token strings in id order (byte level: tokenizers' ByteLevel characters)."""
        return self._tokens

    @property
    def eos_id(self) -> int | None:
        """Id of ``<eos>`` (word level), else ``None``."""
        return self._stoi[EOS] if self._level == "word" else None

    @property
    def unk_id(self) -> int | None:
        """Id of ``<unk>`` when a word vocabulary holds it, else ``None``."""
        return self._stoi.get(UNK) if self._level == "word" else None

    @property
    def tokenizer(self) -> Tokenizer:
        """A copy of the underlying ``tokenizers.Tokenizer``."""
        return Tokenizer.from_str(self._tokenizer.to_str())

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and token in self._stoi

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._level == other._level and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash((self._level, self._tokens))

    def __repr__(self) -> str:
        return f"Vocab(level={self._level!r}, size={len(self)})"

    def describe(self) -> str:
        """E.g. ``"33278 words"``."""
        return f"{len(self)} {_UNITS[self._level]}"

    # -- encode / decode -------------------------------------------------------------

    def encode(self, text: str | bytes) -> list[int]:
        """Token ids of ``text`` (``bytes`` only at byte level)."""
        return self._encode_numpy(text).tolist()

    def encode_tensor(self, text: str | bytes) -> torch.Tensor:
        """Like :meth:`encode`, as a 1-D int64 tensor."""
        return torch.from_numpy(self._encode_numpy(text))

    def _encode_numpy(self, text: str | bytes) -> np.ndarray:
        if isinstance(text, bytes):
            if self._level != "byte":
                raise TypeError(
                    f"Vocab.encode: bytes input needs a byte-level vocabulary, this one is "
                    f"{self._level}-level; decode the bytes to str first"
                )
            return np.frombuffer(text, dtype=np.uint8).astype(np.int64)
        if not isinstance(text, str):
            raise TypeError(f"Vocab.encode: expected str, got {type(text).__name__}")
        if self._level == "byte":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        if self._level == "char":
            return self._encode_chars(text)
        return self._encode_words(text)

    def _encode_chars(self, text: str) -> np.ndarray:
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        pos = np.searchsorted(self._codepoints, codepoints)
        np.minimum(pos, len(self._codepoints) - 1, out=pos)
        unknown = self._codepoints[pos] != codepoints
        if unknown.any():
            missing = sorted({chr(c) for c in codepoints[unknown].tolist()})
            raise ValueError(
                f"Vocab.encode: {len(missing)} characters are not in the vocabulary "
                f"({self.describe()}): {_preview(missing)}"
            )
        return self._codepoint_ids[pos]

    def _encode_words(self, text: str) -> np.ndarray:
        return self._word_ids(_words_and_newlines(text))

    def _word_ids(self, words: list[str]) -> np.ndarray:
        try:  # the common case: every word known; map() keeps the loop in C
            return np.array(list(map(self._lookup.__getitem__, words)), dtype=np.int64)
        except KeyError:
            pass
        get = self._lookup.get
        unk = self._stoi.get(UNK)
        if unk is not None:
            return np.array([get(w, unk) for w in words], dtype=np.int64)
        missing = sorted({w for w in words if w not in self._lookup})
        raise ValueError(
            f"Vocab.encode: {len(missing)} words are not in the vocabulary "
            f"({self.describe()}), which has no {UNK!r} to map them to: {_preview(missing)}"
        )

    def decode(self, ids: Iterable[int] | torch.Tensor | np.ndarray) -> str:
        """The text of token ids ``ids`` (a 1-D tensor, array or sequence of ints).

        Byte level decodes UTF-8, replacing invalid sequences (e.g. a sample cut mid
        character) with U+FFFD.
        """
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            if ids.ndim != 1:
                raise ValueError(f"Vocab.decode: expected 1-D ids, got {ids.ndim}-D")
            ids = ids.tolist()
        id_list = [int(i) for i in ids]
        if id_list and (min(id_list) < 0 or max(id_list) >= len(self)):
            bad = next(i for i in id_list if not 0 <= i < len(self))
            raise ValueError(
                f"Vocab.decode: id {bad} is out of range for a vocabulary of {self.describe()}"
            )
        if self._level == "byte":
            return bytes(id_list).decode("utf-8", errors="replace")
        tokens = self._tokens
        if self._level == "char":
            return "".join([tokens[i] for i in id_list])
        eos = self._stoi[EOS]
        parts: list[str] = []
        line: list[str] = []
        for i in id_list:
            if i == eos:
                parts.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(tokens[i])
        parts.append(" ".join(line))
        return "".join(parts)

    # -- compatibility ---------------------------------------------------------------

    def check_compatible(self, other: Vocab, *, this: str = "corpus", that: str = "model") -> None:
        """Raise ``ValueError`` unless ``other`` maps every token to the same id.

        Args:
            other: the vocabulary to compare with (e.g. the one shipped with a model).
            this, that: names for the two in the message.

        Example::

            >>> corpus.vocab.check_compatible(model_vocab)  # doctest: +SKIP
            ValueError: corpus vocabulary (33278 words) does not match the model's (65 chars); ...
        """
        if not isinstance(other, Vocab):
            raise TypeError(f"Vocab.check_compatible: expected a Vocab, got {type(other).__name__}")
        if self == other:
            return
        head = (
            f"{this} vocabulary ({self.describe()}) does not match the {that}'s "
            f"({other.describe()})"
        )
        if self._level != other._level:
            why = f"the {this} is {self._level}-level and the {that} {other._level}-level"
        elif len(self) != len(other):
            why = f"they differ in size by {abs(len(self) - len(other))}"
        else:
            i = next(
                k
                for k, (a, b) in enumerate(zip(self._tokens, other._tokens, strict=True))
                if a != b
            )
            why = f"id {i} is {self._tokens[i]!r} in the {this}'s but {other._tokens[i]!r} in the {that}'s"
        raise ValueError(
            f"{head}; {why}. Encode the data with the {that}'s vocabulary, e.g. "
            f"load_corpus(..., level={other._level!r}, vocab=Vocab.load('tokenizer.json'))"
        )
