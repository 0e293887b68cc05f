"""mbrnn.plan.plot: the schedule drawing and the memory/compute trade-off curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mbrnn.plan import Chain, simulate, solve
from mbrnn.plan.plot import _read_schedule, plot_plan, tradeoff_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("policy", ["recompute_all", "hsm", "msm", "store_all"])
def test_plot_plan_policies(tmp_path: Path, policy: str) -> None:
    chain = Chain(60, 1.0, 2.5)  # non-integer alpha: a finer discretisation
    budget = chain.store_all_peak if policy == "store_all" else 12.0
    path = tmp_path / f"{policy}.png"
    plot_plan(solve(chain, budget, policy), path, policies=("chen", "hsm", "msm"))
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_plot_plan_validates() -> None:
    plan = solve(Chain(20, 1.0, 2.0), 8.0)
    with pytest.raises(ValueError, match="unknown policy 'auto'"):
        plot_plan(plan, "unused.png", policies=("auto",))
    with pytest.raises(ValueError, match="curve_points"):
        plot_plan(plan, "unused.png", curve_points=1)
    with pytest.raises(TypeError, match="must be a Plan"):
        plot_plan("plan", "unused.png")  # type: ignore[arg-type]


def test_tradeoff_curves_agree_with_solve() -> None:
    chain = Chain(120, 1.0, 3.0)
    curves = tradeoff_curves(chain)
    x, y = curves["store_all"]
    assert (x.tolist(), y.tolist()) == ([1.0], [1.0])
    x, y = curves["recompute_all"]
    assert y.tolist() == [121 / 2]
    assert x[0] == pytest.approx(2 / chain.store_all_peak)  # h0 and the running step's input
    chen = solve(chain, chain.store_all_peak, "chen")
    assert curves["chen"][1].tolist() == [chen.recompute_factor]
    for policy in ("hsm", "ism", "msm"):
        x, y = curves[policy]
        assert np.all(np.diff(x) > 0) and np.all(np.diff(y) <= 0)  # more memory, less work
        assert x[-1] <= 1.0 + 1e-12
        for xi, yi in zip(x[::17], y[::17], strict=True):  # each point is the planner's own answer
            plan = solve(chain, float(xi * chain.store_all_peak), policy)
            assert plan.recompute_factor == pytest.approx(yi)


def test_tradeoff_curves_long_sequences_use_few_solves() -> None:
    chain = Chain(1100, 1.0, 4.0)
    curves = tradeoff_curves(chain, ("msm",), curve_points=50)
    x, y = curves["msm"]
    assert 2 <= len(x) <= 7  # plot.LONG_CURVE_POINTS
    assert y[-1] == 1.0  # store-all at the right end
    assert np.all(np.diff(y) <= 0)


def test_schedule_downsampling_keeps_long_runs() -> None:
    chain = Chain(5000, 1.0, 4.0)
    plan = solve(chain, 20.0, "hsm")  # tens of thousands of short ops
    n_ops = simulate(plan).num_ops
    sched = _read_schedule(plan.ops, chain.length, max_drawn=800, max_read=10**7)
    drawn = sum(len(sched.segments(k)) for k in ("forward", "keep", "backward"))
    assert sched.ops_read == n_ops and sched.complete
    assert sched.stride > 1
    assert drawn <= 800
    assert sched.work == plan.forward_steps + chain.length  # every step back-propagated once
    first_sweep = sched.segments("forward")
    assert first_sweep[:, 3].max() >= 0.9 * chain.length  # the long sweeps survive
    cut = _read_schedule(plan.ops, chain.length, max_drawn=800, max_read=100)
    assert not cut.complete and cut.ops_read == 100
