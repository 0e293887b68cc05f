"""mbrnn.data.formats: reading IDX and WAV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_idx, write_text, write_wav

from mbrnn.data import read_idx, read_wav


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
