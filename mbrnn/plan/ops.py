"""The plan vocabulary: small frozen ops and the immutable :class:`Plan`.

Steps are numbered ``1..T``; step ``t`` maps hidden state ``h[t-1]`` to ``h[t]``, and
position ``p`` names the state ``h[p]`` (``h[0]`` is the initial state, always held).
An executor carries the ops out in order and makes no decisions of its own:

- ``Forward(start, stop)``: run steps ``start+1..stop`` from ``h[start]`` keeping nothing;
  ``h[stop]`` becomes the *cursor* (the running state).
- ``ForwardKeep(start, stop)``: the same, keeping every step's internal state.
- ``KeepHidden(index)``: keep the cursor ``h[index]`` as a checkpoint.
- ``FreeHidden(index)``: drop checkpoint ``h[index]``.
- ``Backward(start, stop)``: back-propagate steps ``stop, stop-1, .., start+1`` through
  their kept internal states; the gradient arrives at ``h[start]``.

A run may start from ``h[0]``, a kept hidden state, the output state inside a kept
internal state, or the cursor. Every op before the first ``Backward`` forms the *first
sweep*, which visits each step exactly once, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    from .chain import Chain

__all__ = [
    "Backward",
    "Forward",
    "ForwardKeep",
    "FreeHidden",
    "KeepHidden",
    "Op",
    "OpSequence",
    "Plan",
    "Simulation",
]


@dataclass(frozen=True, slots=True)
class Forward:
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class ForwardKeep:
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class KeepHidden:
    index: int


@dataclass(frozen=True, slots=True)
class FreeHidden:
    index: int


@dataclass(frozen=True, slots=True)
class Backward:
    start: int
    stop: int


Op = Forward | ForwardKeep | KeepHidden | FreeHidden | Backward


class OpSequence(Sequence[Op]):
    """An immutable, lazily generated sequence of ops.

    Iterating generates the ops, so a plan for a million steps never holds a million op
    objects; a complete iteration of at most ``KEEP`` ops is kept for the next one.
    ``len`` and indexing materialise the sequence and cache it: use them on small plans
    (tests, plots), iterate on large ones.
    """

    __slots__ = ("_cache", "_factory")

    #: Most ops a complete iteration keeps (a plan's ops are few once runs are merged).
    KEEP = 20_000

    def __init__(self, factory: Callable[[], Iterator[Op]]) -> None:
        self._factory = factory
        self._cache: tuple[Op, ...] | None = None

    def __iter__(self) -> Iterator[Op]:
        if self._cache is not None:
            return iter(self._cache)
        return self._remembering()

    def _remembering(self) -> Iterator[Op]:
        """Generate the ops; a complete pass of at most ``KEEP`` ops is kept, so a plan
        that is replayed, checked and run generates its ops once."""
        kept: list[Op] | None = []
        for op in self._factory():
            if kept is not None:
                kept.append(op)
                if len(kept) > self.KEEP:
                    kept = None
            yield op
        if kept is not None:
            self._cache = tuple(kept)

    def _materialise(self) -> tuple[Op, ...]:
        if self._cache is None:
            self._cache = tuple(self._factory())
        return self._cache

    def __len__(self) -> int:
        return len(self._materialise())

    @overload
    def __getitem__(self, index: int) -> Op: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Op]: ...
    def __getitem__(self, index: int | slice) -> Op | Sequence[Op]:
        return self._materialise()[index]

    def __repr__(self) -> str:
        return "OpSequence(<lazy>)" if self._cache is None else f"OpSequence({self._cache!r})"


@dataclass(frozen=True)
class Simulation:
    """What replaying a plan found.

    Attributes:
        forward_steps: every evaluation of a step's forward, the first sweep included.
        peak: the most memory held at any op, by the module docstring's accounting.
        runs: ``Forward`` and ``ForwardKeep`` ops (each is at least one kernel call).
        max_hidden: most hidden states kept at once (``h[0]`` included).
        max_internal: most internal states kept at once (the step being back-propagated
            excluded).
        num_ops: ops in the plan.
        max_live_runs: most kept calls alive at once.
        longest_run: the longest ``ForwardKeep`` run, in steps (0 if none).
    """

    forward_steps: int
    peak: float
    runs: int
    max_hidden: int
    max_internal: int
    num_ops: int
    max_live_runs: int = 0
    longest_run: int = 0


@dataclass(frozen=True)
class Plan:
    """An immutable schedule for back-propagating one recurrence within a budget: data.

    Attributes:
        policy: the policy that produced it (``"auto"`` resolves to the one chosen).
        chain: the cost model it was planned for.
        budget: the memory budget, in the chain's unit.
        forward_steps: every evaluation of a step's forward, the first sweep included.
        ops: the op sequence (lazy; see :class:`OpSequence`).
        exact: whether ``forward_steps`` is the proven optimum for the policy's moves.
        stats: the plan's :class:`Simulation` where the solver knows
            it in closed form (``None`` otherwise); :func:`~mbrnn.plan.simulate.summary`
            gives it for any plan, replaying the ops only where it must.
    """

    policy: str
    chain: Chain
    budget: float
    forward_steps: int
    ops: OpSequence = field(repr=False, compare=False)
    exact: bool = True
    stats: Simulation | None = field(default=None, repr=False, compare=False)

    @property
    def recompute_factor(self) -> float:
        """forward_steps / T: 1.0 for store-all."""
        return self.forward_steps / self.chain.length

    def time_overhead(self, beta: float = 2.0) -> float:
        """Predicted time against store-all: ``(C + beta*T) / ((1 + beta) * T)``.

        ``beta`` is the cost of a step's backward relative to its forward.
        """
        T = self.chain.length
        return (self.forward_steps + beta * T) / ((1.0 + beta) * T)
