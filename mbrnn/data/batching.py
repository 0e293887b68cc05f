"""Stateful language-model batching, as in pytorch/examples ``word_language_model``.

A token stream is cut into ``B`` contiguous streams (:func:`batchify`), one per batch
column, and read in windows of ``bptt`` steps (:func:`bptt_windows`). The hidden state
is carried from one window to the next, so each column is one long text read in order.
For data-parallel training, :func:`shard_streams` gives each rank a contiguous block of
columns (streams), so each rank still reads whole streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

__all__ = ["BPTTWindow", "batchify", "bptt_windows", "shard_streams"]


def _check_int(caller: str, name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{caller}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{caller}: {name} must be >= {minimum}, got {value}")
    return value


def _check_batched(caller: str, batched: object) -> torch.Tensor:
    if not isinstance(batched, torch.Tensor):
        raise TypeError(f"{caller}: expected a tensor, got {type(batched).__name__}")
    if batched.ndim != 2:
        raise ValueError(
            f"{caller}: expected a 2D (N, B) tensor from batchify, got {batched.ndim}D instead"
        )
    return batched


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a token stream into ``batch_size`` contiguous streams, one per column.

    The trailing ``len(ids) % batch_size`` tokens are dropped. With the alphabet as
    ``ids`` and ``batch_size=4`` (``N = 26 // 4 = 6``)::

        ids:   a b c d e f | g h i j k l | m n o p q r | s t u v w x | y z
               stream 0      stream 1      stream 2      stream 3      dropped

        batchify(ids, 4):   (N, B) = (6, 4); column b is stream b, read downwards

                 b=0 b=1 b=2 b=3
            t=0 +  a   g   m   s  +
            t=1 |  b   h   n   t  |
            t=2 |  c   i   o   u  |
            t=3 |  d   j   p   v  |
            t=4 |  e   k   q   w  |
            t=5 +  f   l   r   x  +

    Args:
        ids: 1-D tensor of token ids, length ``L >= batch_size``.
        batch_size: number of streams ``B`` (>= 1).

    Outputs:
        Contiguous tensor of shape ``(N, B)``, ``N = L // B``, on ``ids``' device.

    Example::

        >>> batchify(torch.arange(10), 3).tolist()
        [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    """
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"batchify: expected a tensor, got {type(ids).__name__}")
    if ids.ndim != 1:
        raise ValueError(f"batchify: expected a 1D token stream, got {ids.ndim}D instead")
    batch_size = _check_int("batchify", "batch_size", batch_size, 1)
    n = ids.numel() // batch_size
    if n == 0:
        raise ValueError(
            f"batchify: {ids.numel()} tokens are fewer than batch_size={batch_size}; "
            f"lower the batch size"
        )
    return ids[: n * batch_size].view(batch_size, n).t().contiguous()  # (N, B)


class BPTTWindow(NamedTuple):
    """One window of :func:`bptt_windows`.

    Attributes:
        input: ``(T, B)`` rows ``position .. position + T - 1`` of the batched data.
        target: ``(T, B)``: the next token of each input, rows ``position + 1 .. position + T``.
        position: row of ``batched`` where this window starts.
    """

    input: torch.Tensor
    target: torch.Tensor
    position: int

    @property
    def next_position(self) -> int:
        """Where the next window starts: ``start=`` to resume after this window."""
        return self.position + self.input.size(0)


def bptt_windows(batched: torch.Tensor, bptt: int, *, start: int = 0) -> Iterator[BPTTWindow]:
    """Windows of ``bptt`` steps over batchified data, each with its next-token targets.

    Windows start at rows ``start, start + bptt, ...``; the last may be shorter. A
    window depends only on ``(start, bptt)``, so a trainer that saves
    ``window.next_position`` resumes exactly where it stopped with
    ``bptt_windows(batched, bptt, start=saved)``. With ``N = 6`` and ``bptt = 2``::

        row   batched    position 0      position 2      position 4
         0    a g m s    input
         1    b h n t    input  target
         2    c i o u           target   input
         3    d j p v                    input  target
         4    e k q w                           target   input
         5    f l r x                                    target      (last: T = 1)

    Args:
        batched: ``(N, B)`` tensor from :func:`batchify` (``N >= 2``).
        bptt: window length ``T`` (>= 1).
        start: row to start from, ``0 <= start <= N - 1`` (``N - 1``: nothing left).

    Outputs:
        An iterator of :class:`BPTTWindow` ``(input (T, B), target (T, B), position)``;
        ``input`` and ``target`` are views of ``batched``.

    Example::

        >>> data = batchify(torch.arange(12), 2)          # (6, 2)
        >>> [w.position for w in bptt_windows(data, 2)]
        [0, 2, 4]
    """
    caller = "bptt_windows"
    batched = _check_batched(caller, batched)
    bptt = _check_int(caller, "bptt", bptt, 1)
    start = _check_int(caller, "start", start, 0)
    n = batched.size(0)
    if n < 2:
        raise ValueError(f"{caller}: need at least 2 rows (an input and its target), got {n}")
    if start > n - 1:
        raise ValueError(f"{caller}: start must be <= N - 1 = {n - 1}, got {start}")
    return _windows(batched, bptt, start)


def _windows(batched: torch.Tensor, bptt: int, start: int) -> Iterator[BPTTWindow]:
    n = batched.size(0)
    for i in range(start, n - 1, bptt):
        length = min(bptt, n - 1 - i)
        yield BPTTWindow(batched[i : i + length], batched[i + 1 : i + 1 + length], i)


def shard_streams(batched: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """The contiguous block of streams (columns) that rank ``rank`` of ``world_size`` reads.

    With ``B = 4`` streams and ``world_size = 2``::

                 b=0 b=1 | b=2 b=3
            t=0    a   g |   m   s
            t=1    b   h |   n   t
            ...    ...   |   ...
                 rank 0  |  rank 1       shape (N, B / world_size) each

    Args:
        batched: ``(N, B)`` tensor from :func:`batchify`; ``B % world_size == 0``.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: number of processes.

    Outputs:
        Contiguous ``(N, B // world_size)`` tensor: streams
        ``rank * B // world_size`` up to ``(rank + 1) * B // world_size``.
    """
    caller = "shard_streams"
    batched = _check_batched(caller, batched)
    world_size = _check_int(caller, "world_size", world_size, 1)
    rank = _check_int(caller, "rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"{caller}: rank must be < world_size={world_size}, got {rank}")
    b = batched.size(1)
    if b % world_size:
        raise ValueError(
            f"{caller}: {b} streams cannot be split evenly across world_size={world_size}; "
            f"batchify with a batch size that is a multiple of {world_size}"
        )
    per_rank = b // world_size
    return batched[:, rank * per_rank : (rank + 1) * per_rank].contiguous()
