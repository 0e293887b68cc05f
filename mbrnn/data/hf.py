"""Language-modelling corpora from the Hugging Face hub, through ``datasets``.

:func:`load_hf_corpus` calls ``datasets.load_dataset`` and hands the result to
:func:`corpus_from_hf`, which turns rows of text into a :class:`~mbrnn.data.text.Corpus`
with the same rules as :func:`~mbrnn.data.text.load_corpus`. Each row is one line: a
trailing newline is dropped and rows are joined with newlines, so word level gives one
``<eos>`` per row, as for a file. ``datasets`` is imported only when these are called.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .text import DEFAULT_FRACTIONS, Corpus, Fractions, _check_fractions, _make_corpus
from .vocab import Level, Vocab, check_level

if TYPE_CHECKING:
    import datasets

__all__ = ["HF_SPLIT_NAMES", "corpus_from_hf", "load_hf_corpus"]

# Hub split name -> Corpus split.
HF_SPLIT_NAMES = {
    "train": "train",
    "validation": "valid",
    "valid": "valid",
    "dev": "valid",
    "test": "test",
}


def _rows_to_text(rows: Sequence[Any] | Any, column: str, where: str, caller: str) -> str:
    lines: list[str] = []
    for row in rows:
        if not isinstance(row, str):
            raise TypeError(
                f"{caller}: column {column!r} of {where} must hold strings, got "
                f"{type(row).__name__}"
            )
        lines.append(row[:-1] if row.endswith("\n") else row)
    return "\n".join(lines) + "\n" if lines else ""


def _column(dataset: Any, column: str, where: str, caller: str) -> Any:
    names = getattr(dataset, "column_names", None)
    if names is None:  # a plain sequence of strings
        if isinstance(dataset, (str, bytes)) or not isinstance(dataset, Sequence):
            raise TypeError(
                f"{caller}: {where} must be a datasets.Dataset or a sequence of strings, got "
                f"{type(dataset).__name__}"
            )
        return dataset
    if column not in names:
        raise ValueError(
            f"{caller}: {where} has no column {column!r}; its columns are {names}; pass "
            f"text_column=..."
        )
    return dataset[column]


def corpus_from_hf(
    dataset: datasets.DatasetDict | datasets.Dataset | Mapping[str, Any],
    *,
    level: Level = "word",
    text_column: str = "text",
    fractions: Fractions | None = None,
    vocab: Vocab | None = None,
    source: str = "the dataset",
) -> Corpus:
    """A :class:`~mbrnn.data.text.Corpus` from a ``datasets`` dataset of text rows.

    Args:
        dataset: a ``DatasetDict`` (or mapping) whose ``train``, ``validation`` (also
            ``valid``, ``dev``) and ``test`` splits become the corpus splits, missing ones
            empty; or a single ``Dataset``, cut by ``fractions``. Plain lists of strings
            also work in place of datasets.
        level: ``"word"``, ``"char"`` or ``"byte"``.
        text_column: the column holding the text.
        fractions: ``(train, valid, test)`` for a single dataset; default
            ``(0.9, 0.05, 0.05)``.
        vocab: encode with this vocabulary instead of building one.
        source: how error messages name the dataset.
    """
    caller = "corpus_from_hf"
    level = check_level(level, caller=caller)
    if type(dataset).__name__ in ("IterableDataset", "IterableDatasetDict"):
        raise TypeError(
            f"{caller}: streaming datasets are not supported; load without streaming=True"
        )
    if isinstance(dataset, Mapping):
        if fractions is not None:
            raise ValueError(f"{caller}: fractions only applies to a single Dataset, not to splits")
        texts: dict[str, str] = {}
        sources: dict[str, str] = {}
        hf_names: dict[str, str] = {}
        ignored = []
        for hf_name, split in dataset.items():
            name = HF_SPLIT_NAMES.get(str(hf_name))
            if name is None:
                ignored.append(hf_name)
                continue
            if name in texts:
                raise ValueError(
                    f"{caller}: {source} has two validation splits ({hf_names[name]!r} and "
                    f"{hf_name!r}); keep one"
                )
            where = f"split {hf_name!r} of {source}"
            texts[name] = _rows_to_text(
                _column(split, text_column, where, caller), text_column, where, caller
            )
            sources[name] = where
            hf_names[name] = str(hf_name)
        if ignored:
            warnings.warn(
                f"{caller}: ignoring splits {ignored} of {source}; only "
                f"{sorted(HF_SPLIT_NAMES)} are used",
                stacklevel=2,
            )
        if not texts:
            raise ValueError(f"{caller}: {source} has none of the splits {sorted(HF_SPLIT_NAMES)}")
        return _make_corpus(texts, sources, level=level, vocab=vocab, fractions=None, caller=caller)
    checked = _check_fractions(fractions or DEFAULT_FRACTIONS, caller)
    text = _rows_to_text(_column(dataset, text_column, source, caller), text_column, source, caller)
    return _make_corpus(
        {"all": text}, {"all": source}, level=level, vocab=vocab, fractions=checked, caller=caller
    )


def load_hf_corpus(
    path: str,
    name: str | None = None,
    *,
    level: Level = "word",
    text_column: str = "text",
    fractions: Fractions | None = None,
    vocab: Vocab | None = None,
    revision: str | None = None,
    **load_dataset_kwargs: Any,
) -> Corpus:
    """Load a corpus with ``datasets.load_dataset(path, name, ...)``.

    Args:
        path: a hub dataset id (``"Salesforce/wikitext"``) or a local builder (``"text"``).
        name: the configuration (``"wikitext-2-raw-v1"``, ``"wikitext-103-v1"``, ...).
        level, text_column, fractions, vocab: as for :func:`corpus_from_hf`.
        revision: pin the dataset's git revision for reproducibility.
        **load_dataset_kwargs: passed on (``data_files=``, ``cache_dir=``, ``split=``, ...).

    Example::

        >>> wt2 = load_hf_corpus("Salesforce/wikitext", "wikitext-2-v1")  # doctest: +SKIP
        >>> raw = load_hf_corpus("Salesforce/wikitext", "wikitext-2-raw-v1",
        ...                      level="char")  # doctest: +SKIP

    Word level needs ``<unk>`` in the training text when valid or test have words that
    train lacks: the tokenized ``wikitext-*-v1`` configurations have it, the ``raw`` ones
    do not (use them at char or byte level).
    """
    import datasets

    level = check_level(level, caller="load_hf_corpus")
    dataset = datasets.load_dataset(path, name, revision=revision, **load_dataset_kwargs)
    source = path if name is None else f"{path} ({name})"
    return corpus_from_hf(
        dataset,
        level=level,
        text_column=text_column,
        fractions=fractions,
        vocab=vocab,
        source=source,
    )
