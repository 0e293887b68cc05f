"""``memory_budget=``: a value that says how much memory back-propagation may hold.

Every front end (``Recurrent``, ``LSTM``/``GRU``/``RNN``, the zoo's configs) takes the same
spellings, read by :meth:`Budget.parse`:

==========================  =========================================================
``None``                    no budget: keep everything (plain autograd)
``4096`` (an ``int``)       bytes
``"512MiB"``, ``"2GB"``     a size (see :func:`mbrnn.sizes.parse_size`)
``"auto"``                  what is free on the input's device (see :meth:`Budget.resolve`)
``"50%"``                   that fraction of what ``"auto"`` would use
``Budget.fraction(0.5)``    the same, as a value
==========================  =========================================================

A bare ``float`` is refused: ``memory_budget=1`` means one byte, and ``1.0`` could mean
either one byte or all the free memory, so it says which spelling to use instead.

A ``"auto"`` or fractional budget depends on what is free when a call runs; a module
resolves it to bytes once per input shape and device and keeps that figure, so the plan
does not change from one call to the next as free memory moves (see
:meth:`Budget.resolve`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Union

from .sizes import format_size, parse_size

if TYPE_CHECKING:
    import torch

__all__ = [
    "AUTO_CPU_FRACTION",
    "AUTO_CUDA_MARGIN",
    "Budget",
    "BudgetLike",
    "available_memory",
    "cgroup_headroom",
    "resolve_budget",
]

#: ``"auto"`` on CPU uses this fraction of the available RAM (the cgroup's, where lower).
AUTO_CPU_FRACTION: Final = 0.5
#: On CUDA it leaves free ``max(AUTO_CUDA_MARGIN bytes, 5 % of the device)``.
AUTO_CUDA_MARGIN: Final = 256 * 2**20

_FIX = ("pass bytes as an int (memory_budget=4096), a size string ('512MiB'), 'auto', "
        "or a fraction of the free memory as '50%' or mbrnn.Budget.fraction(0.5)")


@dataclass(frozen=True)
class Budget:
    """A memory budget: bytes, a fraction of what is free, or ``"auto"``.

    Build one with :meth:`bytes`, :meth:`fraction` or :meth:`auto`, or let
    :meth:`parse` read any accepted spelling. :meth:`resolve` turns it into bytes for a
    device.

    Example::

        >>> Budget.parse("64MiB").resolve()
        67108864
        >>> Budget.parse("25%") == Budget.fraction(0.25)
        True
    """

    kind: Literal["bytes", "fraction"]
    value: float

    @classmethod
    def bytes(cls, n: int) -> Budget:
        """Exactly ``n`` bytes (``n >= 0``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"Budget.bytes: n must be an int >= 0, got {n!r}")
        return cls("bytes", n)

    @classmethod
    def fraction(cls, f: float) -> Budget:
        """The fraction ``f`` in ``(0, 1]`` of what :meth:`auto` would use."""
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not (
                math.isfinite(f) and 0.0 < f <= 1.0):
            raise ValueError(f"Budget.fraction: f must be in (0, 1], got {f!r}")
        return cls("fraction", float(f))

    @classmethod
    def auto(cls) -> Budget:
        """What is free on the device when a call runs: ``Budget.fraction(1.0)``."""
        return cls("fraction", 1.0)

    @classmethod
    def parse(cls, value: BudgetLike, *, name: str = "memory_budget") -> Budget | None:
        """Read any accepted spelling (module docstring); ``None`` stays ``None``.

        Raises:
            TypeError: a float, a bool or another type; the message names the spellings.
            ValueError: a string that is not a size, ``"auto"`` or a percentage.
        """
        if value is None or isinstance(value, Budget):
            return value
        if isinstance(value, bool):
            raise TypeError(f"{name}={value!r} is a bool; {_FIX}")
        if isinstance(value, float):
            raise TypeError(
                f"{name}={value!r} is a float, which could mean bytes or a fraction of the "
                f"free memory; {_FIX}"
            )
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"{name}={value!r} must be >= 0 bytes; {_FIX}")
            return cls.bytes(value)
        if isinstance(value, str):
            text = value.strip()
            if text.lower() == "auto":
                return cls.auto()
            if text.endswith("%"):
                try:
                    pct = float(text[:-1])
                except ValueError:
                    pct = math.nan
                if not (math.isfinite(pct) and 0.0 < pct <= 100.0):
                    raise ValueError(f"{name}={value!r}: a percentage must be in (0%, 100%]")
                return cls.fraction(pct / 100.0)
            return cls.bytes(int(parse_size(text, name=name)))
        raise TypeError(f"{name} must be None, an int, a str or a Budget, got "
                        f"{type(value).__name__}; {_FIX}")

    def resolve(self, device: torch.device | str | None = None) -> int:
        """Bytes on ``device`` (default CPU): exact for :meth:`bytes`, else the fraction
        of :func:`available_memory` now."""
        if self.kind == "bytes":
            return int(self.value)
        import torch

        dev = torch.device("cpu") if device is None else torch.device(device)
        return int(available_memory(dev) * self.value)

    def __str__(self) -> str:
        if self.kind == "bytes":
            return format_size(self.value)
        return "auto" if self.value == 1.0 else f"{100 * self.value:g}%"


BudgetLike = Union[Budget, int, str, None]  # noqa: UP007 (a runtime alias, Python 3.10)


def resolve_budget(owner: str, value: BudgetLike, device: torch.device,
                   cache: dict[tuple[object, ...], int], key: tuple[object, ...]) -> int | None:
    """``value`` in bytes on ``device``; ``"auto"`` and fractions are resolved once per
    ``key`` (shape and device) and kept in ``cache``, so the plan of a shape does not move
    with the free memory from call to call."""
    budget = Budget.parse(value, name=f"{owner}: memory_budget")
    if budget is None:
        return None
    if budget.kind == "bytes":
        return budget.resolve()
    full = (budget, *key)
    if full not in cache:
        cache[full] = budget.resolve(device)
    return cache[full]


def available_memory(device: torch.device) -> int:
    """Bytes ``"auto"`` may use on ``device``.

    CUDA: the free memory less ``max(AUTO_CUDA_MARGIN, 5 % of the device)``. CPU:
    ``AUTO_CPU_FRACTION`` of the smaller of the host's ``MemAvailable`` and what the
    process's cgroup (v2 ``memory.max``, or v1 ``memory.limit_in_bytes``) still allows,
    so a container's limit is honoured.
    """
    if device.type == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info(device)
        return max(0, int(free - max(AUTO_CUDA_MARGIN, 0.05 * total)))
    avail = _meminfo_available()
    limit = cgroup_headroom()
    if limit is not None:
        avail = min(avail, limit)
    return int(avail * AUTO_CPU_FRACTION)


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


#: Where the cgroup files are read (a test points it elsewhere).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_headroom(root: Path | None = None) -> int | None:
    """Bytes the process's memory cgroup still allows (limit less usage), or ``None``.

    Reads the cgroup v2 files ``memory.max`` and ``memory.current`` of the process's own
    cgroup (``/proc/self/cgroup``), else the v1 ``memory.limit_in_bytes`` and
    ``memory.usage_in_bytes``; ``None`` where there is no limit or nothing to read.
    """
    root = CGROUP_ROOT if root is None else root
    for folder in _own_cgroup_folders(root):
        v2 = _read_int(folder / "memory.max"), _read_int(folder / "memory.current")
        if v2[0] is not None and v2[1] is not None:
            return max(0, v2[0] - v2[1])
        v1 = (_read_int(folder / "memory.limit_in_bytes"),
              _read_int(folder / "memory.usage_in_bytes"))
        if v1[0] is not None and v1[1] is not None and v1[0] < 2**60:
            return max(0, v1[0] - v1[1])
    return None


def _own_cgroup_folders(root: Path) -> list[Path]:
    """The process's cgroup folder(s) under ``root``, its own first, then ``root``."""
    folders: list[Path] = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and (parts[1] in ("", "memory") or "memory" in parts[1].split(",")):
                rel = parts[2].lstrip("/")
                for base in (root, root / "memory"):
                    folders.append(base / rel if rel else base)
    except OSError:
        pass
    folders += [root, root / "memory"]
    return list(dict.fromkeys(folders))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None
