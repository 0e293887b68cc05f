"""``memory_budget=``: the Budget value, its spellings, and what "auto" reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mbrnn
from mbrnn import Budget
from mbrnn import budget as budget_mod


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (4096, Budget.bytes(4096)),
        (0, Budget.bytes(0)),
        ("512MiB", Budget.bytes(512 * 2**20)),
        (" 2GB ", Budget.bytes(2 * 1000**3)),
        ("auto", Budget.auto()),
        ("AUTO", Budget.auto()),
        ("50%", Budget.fraction(0.5)),
        ("100%", Budget.auto()),
        (Budget.fraction(0.25), Budget.fraction(0.25)),
    ],
)
def test_every_spelling(value: object, expected: Budget | None) -> None:
    assert Budget.parse(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "exc", "match"),
    [
        (1.0, TypeError, r"memory_budget=1.0 is a float.*'50%' or mbrnn.Budget.fraction\(0.5\)"),
        (0.5, TypeError, "is a float"),
        (True, TypeError, "is a bool"),
        (-1, ValueError, ">= 0 bytes"),
        ("0%", ValueError, r"percentage must be in \(0%, 100%\]"),
        ("150%", ValueError, "percentage"),
        ("lots", ValueError, "memory_budget"),
        ([1], TypeError, "must be None, an int, a str or a Budget"),
    ],
)
def test_bad_spellings_name_the_fix(value: object, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        Budget.parse(value)  # type: ignore[arg-type]


def test_resolve() -> None:
    assert Budget.bytes(123).resolve() == 123
    whole = Budget.auto().resolve()
    assert whole > 0
    assert Budget.fraction(0.5).resolve() == pytest.approx(whole / 2, rel=0.05)
    assert str(Budget.bytes(2**20)) == "1.00 MiB" and str(Budget.auto()) == "auto"
    assert str(Budget.fraction(0.25)) == "25%"
    with pytest.raises(ValueError, match="f must be in"):
        Budget.fraction(0.0)
    with pytest.raises(ValueError, match="n must be an int"):
        Budget.bytes(-5)


def _cgroup(tmp: Path, files: dict[str, str]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (tmp / name).write_text(text)
    return tmp


def test_auto_honours_a_container_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a 900 MiB cgroup "auto" must not plan from the host's MemAvailable."""
    v2 = _cgroup(tmp_path / "v2", {"memory.max": str(900 * 2**20),
                                   "memory.current": str(100 * 2**20)})
    assert budget_mod.cgroup_headroom(v2) == 800 * 2**20
    monkeypatch.setattr(budget_mod, "CGROUP_ROOT", v2)
    monkeypatch.setattr(budget_mod, "_meminfo_available", lambda: 64 * 2**30)
    assert budget_mod.available_memory(torch.device("cpu")) == int(
        800 * 2**20 * budget_mod.AUTO_CPU_FRACTION)
    _cgroup(tmp_path / "v1" / "memory", {"memory.limit_in_bytes": str(2**30),
                                              "memory.usage_in_bytes": str(2**28)})
    assert budget_mod.cgroup_headroom(tmp_path / "v1") == 2**30 - 2**28
    unlimited = _cgroup(tmp_path / "none", {"memory.max": "max", "memory.current": "5"})
    assert budget_mod.cgroup_headroom(unlimited) is None
    assert budget_mod.cgroup_headroom(tmp_path / "missing") is None


def test_a_fractional_budget_is_resolved_once_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Free memory moves from call to call; the plan of a shape must not."""
    free = iter([2**30, 2**29, 2**28, 2**27])
    monkeypatch.setattr(budget_mod, "available_memory", lambda device: next(free))
    rnn = mbrnn.LSTM(4, 8, memory_budget="50%")
    x = torch.randn(30, 2, 4)
    for _ in range(3):
        rnn(x)[0].sum().backward()
        assert rnn.last_plan is not None and rnn.last_plan.budget == 2**29
    rnn(torch.randn(31, 2, 4))[0].sum().backward()  # a new shape reads the memory again
    assert rnn.last_plan is not None and rnn.last_plan.budget == 2**28
