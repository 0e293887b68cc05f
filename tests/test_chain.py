from __future__ import annotations

import math

import pytest

from mbrnn.plan import Chain


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((0, 1.0, 1.0), ValueError, "length must be >= 1"),
        ((-3, 1.0, 1.0), ValueError, "length"),
        ((2.0, 1.0, 1.0), TypeError, "length must be an int"),
        ((5, 0.0, 1.0), ValueError, "state_size"),
        ((5, float("inf"), 1.0), ValueError, "state_size"),
        ((5, 1.0, float("nan")), ValueError, "internal_size"),
        ((5, 2.0, 1.0), ValueError, "internal_size=1.0 is below state_size=2.0"),
        ((5, "1", 2.0), TypeError, "state_size"),
    ],
)
def test_validation(args: tuple, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        Chain(*args)


def test_alpha_and_store_all() -> None:
    c = Chain(10, 2.0, 7.0)
    assert c.alpha == 3.5
    assert c.store_all_peak == 2.0 + 9 * 7.0


def test_discretise_integer_alpha_is_exact() -> None:
    u = Chain(10, 256.0, 1024.0).discretise(10_000.0)
    assert (u.s, u.a) == (1, 4) and u.unit == 256.0 and u.m == 39


@pytest.mark.parametrize("alpha", [1.3, 2.7, 4.333, 5.01, 9.99])
def test_discretise_rounds_conservatively(alpha: float) -> None:
    c = Chain(10, 100.0, 100.0 * alpha)
    u = c.discretise(12_345.0)
    assert u.s * u.unit == pytest.approx(100.0)
    assert u.a * u.unit >= c.internal_size - 1e-6
    assert u.m * u.unit <= 12_345.0 + 1e-6
    # the rounding error on the internal size stays small
    assert u.a * u.unit <= c.internal_size * 1.02 or u.s == 8
    assert u.a == math.ceil(u.s * alpha - 1e-9)
