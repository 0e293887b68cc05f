"""mbrnn.runtime.state: states as pytrees of tensors, flattened, rebuilt and mapped."""

from __future__ import annotations

import doctest

import pytest
import torch
from helpers import leaves

import mbrnn.runtime.state as state_module
from mbrnn.runtime.state import (
    StateSpec,
    describe_state,
    state_detach,
    state_flatten,
    state_map,
    state_to,
    state_unflatten,
)


def test_state_flatten_unflatten_round_trip() -> None:
    a, b, c = torch.zeros(2, 3), torch.ones(2, 4), torch.full((2, 5), 2.0)
    state = ((a, b), c, (c,))
    tensors, spec = state_flatten(state)
    assert [t is u for t, u in zip(tensors, [a, b, c, c], strict=True)] == [True] * 4
    assert str(spec) == "((Tensor, Tensor), Tensor, (Tensor,))"
    assert spec.num_leaves == 4 and not spec.is_leaf
    rebuilt = state_unflatten(tensors, spec)
    assert isinstance(rebuilt, tuple) and isinstance(rebuilt[0], tuple)
    assert rebuilt[0][1] is b and rebuilt[2][0] is c
    t, leaf = state_flatten(a)
    assert t == [a] and leaf == StateSpec() and leaf.is_leaf
    assert state_unflatten([b], leaf) is b
    assert hash(spec) == hash(state_flatten(((c, a), b, (a,)))[1])


def test_state_helpers_errors() -> None:
    h = torch.zeros(2, 3)
    with pytest.raises(TypeError, match=r"state\[1\] is a list; .*use a tuple"):
        state_flatten((h, [h, h]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"state\[0\]\[1\] is a int"):
        state_flatten(((h, 3),))  # type: ignore[arg-type]
    _, spec = state_flatten((h, h))
    with pytest.raises(ValueError, match="got 3 tensors, but the structure"):
        state_unflatten([h, h, h], spec)
    with pytest.raises(ValueError, match=r"state 1 has structure \(Tensor,\)"):
        state_map(torch.add, (h, h), (h,))


def test_state_map() -> None:
    s = (torch.ones(2, 3), (torch.full((2, 1), 3.0),))
    doubled = state_map(lambda t: 2 * t, s)
    assert torch.equal(leaves(doubled)[1], torch.full((2, 1), 6.0))
    summed = state_map(torch.add, s, doubled)
    assert torch.equal(leaves(summed)[0], torch.full((2, 3), 3.0))
    assert state_flatten(summed)[1] == state_flatten(s)[1]


def test_state_detach() -> None:
    h = torch.ones(2, 3, requires_grad=True)
    state = ((2 * h, 3 * h), (4 * h,))
    detached = state_detach(state)
    assert state_flatten(detached)[1] == state_flatten(state)[1]
    for t, u in zip(leaves(detached), leaves(state), strict=True):
        assert u.requires_grad and not t.requires_grad and t.grad_fn is None
        assert torch.equal(t, u)
    assert not state_detach(h).requires_grad  # a single tensor is a state too
    assert state_detach(None) is None


def test_state_to() -> None:
    state = (torch.zeros(2, 3), (torch.ones(2, 1, dtype=torch.float64),))
    moved = state_to(state, "meta")
    assert state_flatten(moved)[1] == state_flatten(state)[1]
    assert [t.device.type for t in leaves(moved)] == ["meta", "meta"]
    assert [tuple(t.shape) for t in leaves(moved)] == [(2, 3), (2, 1)]
    assert [t.dtype for t in leaves(moved)] == [torch.float32, torch.float64]  # device only
    back = state_to(state, torch.device("cpu"))
    assert all(torch.equal(t, u) for t, u in zip(leaves(back), leaves(state), strict=True))
    assert state_to(None, "meta") is None


def test_describe_state() -> None:
    h, c = torch.zeros(2, 8), torch.zeros(2, 4, dtype=torch.float64)
    assert describe_state(h) == "[2, 8] torch.float32"
    assert describe_state((h,)) == "([2, 8] torch.float32,)"
    assert describe_state(((h, c), h)) == (
        "(([2, 8] torch.float32, [2, 4] torch.float64), [2, 8] torch.float32)")
    with pytest.raises(TypeError, match=r"state\[1\] is a list"):
        describe_state((h, [h]))  # type: ignore[arg-type]


def test_state_docstring_examples_run() -> None:
    """test_cells runs mbrnn.nn.cell's examples; the state helpers' are here, in their module."""
    result = doctest.testmod(state_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
