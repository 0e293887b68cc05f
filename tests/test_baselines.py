"""mbrnn.plan.baselines: store-all, recompute-all and Chen's sqrt(T) segments, their closed
forms against the replayed plans, and their golden traces."""

from __future__ import annotations

import math

import pytest

from mbrnn.plan import Backward, Chain, Forward, ForwardKeep, simulate, solve


def test_baseline_costs_and_peaks() -> None:
    T, s, a = 100, 1.0, 4.0
    chain = Chain(T, s, a)
    store = solve(chain, chain.store_all_peak, "store_all")
    assert store.forward_steps == T and simulate(store).peak == s + (T - 1) * a and simulate(store).runs == 1
    rec = solve(chain, 2 * s, "recompute_all")  # h0 and the input of the step back-propagated
    assert rec.forward_steps == T * (T + 1) // 2 and simulate(rec).peak == 2 * s
    chen = solve(chain, 1e9, "chen")
    assert simulate(chen).forward_steps == chen.forward_steps
    k = math.isqrt(T - 1) + 1  # 10
    last = (T - 1) // k * k  # start of the last segment
    assert chen.forward_steps == T + last
    n_seg = -(-T // k)
    # the last segment runs from the sweep's running state, which its run holds too
    assert simulate(chen).peak == max(s * (n_seg - 1) + s + a * (T - last - 1),
                                      s * (n_seg - 1) + a * (k - 1))


# --- Chen's segments: closed forms --------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 3, 10, 17, 99, 100, 101, 1000])
def test_chen_closed_form_equals_replay(T: int) -> None:
    from mbrnn.plan.baselines import chen_cost

    chain = Chain(T, 1.0, 3.0)
    plan = solve(chain, 1e12, "chen")
    sim = simulate(plan)
    assert chen_cost(T, 1.0, 3.0) == (sim.forward_steps, sim.peak)


@pytest.mark.parametrize("T", [2, 10, 99, 100, 1000])
@pytest.mark.parametrize("k", [1, 3, 7, 31, 1000])
def test_chen_with_any_segment_replays_to_its_closed_form(T: int, k: int) -> None:
    from mbrnn.plan.baselines import chen_cost

    chain = Chain(T, 1.0, 3.0)
    plan = solve(chain, 1e12, "chen", segment=k)
    sim = simulate(plan)
    assert chen_cost(T, 1.0, 3.0, k) == (sim.forward_steps, sim.peak)
    kk = min(T, k)
    assert sim.forward_steps == T + (-(-T // kk) - 1) * kk
    if kk < T:
        assert sim.max_hidden >= -(-T // kk) - 1  # one hidden state per segment start
    if k == 1000:  # one segment: store everything
        assert sim.forward_steps == T


# --- golden traces ------------------------------------------------------------------------


def test_golden_recompute_all() -> None:
    plan = solve(Chain(3, 1.0, 2.0), 2.0, "recompute_all")
    assert list(plan.ops) == [
        Forward(0, 2), ForwardKeep(2, 3), Backward(2, 3),
        Forward(0, 1), ForwardKeep(1, 2), Backward(1, 2),
        ForwardKeep(0, 1), Backward(0, 1),
    ]


def test_golden_store_all() -> None:
    plan = solve(Chain(5, 1.0, 2.0), 9.0, "msm")
    assert list(plan.ops) == [ForwardKeep(0, 5), Backward(0, 5)]
