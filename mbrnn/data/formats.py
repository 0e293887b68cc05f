"""Readers for the binary formats the sequence datasets use: IDX and PCM WAV.

IDX is LeCun's MNIST format, also used by Fashion-MNIST: a big-endian header
``0x00 0x00 <type> <ndim>``, then ``ndim`` 32-bit sizes, then the data. WAV is read with
the standard library's ``wave`` module (uncompressed PCM only).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import wave
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "read_wav"]

_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzipped (detected from its first bytes) or raw.

    Args:
        path: e.g. ``train-images-idx3-ubyte.gz`` (magic ``0x803``: uint8, 3 dims) or
            ``train-labels-idx1-ubyte`` (``0x801``: uint8, 1 dim).

    Outputs:
        A writable, native-byte-order array of the file's shape and type.

    Raises:
        FileNotFoundError: no such file. ValueError: not IDX, or truncated / overlong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_idx: {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"read_idx: {path} is a corrupt gzip file: {e}") from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise ValueError(
            f"read_idx: {path} is not an IDX file (magic {raw[:4].hex() or 'missing'}; "
            f"expected 0x0000 then a type byte in {sorted(hex(t) for t in _IDX_TYPES)})"
        )
    dtype = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"read_idx: {path} holds {len(raw) - header} data bytes but its header "
            f"(shape {shape}, {dtype.name}) says {expected}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # a writable copy in native order


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read an uncompressed PCM WAV file.

    Args:
        path: 8-bit (unsigned), 16-, 24- or 32-bit (signed) PCM, any number of channels.

    Outputs:
        ``(samples, sample_rate)``: ``samples`` is float32 of shape ``(T, channels)``
        in ``[-1, 1]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_wav: {path} does not exist")
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            raw = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as e:
        raise ValueError(
            f"read_wav: {path} is not a PCM WAV file the wave module reads: {e}"
        ) from e
    frame = width * channels
    if len(raw) % frame:
        raise ValueError(
            f"read_wav: {path} ends inside a frame ({len(raw)} bytes, {frame} per frame)"
        )
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 2.0**15
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        samples = value.astype(np.float32) / 2.0**23
    elif width == 4:
        samples = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2.0**31).astype(np.float32)
    else:
        raise ValueError(f"read_wav: {path} has {8 * width}-bit samples; expected 8, 16, 24 or 32")
    return samples.astype(np.float32, copy=False).reshape(-1, channels), rate
