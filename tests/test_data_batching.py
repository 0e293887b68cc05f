"""mbrnn.data.batching: LM batching into streams, BPTT windows and shards per rank."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrnn.data import BPTTWindow, batchify, bptt_windows, shard_streams

ALPHABET = torch.arange(26)  # a..z as 0..25


def test_batchify_matches_the_diagram() -> None:
    batched = batchify(ALPHABET, 4)
    assert batched.shape == (6, 4) and batched.is_contiguous()
    letters = [["abcdefghijklmnopqrstuvwxyz"[i] for i in row] for row in batched.tolist()]
    assert letters == [
        list("agms"),
        list("bhnt"),
        list("ciou"),
        list("djpv"),
        list("ekqw"),
        list("flrx"),
    ]


def test_batchify_errors() -> None:
    with pytest.raises(ValueError, match="1D"):
        batchify(ALPHABET.view(2, 13), 2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batchify(ALPHABET, 0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        batchify(ALPHABET, True)
    with pytest.raises(ValueError, match="fewer than batch_size=30"):
        batchify(ALPHABET, 30)


def test_bptt_windows_match_the_diagram_and_resume() -> None:
    batched = batchify(ALPHABET, 4)  # (6, 4)
    windows = list(bptt_windows(batched, 2))
    assert [w.position for w in windows] == [0, 2, 4]
    assert [w.input.size(0) for w in windows] == [2, 2, 1]  # the last is shorter
    first = windows[0]
    assert isinstance(first, BPTTWindow) and first.next_position == 2
    assert torch.equal(first.input, batched[0:2]) and torch.equal(first.target, batched[1:3])
    assert torch.equal(windows[2].target, batched[5:6])
    resumed = list(bptt_windows(batched, 2, start=first.next_position))
    assert [w.position for w in resumed] == [2, 4]
    assert all(torch.equal(a.input, b.input) for a, b in zip(resumed, windows[1:], strict=True))
    assert list(bptt_windows(batched, 2, start=5)) == []  # at the end: nothing left


def test_bptt_windows_errors() -> None:
    batched = batchify(ALPHABET, 4)
    with pytest.raises(ValueError, match=r"start must be <= N - 1 = 5, got 6"):
        bptt_windows(batched, 2, start=6)  # raised at the call, not at first next()
    with pytest.raises(ValueError, match="bptt must be >= 1"):
        bptt_windows(batched, 0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        bptt_windows(batched[:1], 2)
    with pytest.raises(ValueError, match="2D"):
        bptt_windows(ALPHABET, 2)


@settings(max_examples=50, deadline=None)
@given(
    length=st.integers(2, 200),
    batch_size=st.integers(1, 8),
    bptt=st.integers(1, 20),
    world_size=st.sampled_from([1, 2, 4]),
)
def test_batching_properties(length: int, batch_size: int, bptt: int, world_size: int) -> None:
    ids = torch.arange(length) * 7 % 101
    if length // batch_size < 2:
        return
    batched = batchify(ids, batch_size)
    n = length // batch_size
    for b in range(batch_size):  # each column is a contiguous piece of the stream
        assert torch.equal(batched[:, b], ids[b * n : (b + 1) * n])
    windows = list(bptt_windows(batched, bptt))
    assert torch.equal(torch.cat([w.input for w in windows]), batched[:-1])
    assert torch.equal(torch.cat([w.target for w in windows]), batched[1:])
    assert all(w.input.size(0) <= bptt for w in windows)
    for w, nxt in itertools.pairwise(windows):
        assert w.next_position == nxt.position
    streams = batch_size * world_size
    wide = batchify(torch.arange(streams * 3), streams)
    shards = [shard_streams(wide, r, world_size) for r in range(world_size)]
    assert all(s.shape == (3, batch_size) and s.is_contiguous() for s in shards)
    assert torch.equal(torch.cat(shards, dim=1), wide)


def test_shard_streams_errors() -> None:
    batched = batchify(ALPHABET, 4)
    assert shard_streams(batched, 1, 2).tolist() == batched[:, 2:].tolist()
    with pytest.raises(ValueError, match="4 streams cannot be split evenly across world_size=3"):
        shard_streams(batched, 0, 3)
    with pytest.raises(ValueError, match="rank must be < world_size=2"):
        shard_streams(batched, 2, 2)
