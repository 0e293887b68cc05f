"""Atomic file writes: a temporary file beside the target, then ``os.replace``.

A reader sees the old file or the new one, never half of one: a crash, a full disk or a
Ctrl-C during the write leaves the old file in place and removes the temporary.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Replace ``path`` by what ``write(temporary_path)`` writes, atomically.

    Args:
        path: the file to write; its folder must exist.
        write: writes the whole file to the path it is given (for example
            ``lambda tmp: torch.save(obj, tmp)``).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8), atomically: see :func:`atomic_write`."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
