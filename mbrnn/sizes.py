"""Memory sizes as people write them: ``"2GiB"``, ``"512 MiB"``, ``"64KB"``, ``100000``.

Units (case-insensitive, optional space between number and unit, ``B`` optional)::

    B                      bytes
    KiB  MiB  GiB  TiB     binary (IEC): 1024, 1024**2, 1024**3, 1024**4 bytes
    kB   MB   GB   TB      decimal (SI): 1000, 1000**2, 1000**3, 1000**4 bytes

``KB`` is read as the SI ``kB`` (1000 bytes). Use the ``i`` forms for powers of 1024.
Pure Python: no torch, no numpy.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Final

__all__ = ["format_size", "parse_size"]

_FACTORS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_BINARY: Final = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))

_PATTERN: Final = re.compile(
    r"^\s*(?P<number>[+-]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-z]*)\s*$"
)

_ACCEPTED: Final = (
    "expected a number of bytes (e.g. 100000) or a number with a unit: "
    "KiB, MiB, GiB, TiB (powers of 1024) or kB, MB, GB, TB (powers of 1000), "
    "e.g. '2GiB', '512 MiB', '1.5 KiB', '64KB'"
)


def _check_value(name: str, original: object, value: float) -> float:
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name}={original!r} must be a finite size; {_ACCEPTED}")
    if value < 0:
        raise ValueError(f"{name}={original!r} must be >= 0 bytes")
    return value


def parse_size(value: str | float, *, name: str = "size") -> float:
    """Parse a memory size into bytes.

    Args:
        value: a number of bytes (``int`` or ``float``), or a string: a number
            optionally followed by a unit (see the module docstring).
        name: the argument's name, quoted in error messages.

    Returns:
        The size in bytes, as a float (``>= 0``, finite).

    Raises:
        TypeError: ``value`` is neither a number nor a string.
        ValueError: the string is not a size, or the size is negative, NaN or infinite.

    Example::

        >>> parse_size("2GiB"), parse_size("1.5 KiB"), parse_size("64KB"), parse_size(100)
        (2147483648.0, 1536.0, 64000.0, 100.0)
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of bytes or a size string, got bool")
    if isinstance(value, numbers.Real):
        return _check_value(name, value, float(value))
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a number of bytes or a size string, got {type(value).__name__}"
        )
    match = _PATTERN.match(value)
    if match is None:
        special = value.strip().lower().lstrip("+-")
        if special in ("nan", "inf", "infinity"):
            raise ValueError(f"{name}={value!r} must be a finite size; {_ACCEPTED}")
        raise ValueError(f"{name}={value!r} is not a size; {_ACCEPTED}")
    unit = match["unit"]
    factor = _FACTORS.get(unit.lower())
    if factor is None:
        raise ValueError(f"{name}={value!r} has an unknown unit {unit!r}; {_ACCEPTED}")
    number = float(match["number"])
    return _check_value(name, value, number * factor)


def format_size(size: float) -> str:
    """Format a size in bytes with the largest binary unit it reaches: ``"2.00 GiB"``.

    Below 1 KiB, whole byte counts print as integers (``"512 B"``). The result reads back
    through :func:`parse_size` to within 0.5 %.

    Raises:
        TypeError: ``size`` is not a number.
        ValueError: ``size`` is negative, NaN or infinite.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise TypeError(f"format_size: size must be a number, got {type(size).__name__}")
    value = float(size)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"format_size: size must be finite and >= 0, got {size!r}")
    for unit, factor in _BINARY:
        # Compare after rounding, so 1023.999 KiB prints as "1.00 MiB", not "1024.00 KiB".
        if round(value / factor, 2) >= 1:
            return f"{value / factor:.2f} {unit}"
    if value == int(value):
        return f"{int(value)} B"
    return f"{value:.2f} B"
