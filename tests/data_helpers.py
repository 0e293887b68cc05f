"""Helpers shared by the tests of mbrnn.data: the shared datasets and tiny files on disk."""

from __future__ import annotations

import gzip
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from mbrnn.data import data_root

LEVELS = ("word", "char", "byte")


def shared(name: str) -> Path:
    path = data_root() / name
    if not path.is_dir():
        pytest.skip(
            f"shared dataset {name!r} not found at {path}; set MBRNN_DATA to the folder "
            f"that holds it"
        )
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def normalize_words(text: str) -> str:
    """What word-level decode(encode(text)) gives: words single-spaced, every line ended."""
    if not text:
        return ""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return "".join(" ".join(line.split()) + "\n" for line in lines)


def write_idx(path: Path, array: np.ndarray, type_code: int, *, compress: bool = False) -> Path:
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    data = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += big_endian.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_wav(path: Path, frames: np.ndarray, width: int, rate: int = 8000) -> Path:
    """``frames``: (T, C) integers in the sample width's range, stored as PCM."""
    if width == 1:
        raw = (frames + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in frames.ravel())
    else:
        raw = frames.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(frames.shape[1])
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(raw)
    return path
