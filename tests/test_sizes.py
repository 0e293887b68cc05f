"""parse_size / format_size: examples, errors, and round trips (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbrnn.sizes import format_size, parse_size

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4

UNITS = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": KIB,
    "MiB": MIB,
    "GiB": GIB,
    "TiB": TIB,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2GiB", 2 * GIB),
        ("512MiB", 512 * MIB),
        ("1.5 KiB", 1536),
        ("64KB", 64_000),
        ("64kB", 64_000),
        ("1GB", 10**9),
        ("100000", 100_000),
        ("100_000", 100_000),
        ("  3 B ", 3),
        ("0", 0),
        (".5GiB", GIB / 2),
        ("1e3", 1000),
        ("2gib", 2 * GIB),
        ("1 TiB", TIB),
        ("2.5TB", 2.5e12),
    ],
)
def test_parse_examples(text: str, expected: float) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("value", [0, 1, 262144, 1.5, 2.0**40])
def test_parse_numbers_are_bytes(value: float) -> None:
    out = parse_size(value)
    assert out == value
    assert isinstance(out, float)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2G", "unknown unit 'G'"),
        ("1 GiBs", "unknown unit 'GiBs'"),
        ("abc", "is not a size"),
        ("", "is not a size"),
        ("1__0", "is not a size"),
        ("GiB", "is not a size"),
        ("-1GiB", "must be >= 0"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("1e400", "finite"),
        (-5, "must be >= 0"),
        (math.nan, "finite"),
        (math.inf, "finite"),
    ],
)
def test_parse_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match="budget=") as info:
        parse_size(value, name="budget")  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert repr(value) in str(info.value)


def test_parse_error_lists_accepted_forms() -> None:
    with pytest.raises(ValueError) as info:
        parse_size("12 parsecs", name="--budget")
    message = str(info.value)
    assert message.startswith("--budget='12 parsecs'")
    for unit in ("KiB", "MiB", "GiB", "TiB", "kB", "MB", "GB", "TB", "1024", "1000"):
        assert unit in message


@pytest.mark.parametrize("value", [None, [1], b"1GiB", True, False, 1j])
def test_parse_type_errors(value: object) -> None:
    with pytest.raises(TypeError, match="size must be a number of bytes or a size string"):
        parse_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (512, "512 B"),
        (0.5, "0.50 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (MIB - 1, "1.00 MiB"),  # rounding promotes, never "1024.00 KiB"
        (2 * GIB, "2.00 GiB"),
        (100 * GIB, "100.00 GiB"),
        (3 * TIB, "3.00 TiB"),
        (5000 * TIB, "5000.00 TiB"),
    ],
)
def test_format_examples(size: float, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (math.nan, ValueError),
                                              (math.inf, ValueError), ("1", TypeError),
                                              (True, TypeError)])
def test_format_rejects(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="format_size"):
        format_size(value)  # type: ignore[arg-type]


@given(st.floats(min_value=0, max_value=1e18, allow_nan=False, allow_infinity=False))
def test_format_then_parse_round_trips(size: float) -> None:
    back = parse_size(format_size(size))
    if size >= KIB:
        assert back == pytest.approx(size, rel=0.005)
    else:
        assert back == pytest.approx(size, abs=0.005)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(sorted(UNITS)),
    st.sampled_from(["", " ", "  "]),
    st.booleans(),
)
def test_parse_integer_with_unit(n: int, unit: str, space: str, lower: bool) -> None:
    text = f"{n}{space}{unit.lower() if lower else unit}"
    assert parse_size(text) == n * UNITS[unit]


@given(st.integers(min_value=0, max_value=2**53))
def test_parse_plain_integers(n: int) -> None:
    assert parse_size(str(n)) == float(n)
    assert parse_size(n) == float(n)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(sorted(UNITS)))
def test_parse_decimal_with_unit(x: float, unit: str) -> None:
    assert parse_size(f"{x!r} {unit}") == pytest.approx(x * UNITS[unit], rel=1e-12)
