"""Train, validation and test splits for sequence classification.

Two kinds of data, told apart by what the folder holds (:func:`load_classification`):

- Fashion-MNIST IDX files (:func:`load_images`): each image a sequence of
  ``784 / pixels_per_step`` steps, validation held out from the end of the training file.
- A folder of ``.npy``/``.wav`` sequences (:func:`load_folder`), labelled by sub-folder or
  by a CSV file, with optional ``valid/`` and ``test/`` folders; batches are packed, so
  sequences of different lengths share a batch.

Every loader takes its options as arguments and raises :class:`ValueError` or
:class:`FileNotFoundError` with a message that names the folder and the fix.

Example::

    >>> train = load_classification(require_dataset("fashion-mnist"), "train",
    ...                             valid_size=5000, pixels_per_step=28)  # doctest: +SKIP
    >>> x, y = train.batch(torch.arange(32)); x.shape  # doctest: +SKIP
    torch.Size([28, 32, 28])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .sequences import FashionMNISTSequences, SequenceFolder, collate_sequences

__all__ = ["ClassifyData", "FolderData", "ImageData", "load_classification", "load_folder",
           "load_images"]

PathLike = str | os.PathLike[str]
#: Pixels in one Fashion-MNIST image (28 x 28).
IMAGE_PIXELS = 784
_SPLITS = ("train", "valid", "test")


@dataclass
class ImageData:
    """Fashion-MNIST pixel sequences: one uint8 tensor (N, 784) and labels (N,)."""

    images: Tensor
    labels: Tensor
    mean: float
    std: float
    pixels_per_step: int = 1

    @property
    def input_size(self) -> int:
        return self.pixels_per_step

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def seq_len(self) -> int:
        return self.images.shape[1] // self.pixels_per_step

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The sequences ``index``, standardized: ``(T, B, pixels_per_step)`` and labels ``(B,)``."""
        x = self.images[index].float().div_(255.0).sub_(self.mean).div_(self.std)  # (B, 784)
        x = x.view(x.shape[0], -1, self.pixels_per_step).transpose(0, 1).contiguous()  # (T, B, F)
        return x, self.labels[index]


@dataclass
class FolderData:
    """Some of a :class:`~mbrnn.data.SequenceFolder`'s files; batches are packed, so each
    sequence is classified from its own last step."""

    folder: SequenceFolder
    indices: Tensor  # into folder
    labels: Tensor  # of those files

    @property
    def input_size(self) -> int:
        return int(self.folder[int(self.indices[0])][0].shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.folder.classes)

    @property
    def seq_len(self) -> int:
        """The first sequence's length (the budget check's length; others may differ)."""
        return int(self.folder[int(self.indices[0])][0].shape[0])

    def batch(self, index: Tensor) -> tuple[PackedSequence, Tensor]:
        """The sequences ``index`` as one :class:`PackedSequence`, and their labels ``(B,)``."""
        items = [self.folder[int(self.indices[i])] for i in index]
        x, _, y = collate_sequences(items, packed=True)
        return x, y


ClassifyData = ImageData | FolderData


def _is_idx_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("train-images-idx3-ubyte*"))


def _check(caller: str, split: str, valid_size: int) -> None:
    if split not in _SPLITS:
        raise ValueError(f"{caller}: split must be one of {_SPLITS}, got {split!r}")
    if isinstance(valid_size, bool) or not isinstance(valid_size, int) or valid_size < 0:
        raise ValueError(f"{caller}: valid_size must be an int >= 0, got {valid_size!r}")


def _cannot_load(what: str, path: Path, e: Exception) -> Exception:
    """``e`` with the data it was loading named; a missing file stays a FileNotFoundError."""
    kind = FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError
    return kind(f"cannot load {what} from {path}: {e}")


def load_images(path: PathLike, split: str, *, valid_size: int = 5000, pixels_per_step: int = 1,
                permute: bool = False) -> ImageData:
    """A split of Fashion-MNIST as pixel sequences of ``784 / pixels_per_step`` steps.

    Args:
        path: the folder with the four IDX files (``.gz`` or not).
        split: ``"train"`` (the training file minus its last ``valid_size`` images),
            ``"valid"`` (those images) or ``"test"`` (the test file).
        valid_size: images held out for validation (at most half the training file).
        pixels_per_step: pixels read per step; must divide 784.
        permute: read the pixels in one fixed random order (the permuted task).

    Raises:
        FileNotFoundError: an IDX file is missing.
        ValueError: a bad argument or an unreadable file.
    """
    path = Path(path)
    _check("load_images", split, valid_size)
    if isinstance(pixels_per_step, bool) or not isinstance(pixels_per_step, int) \
            or pixels_per_step < 1 or IMAGE_PIXELS % pixels_per_step:
        raise ValueError(f"pixels_per_step={pixels_per_step} must divide {IMAGE_PIXELS}")
    try:
        ds = FashionMNISTSequences(path, split="test" if split == "test" else "train",
                                   permute=permute)
    except (OSError, ValueError) as e:
        raise _cannot_load("Fashion-MNIST", path, e) from e
    images, labels = ds.images, ds.labels
    n_valid = min(valid_size, images.shape[0] // 2)
    if split == "train":
        images, labels = images[: images.shape[0] - n_valid], labels[: labels.shape[0] - n_valid]
    elif split == "valid":
        images, labels = images[images.shape[0] - n_valid:], labels[labels.shape[0] - n_valid:]
    return ImageData(images, labels, FashionMNISTSequences.MEAN, FashionMNISTSequences.STD,
                     pixels_per_step)


def load_folder(path: PathLike, split: str, *, valid_size: int = 5000,
                labels_csv: PathLike | None = None) -> FolderData:
    """A split of a folder of ``.npy``/``.wav`` sequences (:class:`~mbrnn.data.SequenceFolder`).

    Layouts: ``path/{train,valid,test}/<class>/<file>`` (``valid`` and ``test`` optional),
    or ``path/<class>/<file>`` (or ``path/`` with ``labels_csv``) for training alone. Where
    there is no ``valid`` folder, the last ``valid_size`` files (at most a tenth) of a fixed
    shuffle of the training files are held out for validation.

    Args:
        path: the data folder.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        valid_size: files held out for validation where there is no ``valid/`` folder.
        labels_csv: a CSV of ``path,label`` rows labelling a single folder of files.

    Raises:
        FileNotFoundError: a missing folder or file, or no ``test/`` folder for ``"test"``.
        ValueError: a bad argument, layout or file.
    """
    path = Path(path)
    _check("load_folder", split, valid_size)
    split_dirs = (path / "train").is_dir()
    if split_dirs and labels_csv:
        raise ValueError(f"labels_csv={str(labels_csv)!r} needs a single folder of files, but "
                         f"{path} has a train/ folder; label by sub-folder or drop train/")
    if split == "test":
        if not (split_dirs and (path / "test").is_dir()):
            raise FileNotFoundError(f"{path} has no test/ folder to evaluate on; lay the data "
                                    "out as train/ and test/ folders of class sub-folders")
        root = path / "test"
    elif split == "valid" and split_dirs and (path / "valid").is_dir():
        root = path / "valid"
    else:
        root = path / "train" if split_dirs else path
    held_out = root == path or root == path / "train"  # train and valid share these files
    try:
        folder = SequenceFolder(root, labels_csv=Path(labels_csv) if labels_csv else None)
        if split_dirs and split != "train":
            classes = SequenceFolder(path / "train").classes
            if folder.classes != classes:
                raise ValueError(f"{root} has classes {folder.classes}, train/ has {classes}; "
                                 "every split needs the same class folders")
    except (OSError, ValueError) as e:
        raise _cannot_load("sequences", path, e) from e
    indices = torch.arange(len(folder))
    if held_out and not (split_dirs and (path / "valid").is_dir()):
        order = torch.randperm(len(folder), generator=torch.Generator().manual_seed(0))
        n_valid = min(valid_size, len(folder) // 10)
        if n_valid < 1:
            raise ValueError(f"{root} has {len(folder)} files: too few to hold out validation "
                             "files; add a valid/ folder")
        indices = order[-n_valid:] if split == "valid" else order[:-n_valid]
    labels = torch.tensor([folder.targets[int(i)] for i in indices], dtype=torch.long)
    return FolderData(folder, indices, labels)


def load_classification(path: PathLike, split: str, *, valid_size: int = 5000,
                        pixels_per_step: int = 1, permute: bool = False,
                        labels_csv: PathLike | None = None) -> ClassifyData:
    """A split of classification data: :func:`load_images` for a folder of Fashion-MNIST
    IDX files, else :func:`load_folder` (``pixels_per_step`` and ``permute`` apply to the
    first, ``labels_csv`` to the second)."""
    if _is_idx_folder(Path(path)):
        return load_images(path, split, valid_size=valid_size, pixels_per_step=pixels_per_step,
                           permute=permute)
    return load_folder(path, split, valid_size=valid_size, labels_csv=labels_csv)
