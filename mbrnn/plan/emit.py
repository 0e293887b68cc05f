"""From a planner's decisions to ops: unfolding and run merging.

A *decision* for a subproblem of ``t`` steps with memory ``m`` (in the planner's units)
is one of ``("work", 0, m)`` (run to the last step and back-propagate it), ``("hsm", y,
m_right)`` (keep ``h[y]``) or ``("ism", y, m_right)`` (keep step ``y``'s internal state);
the right part ``(y, t]`` is solved with ``m_right``, the left part with ``m``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .ops import Backward, Forward, ForwardKeep, FreeHidden, KeepHidden, Op

__all__ = ["Decide", "Decision", "emit", "merge"]

Decision = tuple[str, int, int]
Decide = Callable[[int, int], Decision]


def emit(T: int, m: int, decide: Decide, offset: int = 0) -> Iterator[Op]:
    """Unfold decisions into raw ops, depth first, with an explicit stack."""
    stack: list[tuple[int, int, int] | Op] = [(offset, T, m)]
    while stack:
        task = stack.pop()
        if not isinstance(task, tuple):
            yield task
            continue
        p, t, mm = task
        if t == 0:
            continue
        kind, y, mr = decide(t, mm)
        if kind == "work":
            if t > 1:
                yield Forward(p, p + t - 1)
            yield ForwardKeep(p + t - 1, p + t)
            yield Backward(p + t - 1, p + t)
            stack.append((p, t - 1, mm))
        elif kind == "hsm":
            yield Forward(p, p + y)
            yield KeepHidden(p + y)
            stack.append((p, y, mm))
            stack.append(FreeHidden(p + y))
            stack.append((p + y, t - y, mr))
        else:  # ism
            if y > 1:
                yield Forward(p, p + y - 1)
            yield ForwardKeep(p + y - 1, p + y)
            stack.append((p, y - 1, mm))
            stack.append(Backward(p + y - 1, p + y))
            stack.append((p + y, t - y, mr))


def merge(ops: Iterable[Op]) -> Iterator[Op]:
    """Fuse adjacent contiguous runs of the same kind into one op."""
    pending: Op | None = None
    for op in ops:
        if pending is not None:
            if type(op) is type(pending) and isinstance(op, (Forward, ForwardKeep)):
                assert isinstance(pending, (Forward, ForwardKeep))
                if pending.stop == op.start:
                    pending = type(op)(pending.start, op.stop)
                    continue
            elif (
                isinstance(op, Backward)
                and isinstance(pending, Backward)
                and op.stop == pending.start
            ):
                pending = Backward(op.start, pending.stop)
                continue
            yield pending
        pending = op
    if pending is not None:
        yield pending
