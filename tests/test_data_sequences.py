"""mbrnn.data.sequences: Fashion-MNIST as sequences, folders of sequences, collate.

Tests against the shared datasets skip when ``$MBRNN_DATA`` (default ``../shared/data``)
does not hold them, and run whenever it does.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import shared, write_idx, write_text, write_wav
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence
from torch.utils.data import DataLoader

from mbrnn.data import FashionMNISTSequences, SequenceFolder, collate_sequences, load_sequence

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
