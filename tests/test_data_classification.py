"""mbrnn.data.classification: train/valid/test splits of Fashion-MNIST and of sequence folders,
from explicit arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence
from training_helpers import write_fashion, write_sequences

from mbrnn.data import (
    FashionMNISTSequences,
    FolderData,
    ImageData,
    load_classification,
    load_folder,
    load_images,
)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fashion(tmp_path_factory.mktemp("fashion"))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("recordings")
    rng = np.random.default_rng(0)
    write_sequences(data / "train", 12, rng)
    write_sequences(data / "test", 4, rng)
    return data


def test_permute_reads_fashion_pixels_in_one_fixed_order(images: Path) -> None:
    """permute=True feeds every image's pixels in the same fixed, non-identity order."""
    plain = load_images(images, "train", valid_size=8)
    permuted = load_images(images, "train", valid_size=8, permute=True)
    order = FashionMNISTSequences(images, split="train", permute=True).permutation
    assert order is not None and not torch.equal(order, torch.arange(784))
    assert torch.equal(permuted.images, plain.images[:, order])
    assert not torch.equal(permuted.images, plain.images)


def test_fashion_splits_and_batches(images: Path) -> None:
    train = load_images(images, "train", valid_size=8, pixels_per_step=28)
    valid = load_images(images, "valid", valid_size=8, pixels_per_step=28)
    test = load_classification(images, "test", valid_size=8, pixels_per_step=28)
    assert isinstance(test, ImageData)
    assert (train.labels.numel(), valid.labels.numel(), test.labels.numel()) == (40, 8, 16)
    assert torch.equal(torch.cat([train.images, valid.images]),
                       FashionMNISTSequences(images, split="train").images)
    assert (train.seq_len, train.input_size, train.num_classes) == (28, 28, 10)
    x, y = train.batch(torch.arange(5))
    assert x.shape == (28, 5, 28) and torch.equal(y, train.labels[:5])
    assert load_images(images, "valid", valid_size=1000).labels.numel() == 24  # at most half


def test_folder_splits_hold_out_a_tenth(recordings: Path) -> None:
    train = load_folder(recordings, "train", valid_size=6)
    valid = load_classification(recordings, "valid", valid_size=6)
    test = load_folder(recordings, "test")
    assert isinstance(valid, FolderData)
    assert (train.labels.numel(), valid.labels.numel(), test.labels.numel()) == (33, 3, 12)
    assert not set(train.indices.tolist()) & set(valid.indices.tolist())
    assert (train.input_size, train.num_classes) == (3, 3)
    x, y = train.batch(torch.arange(4))
    assert isinstance(x, PackedSequence) and torch.equal(y, train.labels[:4])


def test_errors_are_value_or_file_not_found_errors(images: Path, recordings: Path,
                                                   tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pixels_per_step=5 must divide 784"):
        load_images(images, "train", pixels_per_step=5)
    with pytest.raises(ValueError, match="split must be one of"):
        load_classification(images, "validation")
    with pytest.raises(ValueError, match="valid_size must be an int >= 0"):
        load_folder(recordings, "train", valid_size=-1)
    with pytest.raises(FileNotFoundError, match="cannot load Fashion-MNIST from"):
        load_images(tmp_path, "train")
    with pytest.raises(ValueError, match=r"labels_csv='x\.csv' needs a single folder"):
        load_folder(recordings, "train", labels_csv="x.csv")
    write_sequences(tmp_path / "only_train", 2, np.random.default_rng(0))
    with pytest.raises(FileNotFoundError, match="no test/ folder to evaluate on"):
        load_folder(tmp_path / "only_train", "test")
    with pytest.raises(ValueError, match="too few to hold out validation files"):
        load_folder(tmp_path / "only_train", "valid")
    with pytest.raises(FileNotFoundError, match="cannot load sequences from"):
        load_folder(tmp_path / "missing", "train")
