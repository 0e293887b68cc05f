"""Sequence-classification datasets and their collate function.

- :class:`FashionMNISTSequences`: each 28x28 image read pixel by pixel as a sequence of
  ``T = 784`` steps, optionally in a fixed random pixel order (the "permuted" task of
  Le et al., "A Simple Way to Initialize Recurrent Networks of Rectified Linear Units",
  2015). Fashion-MNIST: Xiao et al., 2017.
- :class:`SequenceFolder`: users' own long sequences, ``.npy`` arrays or ``.wav`` audio,
  labelled by sub-folder or by a CSV file.
- :func:`collate_sequences`: pads a batch of variable-length sequences (or packs it).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_sequence
from torch.utils.data import Dataset

from .formats import read_idx, read_wav
from .paths import require_dataset

__all__ = ["FashionMNISTSequences", "SequenceFolder", "collate_sequences", "load_sequence"]

PathLike = str | os.PathLike[str]
SUPPORTED_EXTENSIONS = (".npy", ".wav")


class FashionMNISTSequences(Dataset[tuple[torch.Tensor, int]]):
    """Fashion-MNIST images as pixel sequences, for sequence classification.

    Args:
        root: folder with the four IDX files (``.gz`` or not); default
            ``require_dataset("fashion-mnist")``.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        permute: read pixels in a fixed random order, the same for every image.
        seed: seed of that order (``torch.randperm`` with a generator seeded so).
        normalize: standardize pixels with the training set's mean and std
            (:attr:`MEAN`, :attr:`STD`); ``False`` gives values in ``[0, 1]``.

    Outputs:
        ``dataset[i]`` is ``(pixels, label)``: float32 ``(784, 1)`` and an int in 0..9.

    Example::

        >>> train = FashionMNISTSequences(split="train", permute=True)  # doctest: +SKIP
        >>> x, y = train[0]; x.shape  # doctest: +SKIP
        torch.Size([784, 1])
    """

    CLASSES = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    # Mean and standard deviation of the 60,000 training images' pixels, scaled to [0, 1].
    MEAN = 0.2860405969887955
    STD = 0.35302424451492254
    SEQ_LEN = 784

    def __init__(
        self,
        root: PathLike | None = None,
        split: Literal["train", "test"] = "train",
        *,
        permute: bool = False,
        seed: int = 0,
        normalize: bool = True,
    ) -> None:
        caller = "FashionMNISTSequences"
        if split not in ("train", "test"):
            raise ValueError(f"{caller}: split must be 'train' or 'test', got {split!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"{caller}: seed must be an int, got {type(seed).__name__}")
        folder = require_dataset("fashion-mnist") if root is None else Path(root)
        prefix = "train" if split == "train" else "t10k"
        images = read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte", caller))
        labels = read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte", caller))
        if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"{caller}: expected uint8 images (N, 28, 28) and labels (N,) in {folder}, got "
                f"{images.dtype} {images.shape} and {labels.shape}"
            )
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{caller}: {folder} has {images.shape[0]} {split} images but "
                f"{labels.shape[0]} labels"
            )
        pixels = torch.from_numpy(images.reshape(images.shape[0], -1))  # (N, 784) uint8
        self.permutation: torch.Tensor | None = None
        if permute:
            generator = torch.Generator().manual_seed(seed)
            self.permutation = torch.randperm(pixels.size(1), generator=generator)
            pixels = pixels[:, self.permutation]
        self.images = pixels
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.split = split
        self.normalize = normalize

    def __len__(self) -> int:
        return self.images.size(0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].to(torch.float32).div_(255.0)
        if self.normalize:
            x.sub_(self.MEAN).div_(self.STD)
        return x.unsqueeze(-1), int(self.labels[index])  # (784, 1)


def _find_idx(folder: Path, stem: str, caller: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{caller}: neither {folder / stem}.gz nor {folder / stem} exists; point root at "
        f"the Fashion-MNIST folder or set MBRNN_DATA"
    )


def load_sequence(path: PathLike) -> torch.Tensor:
    """One sequence as float32 ``(T, F)``: ``.npy`` of shape ``(T,)`` or ``(T, F)``, or
    ``.wav`` as ``(T, channels)`` in ``[-1, 1]``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".wav":
        samples, _ = read_wav(path)
    elif suffix == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"load_sequence: {path} does not exist")
        samples = np.load(path, allow_pickle=False)
        if samples.dtype.kind not in "biuf":
            raise ValueError(
                f"load_sequence: {path} holds {samples.dtype} values, expected numbers"
            )
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.ndim != 2:
            raise ValueError(
                f"load_sequence: {path} has shape {samples.shape}; expected (T,) or (T, F)"
            )
    else:
        raise ValueError(f"load_sequence: {path} is not one of {list(SUPPORTED_EXTENSIONS)}")
    if samples.shape[0] == 0:
        raise ValueError(f"load_sequence: {path} is an empty sequence (T = 0)")
    return torch.from_numpy(np.array(samples, dtype=np.float32))  # (T, F), own writable copy


class SequenceFolder(Dataset[tuple[torch.Tensor, int]]):
    """Labelled sequences from files: ``.npy`` arrays and ``.wav`` audio.

    Labels come from sub-folders (``root/<class>/**/<file>``, classes in sorted order
    give labels 0, 1, ...) or from ``labels_csv``, a CSV with ``path`` and ``label``
    columns, paths relative to ``root``. CSV labels that are all integers are used as
    they are; other labels are class names, numbered in sorted order.

    Args:
        root: the folder holding the files.
        labels_csv: the CSV of labels, if not labelling by sub-folder.
        extensions: file types to use, from ``(".npy", ".wav")``.
        transform: applied to each ``(T, F)`` sequence.

    Outputs:
        ``dataset[i]`` is ``(sequence, label)``: float32 ``(T, F)`` and an int.
        Batch them with :func:`collate_sequences`.

    Example::

        >>> data = SequenceFolder("recordings/")  # recordings/{cat,dog}/*.wav  # doctest: +SKIP
        >>> loader = DataLoader(data, batch_size=8, collate_fn=collate_sequences)  # doctest: +SKIP
    """

    def __init__(
        self,
        root: PathLike,
        *,
        labels_csv: PathLike | None = None,
        extensions: Sequence[str] = SUPPORTED_EXTENSIONS,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        caller = "SequenceFolder"
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{caller}: {self.root} is not a folder")
        if isinstance(extensions, str):
            extensions = (extensions,)
        self.extensions = tuple(e.lower() for e in extensions)
        bad = [e for e in self.extensions if e not in SUPPORTED_EXTENSIONS]
        if bad or not self.extensions:
            raise ValueError(
                f"{caller}: extensions must be some of {list(SUPPORTED_EXTENSIONS)}, got "
                f"{list(extensions)}"
            )
        self.transform = transform
        if labels_csv is None:
            self.classes, self.samples = self._from_folders(caller)
        else:
            self.classes, self.samples = self._from_csv(Path(labels_csv), caller)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.targets = [label for _, label in self.samples]

    def _from_folders(self, caller: str) -> tuple[list[str], list[tuple[Path, int]]]:
        classes = sorted(
            d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        if not classes:
            raise FileNotFoundError(
                f"{caller}: {self.root} has no class sub-folders; put files in "
                f"root/<class>/ or pass labels_csv="
            )
        samples: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            files = sorted(
                p
                for p in (self.root / name).rglob("*")
                if p.is_file() and p.suffix.lower() in self.extensions
            )
            if not files:
                raise FileNotFoundError(
                    f"{caller}: class folder {self.root / name} has no {list(self.extensions)} files"
                )
            samples += [(p, label) for p in files]
        return classes, samples

    def _from_csv(self, path: Path, caller: str) -> tuple[list[str], list[tuple[Path, int]]]:
        if not path.is_file():
            raise FileNotFoundError(f"{caller}: labels_csv {path} does not exist")
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
                raise ValueError(
                    f"{caller}: {path} needs a header with 'path' and 'label' columns, got "
                    f"{reader.fieldnames}"
                )
            rows = [(row["path"], row["label"].strip(), reader.line_num) for row in reader]
        if not rows:
            raise ValueError(f"{caller}: {path} lists no files")
        files: list[Path] = []
        for name, _, line in rows:
            file = self.root / name
            if file.suffix.lower() not in self.extensions:
                raise ValueError(
                    f"{caller}: {path} line {line}: {name} is not one of {list(self.extensions)}"
                )
            if not file.is_file():
                raise FileNotFoundError(f"{caller}: {path} line {line}: {file} does not exist")
            files.append(file)
        labels = [label for _, label, _ in rows]
        if all(_is_int(label) for label in labels):
            values = [int(label) for label in labels]
            if min(values) < 0:
                raise ValueError(f"{caller}: {path} has negative labels; labels must be >= 0")
            classes = [str(v) for v in range(max(values) + 1)]
        else:
            classes = sorted(set(labels))
            index = {c: i for i, c in enumerate(classes)}
            values = [index[label] for label in labels]
        return classes, list(zip(files, values, strict=True))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        sequence = load_sequence(path)  # (T, F)
        if self.transform is not None:
            sequence = self.transform(sequence)
        return sequence, label


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


@overload
def collate_sequences(
    batch: Sequence[tuple[torch.Tensor, int]],
    *,
    packed: Literal[False] = False,
    padding_value: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
@overload
def collate_sequences(
    batch: Sequence[tuple[torch.Tensor, int]],
    *,
    packed: Literal[True],
    padding_value: float = 0.0,
) -> tuple[PackedSequence, torch.Tensor, torch.Tensor]: ...
def collate_sequences(
    batch: Sequence[tuple[torch.Tensor, int]],
    *,
    packed: bool = False,
    padding_value: float = 0.0,
) -> tuple[torch.Tensor | PackedSequence, torch.Tensor, torch.Tensor]:
    """Batch variable-length ``(sequence (T_i, F), label)`` pairs, time-major.

    Args:
        batch: the pairs, e.g. from :class:`SequenceFolder`; 1-D sequences count as F = 1.
        packed: return a ``PackedSequence`` (``enforce_sorted=False``) instead of the
            padded tensor; use ``functools.partial(collate_sequences, packed=True)`` as a
            ``DataLoader``'s ``collate_fn``.
        padding_value: fills the steps past each sequence's end.

    Outputs:
        ``(padded (T_max, B, F), lengths (B,) int64, labels (B,) int64)``, or the
        ``PackedSequence`` in place of ``padded`` when ``packed=True``.
    """
    caller = "collate_sequences"
    if len(batch) == 0:
        raise ValueError(f"{caller}: the batch is empty")
    sequences: list[torch.Tensor] = []
    labels: list[int] = []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"{caller}: item {i} must be a (sequence, label) pair")
        sequence, label = item
        if not isinstance(sequence, torch.Tensor):
            raise TypeError(
                f"{caller}: item {i}'s sequence must be a tensor, got {type(sequence).__name__}"
            )
        if sequence.ndim == 1:
            sequence = sequence.unsqueeze(-1)
        if sequence.ndim != 2 or sequence.size(0) == 0:
            raise ValueError(
                f"{caller}: item {i}: expected a non-empty (T, F) sequence, got shape "
                f"{tuple(sequence.shape)}"
            )
        sequences.append(sequence)
        labels.append(int(label))
    features = {s.size(1) for s in sequences}
    if len(features) > 1:
        raise ValueError(f"{caller}: sequences have different feature sizes {sorted(features)}")
    lengths = torch.tensor([s.size(0) for s in sequences], dtype=torch.int64)
    padded = pad_sequence(sequences, padding_value=padding_value)  # (T_max, B, F)
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    if packed:
        return pack_padded_sequence(padded, lengths, enforce_sorted=False), lengths, label_tensor
    return padded, lengths, label_tensor
