"""Recurrent states as pytrees: one tensor, or a plain (possibly nested) tuple of tensors.

The executor carries states around as flat tuples of tensors; :func:`state_flatten` and
:func:`state_unflatten` convert, :func:`state_map` applies a function tensor-wise (detach,
move to a device), and :class:`StateSpec` is the structure with the tensors taken out.
Nesting is how stacks compose: a 2-layer LSTM's state is ``((h0, c0), (h1, c1))``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, Union

import torch
from torch import Tensor

__all__ = [
    "State",
    "StateSpec",
    "StateT",
    "describe_state",
    "state_detach",
    "state_flatten",
    "state_map",
    "state_to",
    "state_unflatten",
]

# A cell's recurrent state: one tensor, or a (possibly nested) plain tuple of tensors.
# Nesting is how stacks compose: a 2-layer LSTM's state is ((h0, c0), (h1, c1)).
State: TypeAlias = Union[Tensor, tuple["State", ...]]  # noqa: UP007 (recursive alias)

# The state type of a particular cell: ``Cell[tuple[Tensor, Tensor]]`` for an LSTM.
StateT = TypeVar("StateT", bound=State)


@dataclass(frozen=True)
class StateSpec:
    """The structure of a :data:`State` with the tensors taken out.

    ``children is None`` marks a single tensor; otherwise ``children`` holds one spec per
    tuple element. Specs are hashable and compare by structure, so
    ``state_flatten(new)[1] == state_flatten(old)[1]`` checks that a step preserved the
    state's structure.
    """

    children: tuple[StateSpec, ...] | None = None

    @property
    def is_leaf(self) -> bool:
        """Whether this spec stands for a single tensor."""
        return self.children is None

    @property
    def num_leaves(self) -> int:
        """Number of tensors in a state of this structure."""
        if self.children is None:
            return 1
        return sum(child.num_leaves for child in self.children)

    def __str__(self) -> str:
        if self.children is None:
            return "Tensor"
        if len(self.children) == 1:
            return f"({self.children[0]},)"
        return "(" + ", ".join(str(child) for child in self.children) + ")"


_LEAF = StateSpec()


def _flatten_into(node: object, out: list[Tensor], path: str) -> StateSpec:
    if isinstance(node, Tensor):
        out.append(node)
        return _LEAF
    if type(node) is tuple:
        return StateSpec(
            tuple(_flatten_into(child, out, f"{path}[{i}]") for i, child in enumerate(node))
        )
    hint = " (use a tuple, not a list)" if isinstance(node, list) else ""
    raise TypeError(
        f"{path} is a {type(node).__name__}; a State is a Tensor or a plain (possibly "
        f"nested) tuple of Tensors{hint}"
    )


def state_flatten(state: State) -> tuple[list[Tensor], StateSpec]:
    """Split a state into its tensors (depth-first, left to right) and its structure.

    Args:
        state: a Tensor or a plain, possibly nested, tuple of Tensors. Named tuples and
            lists are rejected, because :func:`state_unflatten` could not rebuild them.

    Returns:
        ``(tensors, spec)`` with ``state_unflatten(tensors, spec)`` rebuilding ``state``.

    Raises:
        TypeError: if some element is neither a Tensor nor a plain tuple; the message
            names its position, e.g. ``state[1][0]``.

    Example::

        >>> h, c = torch.zeros(2, 3), torch.ones(2, 3)
        >>> tensors, spec = state_flatten(((h, c), h))
        >>> len(tensors), str(spec)
        (3, '((Tensor, Tensor), Tensor)')
    """
    out: list[Tensor] = []
    spec = _flatten_into(state, out, "state")
    return out, spec


def _leaf_paths(spec: StateSpec, path: str = "") -> list[str]:
    if spec.children is None:
        return [path]
    paths: list[str] = []
    for i, child in enumerate(spec.children):
        paths.extend(_leaf_paths(child, f"{path}[{i}]"))
    return paths


def state_unflatten(tensors: Sequence[Tensor], spec: StateSpec) -> State:
    """Rebuild a state from its tensors and structure: the inverse of :func:`state_flatten`.

    Args:
        tensors: ``spec.num_leaves`` tensors, in :func:`state_flatten` order.
        spec: the structure, as returned by :func:`state_flatten`.

    Raises:
        ValueError: if the number of tensors does not match the structure.
    """
    if len(tensors) != spec.num_leaves:
        raise ValueError(
            f"state_unflatten: got {len(tensors)} tensors, but the structure {spec} "
            f"holds {spec.num_leaves}"
        )
    return _build(spec, iter(tensors))


def _build(node: StateSpec, it: Iterator[Tensor]) -> State:
    # A module-level function, not a closure over itself: a recursive closure is a
    # reference cycle that would keep every step's state alive until the cyclic GC runs.
    if node.children is None:
        return next(it)
    return tuple(_build(child, it) for child in node.children)


def state_map(fn: Callable[..., Tensor], state: State, *others: State) -> State:
    """Apply ``fn`` tensor-wise over one or more states of the same structure.

    ``state_map(fn, a, b)`` returns a state shaped like ``a`` whose tensors are
    ``fn(a_i, b_i)``.

    Raises:
        TypeError: if a state holds something other than Tensors and plain tuples.
        ValueError: if the states' structures differ.

    Example::

        >>> s = (torch.ones(2, 3), torch.ones(2, 3))
        >>> state_map(torch.add, s, s)[1].sum().item()
        12.0
    """
    tensors, spec = state_flatten(state)
    columns = [tensors]
    for k, other in enumerate(others, start=1):
        other_tensors, other_spec = state_flatten(other)
        if other_spec != spec:
            raise ValueError(
                f"state_map: state {k} has structure {other_spec}, but state 0 has {spec}"
            )
        columns.append(other_tensors)
    return state_unflatten([fn(*args) for args in zip(*columns, strict=True)], spec)


def state_detach(state: Any) -> Any:
    """``state`` with every tensor detached; ``None`` stays ``None``."""
    if state is None:
        return None
    return state_map(Tensor.detach, state)


def state_to(state: Any, device: torch.device | str) -> Any:
    """``state`` with every tensor moved to ``device``; ``None`` stays ``None``."""
    if state is None:
        return None
    return state_map(lambda t: t.to(device), state)


def describe_state(state: State) -> str:
    """``(shape dtype, ...)`` of a state, for error messages: ``"([2, 8] torch.float32,)"``."""
    tensors, spec = state_flatten(state)
    it = iter(tensors)

    def show(node: StateSpec) -> str:
        if node.children is None:
            t = next(it)
            return f"{list(t.shape)} {t.dtype}"
        inner = ", ".join(show(child) for child in node.children)
        return "(" + inner + ("," if len(node.children) == 1 else "") + ")"

    return show(spec)
