"""Language-modelling corpora from local text files.

A :class:`Corpus` holds the ``train`` / ``valid`` / ``test`` token streams of one corpus
as 1-D int64 tensors, and the :class:`~mbrnn.data.vocab.Vocab` that encodes them.
:func:`load_corpus` reads the layouts in common use:

- a folder with ``train.txt``, ``valid.txt``, ``test.txt`` (WikiText as pytorch/examples
  ships it) or ``<name>.train.txt`` etc. (Mikolov's PTB; ``.tokens`` also accepted, as in
  the original WikiText archives);
- explicit paths per split;
- one text file cut into train / valid / test by fractions (Tiny Shakespeare: the first
  90 % for training and the last 10 % for validation, ``fractions=(0.9, 0.1, 0.0)``).

WikiText: Merity et al., "Pointer Sentinel Mixture Models", 2016. PTB: Mikolov et al.,
"Recurrent neural network based language model", 2010.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .vocab import UNK, Level, Vocab, check_level

__all__ = ["DEFAULT_FRACTIONS", "SPLITS", "Corpus", "corpus_from_texts", "load_corpus"]

SPLITS = ("train", "valid", "test")
DEFAULT_FRACTIONS = (0.9, 0.05, 0.05)
_LAYOUT_SUFFIXES = (".txt", ".tokens")

PathLike = str | os.PathLike[str]
Fractions = tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class Corpus:
    """Token streams of a corpus and the vocabulary that encodes them.

    Attributes:
        train, valid, test: 1-D int64 tensors of token ids; ``valid`` and ``test`` may be
            empty (e.g. a 90/10 split has no test tokens).
        vocab: the :class:`~mbrnn.data.vocab.Vocab`; ``vocab.decode(corpus.train[:100])``.
    """

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: Vocab

    def __post_init__(self) -> None:
        for name in SPLITS:
            ids = getattr(self, name)
            if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64 or ids.ndim != 1:
                raise TypeError(f"Corpus: {name} must be a 1-D int64 tensor")
        if not isinstance(self.vocab, Vocab):
            raise TypeError(f"Corpus: vocab must be a Vocab, got {type(self.vocab).__name__}")

    @property
    def level(self) -> Level:
        return self.vocab.level

    def split(self, name: str) -> torch.Tensor:
        """The tensor of split ``name`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"Corpus.split: unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={getattr(self, name).numel()}" for name in SPLITS)
        return f"Corpus(level={self.level!r}, vocab={len(self.vocab)}, {sizes})"


def _check_fractions(fractions: object, caller: str) -> Fractions:
    hint = "three numbers >= 0 summing to 1 with train > 0, e.g. (0.9, 0.1, 0.0)"
    if not isinstance(fractions, (tuple, list)) or len(fractions) != 3:
        raise ValueError(
            f"{caller}: fractions must be (train, valid, test), {hint}; got {fractions!r}"
        )
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)):
            raise TypeError(f"{caller}: fractions must be numbers, got {fractions!r}")
    train, valid, test = (float(f) for f in fractions)
    if not all(math.isfinite(f) and f >= 0 for f in (train, valid, test)) or train <= 0:
        raise ValueError(f"{caller}: fractions must be {hint}; got {fractions!r}")
    if abs(train + valid + test - 1.0) > 1e-6:
        raise ValueError(
            f"{caller}: fractions must sum to 1, got {fractions!r} (sum {train + valid + test:g})"
        )
    return train, valid, test


def _split_by_fractions(
    ids: torch.Tensor, fractions: Fractions, source: str, caller: str
) -> dict[str, torch.Tensor]:
    n = ids.numel()
    train_f, valid_f, test_f = fractions
    end_train = int(n * train_f)
    end_valid = (
        end_train if valid_f == 0 else (n if test_f == 0 else max(end_train, n - int(n * test_f)))
    )
    parts = {"train": ids[:end_train], "valid": ids[end_train:end_valid], "test": ids[end_valid:]}
    for name, f in zip(SPLITS, fractions, strict=True):
        if f > 0 and parts[name].numel() == 0:
            raise ValueError(
                f"{caller}: {source} has {n} tokens, too few for fractions {fractions}: the "
                f"{name} split is empty; use a larger text or set its fraction to 0"
            )
    return {name: part.clone() for name, part in parts.items()}


def _encode(
    vocab: Vocab, text: str | bytes, what: str, *, given: bool, caller: str
) -> torch.Tensor:
    try:
        ids = vocab.encode_tensor(text)
    except ValueError as e:
        whose = "the given" if given else "the training"
        hint = ""
        if vocab.level == "word" and not given:
            hint = (
                f"; words seen only outside train need {UNK!r} in the training text (as "
                f"tokenized WikiText and PTB have), or use level='char' or 'byte'"
            )
        raise ValueError(
            f"{caller}: cannot encode {what} with {whose} vocabulary: {e}{hint}"
        ) from e
    return ids


def _make_corpus(
    texts: Mapping[str, str | bytes],
    sources: Mapping[str, str],
    *,
    level: Level,
    vocab: Vocab | None,
    fractions: Fractions | None,
    caller: str,
) -> Corpus:
    """The shared core: ``texts`` holds either one ``"all"`` text (split by fractions)
    or some of the named splits (missing ones are empty)."""
    if vocab is not None and vocab.level != level:
        raise ValueError(
            f"{caller}: level={level!r} but the given vocab is {vocab.level}-level; pass "
            f"level={vocab.level!r}"
        )
    given = vocab is not None
    whole = "all" in texts
    if not whole and vocab is None and "train" not in texts:
        raise ValueError(f"{caller}: a train split is needed to build the vocabulary")
    fit_name = "all" if whole else "train"
    encoded: dict[str, torch.Tensor] = {}
    if vocab is None:
        if level == "word":  # from the training text, tokenized once for both jobs
            vocab, ids = Vocab._fit_words(_as_str(texts[fit_name]))
            encoded[fit_name] = torch.from_numpy(ids)
        elif level == "char":  # every character of the corpus: there is no <unk> character
            vocab = Vocab.build([_as_str(t) for t in texts.values()], level="char")
        else:
            vocab = Vocab.build(level="byte")
    for name, text in texts.items():
        what = sources[name] if whole else f"the {name} split ({sources[name]})"
        ids = encoded.get(name)
        encoded[name] = (
            _encode(vocab, text, what, given=given, caller=caller) if ids is None else ids
        )
        if encoded[name].numel() == 0:
            raise ValueError(f"{caller}: {what} has no tokens")
    if whole:
        parts = _split_by_fractions(
            encoded["all"], fractions or DEFAULT_FRACTIONS, sources["all"], caller
        )
    else:
        parts = {
            name: encoded[name] if name in encoded else torch.empty(0, dtype=torch.int64)
            for name in SPLITS
        }
    return Corpus(vocab=vocab, **parts)


def _as_str(text: str | bytes) -> str:
    return text if isinstance(text, str) else text.decode("utf-8", errors="replace")


def corpus_from_texts(
    texts: str | Mapping[str, str],
    *,
    level: Level = "word",
    fractions: Fractions | None = None,
    vocab: Vocab | None = None,
) -> Corpus:
    """A :class:`Corpus` from text in memory.

    Args:
        texts: one text, cut by ``fractions``; or a mapping from split names
            (``"train"``, ``"valid"``, ``"test"``) to texts, where missing splits are empty.
        level: ``"word"``, ``"char"`` or ``"byte"``.
        fractions: ``(train, valid, test)`` for a single text; default ``(0.9, 0.05, 0.05)``.
        vocab: encode with this vocabulary instead of building one.
    """
    caller = "corpus_from_texts"
    level = check_level(level, caller=caller)
    if isinstance(texts, str):
        checked = _check_fractions(fractions or DEFAULT_FRACTIONS, caller)
        return _make_corpus(
            {"all": texts},
            {"all": "the text"},
            level=level,
            vocab=vocab,
            fractions=checked,
            caller=caller,
        )
    if not isinstance(texts, Mapping):
        raise TypeError(f"{caller}: texts must be a str or a mapping, got {type(texts).__name__}")
    _check_split_names(texts, caller)
    if fractions is not None:
        raise ValueError(f"{caller}: fractions only applies to a single text, not to named splits")
    for name, text in texts.items():
        if not isinstance(text, str):
            raise TypeError(f"{caller}: the {name} text must be a str, got {type(text).__name__}")
    return _make_corpus(
        texts,
        {s: f"the {s} text" for s in texts},
        level=level,
        vocab=vocab,
        fractions=None,
        caller=caller,
    )


def _check_split_names(splits: Mapping[str, object], caller: str) -> None:
    unknown = [k for k in splits if k not in SPLITS]
    if unknown:
        raise ValueError(
            f"{caller}: unknown split names {unknown}; expected some of {list(SPLITS)}"
        )
    if not splits:
        raise ValueError(f"{caller}: no splits given")


def _find_layout(folder: Path, caller: str) -> dict[str, Path]:
    """The split files of a WikiText- or PTB-style folder."""
    found: list[dict[str, Path]] = []
    if (folder / "train.txt").is_file():
        found.append({s: folder / f"{s}.txt" for s in SPLITS})
    for suffix in _LAYOUT_SUFFIXES:
        for train in sorted(folder.glob(f"*.train{suffix}")):
            prefix = train.name[: -len(f".train{suffix}")]
            found.append({s: folder / f"{prefix}.{s}{suffix}" for s in SPLITS})
    if not found:
        raise FileNotFoundError(
            f"{caller}: no corpus in {folder}: looked for train.txt, valid.txt, test.txt "
            f"(WikiText style) or NAME.train.txt, NAME.valid.txt, NAME.test.txt (PTB style); "
            f"pass splits={{'train': ..., ...}} for other names"
        )
    if len(found) > 1:
        names = ", ".join(layout["train"].name for layout in found)
        raise ValueError(
            f"{caller}: {folder} holds several corpora ({names}); pass the files with "
            f"splits={{'train': ..., 'valid': ..., 'test': ...}}"
        )
    layout = found[0]
    missing = [str(p) for p in layout.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{caller}: {folder} has {layout['train'].name} but not {', '.join(missing)}; "
            f"pass splits={{...}} with the files you have to load a corpus without them"
        )
    return layout


def _read(path: Path, split: str, level: Level, encoding: str, caller: str) -> str | bytes:
    if not path.is_file():
        raise FileNotFoundError(f"{caller}: the {split} file {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{caller}: the {split} file {path} is empty")
    if level == "byte":
        return path.read_bytes()
    # Text mode turns \r\n and \r into \n, as iterating over the file does in pytorch/examples.
    return path.read_text(encoding=encoding)


def load_corpus(
    path_or_dir: PathLike | None = None,
    *,
    level: Level = "word",
    splits: Mapping[str, PathLike] | None = None,
    fractions: Fractions | None = None,
    vocab: Vocab | None = None,
    encoding: str = "utf-8",
) -> Corpus:
    """Load a text corpus from local files.

    Args:
        path_or_dir: a folder in WikiText style (``train.txt``, ``valid.txt``,
            ``test.txt``) or PTB style (``ptb.train.txt``, ...), or a single text file to
            cut by ``fractions``; with ``splits``, the folder relative paths start from.
        level: ``"word"`` (whitespace split, one ``<eos>`` per line), ``"char"`` or
            ``"byte"`` (the file's raw bytes).
        splits: explicit files, ``{"train": path, "valid": path, "test": path}``; missing
            splits are empty.
        fractions: ``(train, valid, test)`` shares of a single file's tokens, taken in
            order; default ``(0.9, 0.05, 0.05)``. A share of 0 gives an empty split.
        vocab: encode with this vocabulary (e.g. a model's) instead of building one.
        encoding: text encoding of the files (not used at byte level).

    Vocabulary: word level, from the train split, and words only in valid or test map to
    ``<unk>`` (an error when the vocabulary has no ``<unk>``); char level, every
    character of the corpus; byte level, the fixed 256 bytes. A single file's vocabulary
    comes from the whole file.

    Outputs:
        A :class:`Corpus`.

    Example::

        >>> wt2 = load_corpus(require_dataset("wikitext-2"))  # doctest: +SKIP
        >>> wt2.train.shape, len(wt2.vocab)  # doctest: +SKIP
        (torch.Size([2088628]), 33278)
        >>> shakespeare = load_corpus(require_dataset("tinyshakespeare") / "input.txt",
        ...                           level="char", fractions=(0.9, 0.1, 0.0))  # doctest: +SKIP
    """
    caller = "load_corpus"
    level = check_level(level, caller=caller)
    if splits is not None:
        if not isinstance(splits, Mapping):
            raise TypeError(f"{caller}: splits must be a mapping, got {type(splits).__name__}")
        _check_split_names(splits, caller)
        if fractions is not None:
            raise ValueError(f"{caller}: fractions only applies to a single file, not to splits")
        base = Path(path_or_dir) if path_or_dir is not None else Path()
        files = {name: base / Path(p) for name, p in splits.items()}
    elif path_or_dir is None:
        raise ValueError(f"{caller}: give a file or folder, or splits={{'train': path, ...}}")
    else:
        path = Path(path_or_dir)
        if path.is_dir():
            if fractions is not None:
                raise ValueError(
                    f"{caller}: fractions only applies to a single file; {path} is a folder "
                    f"with its own splits"
                )
            files = _find_layout(path, caller)
        elif path.is_file():
            checked = _check_fractions(fractions or DEFAULT_FRACTIONS, caller)
            text = _read(path, "text", level, encoding, caller)
            return _make_corpus(
                {"all": text},
                {"all": str(path)},
                level=level,
                vocab=vocab,
                fractions=checked,
                caller=caller,
            )
        else:
            raise FileNotFoundError(f"{caller}: {path} does not exist")
    texts = {name: _read(p, name, level, encoding, caller) for name, p in files.items()}
    return _make_corpus(
        texts,
        {n: str(p) for n, p in files.items()},
        level=level,
        vocab=vocab,
        fractions=None,
        caller=caller,
    )
