"""Draw a plan: its schedule, and where it sits on the memory/compute trade-off.

The left panel is the schedule in the style of Gruslys et al. (2016), Figure 1: the x axis
is the order of computation (every step evaluated, forward or backward, advances it by
one), the y axis the time step. Forward sweeps that keep nothing are thin grey lines, runs
that keep internal states thick orange lines, back-propagation red descending lines, and
kept hidden states blue markers with a faint line for as long as they are held.

The right panel puts the plan among the policies: forward steps per time step (``C/T``)
against memory as a fraction of the store-all peak, with the baselines as points and the
optimal policies as curves over budgets from the smallest useful one up to store-all.

matplotlib is imported inside the functions and renders with Agg, pyplot untouched, so
the planner stays importable without it. Never torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from .baselines import chen_ops
from .chain import Chain
from .hierarchy import EXACT_LIMIT
from .hsm import hsm_cost
from .ops import Backward, Forward, ForwardKeep, FreeHidden, KeepHidden, Op, Plan
from .policy import POLICIES
from .simulate import simulate_ops, summary
from .solver import minimum_budget, solve
from .table import tables

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_plan", "tradeoff_curves"]

DEFAULT_POLICIES: Final = ("store_all", "recompute_all", "chen", "hsm", "ism", "msm")

_COLOURS: Final = {
    "store_all": "tab:green",
    "recompute_all": "tab:brown",
    "chen": "tab:purple",
    "hsm": "tab:blue",
    "ism": "tab:orange",
    "msm": "tab:red",
}

#: Segments drawn at most; past this, runs are thinned (short ones first) to every k-th.
MAX_DRAWN_OPS: Final = 20_000
#: Ops read from a plan at most; a longer plan is drawn up to there, with a note.
MAX_READ_OPS: Final = 2_000_000
#: Budgets per ISM/MSM curve when each point needs its own solve (beyond one exact table).
LONG_CURVE_POINTS: Final = 7
#: Longest sequence whose ISM/MSM curves may take ``curve_points`` solves (each is cheap).
_SHORT: Final = 300
#: Largest exact table (T * T * budget units) built to draw a whole ISM/MSM curve at once.
_TABLE_WORK: Final = 5_000_000_000


# ---------------------------------------------------------------------------------------
# The schedule: ops -> line segments
# ---------------------------------------------------------------------------------------


class _Sampler:
    """Keeps every ``stride``-th record, doubling the stride whenever ``cap`` is passed."""

    def __init__(self, cap: int) -> None:
        self.cap = max(cap, 2)
        self.stride = 1
        self.seen = 0
        self.items: list[tuple[float, ...]] = []

    def add(self, item: tuple[float, ...]) -> None:
        if self.seen % self.stride == 0:
            self.items.append(item)
            if len(self.items) > self.cap:
                self.items = self.items[::2]
                self.stride *= 2
        self.seen += 1

    def array(self, width: int) -> np.ndarray:
        return np.asarray(self.items, dtype=float).reshape(-1, width)


@dataclass
class _Schedule:
    """Segments to draw, per kind; long ones (visible at any zoom) sampled apart."""

    long: dict[str, _Sampler]
    short: dict[str, _Sampler]
    hidden: _Sampler  # (x kept, x freed, index)
    ops_read: int = 0
    work: int = 0  # forward + backward step evaluations read
    complete: bool = True

    @property
    def stride(self) -> int:
        samplers = [*self.long.values(), *self.short.values(), self.hidden]
        return max(s.stride for s in samplers)

    def segments(self, kind: str) -> np.ndarray:
        return np.concatenate([self.long[kind].array(4), self.short[kind].array(4)])


_KINDS: Final = ("forward", "keep", "backward")


def _read_schedule(ops: Iterable[Op], T: int, *, max_drawn: int, max_read: int) -> _Schedule:
    """One pass over ``ops``: segments in (computation order, time step) coordinates.

    Runs spanning at least ``T/500`` steps are kept apart from short ones, so that
    downsampling a plan with many short ops never drops the long sweeps that give the
    picture its shape.
    """
    cap = max(max_drawn // 8, 2)
    sched = _Schedule({k: _Sampler(3 * cap) for k in _KINDS}, {k: _Sampler(cap) for k in _KINDS},
                      _Sampler(cap))
    long_run = max(T / 500, 2)
    pending: list[float] | None = None  # the last run, extended while the next continues it
    pending_kind = ""

    def flush() -> None:
        if pending is not None:
            n = abs(pending[3] - pending[1])
            (sched.long if n >= long_run else sched.short)[pending_kind].add(tuple(pending))

    open_hidden: dict[int, int] = {}
    x = 0
    for op in ops:
        if sched.ops_read >= max_read:
            sched.complete = False
            break
        sched.ops_read += 1
        if isinstance(op, (Forward, ForwardKeep, Backward)):
            n = op.stop - op.start
            seg: list[float]
            if isinstance(op, Backward):
                kind = "backward"
                seg = [x, op.stop, x + n, op.start]
            else:
                kind = "keep" if isinstance(op, ForwardKeep) else "forward"
                seg = [x, op.start, x + n, op.stop]
            if pending is not None and kind == pending_kind and pending[2:] == seg[:2]:
                pending[2:] = seg[2:]  # e.g. a sweep interrupted only by KeepHidden
            else:
                flush()
                pending, pending_kind = seg, kind
            x += n
        elif isinstance(op, KeepHidden):
            open_hidden[op.index] = x
        elif isinstance(op, FreeHidden):
            sched.hidden.add((open_hidden.pop(op.index, 0), x, op.index))
    flush()
    for index, x0 in open_hidden.items():  # only when the plan was cut short
        sched.hidden.add((x0, x, index))
    sched.work = x
    return sched


def _segments(arr: np.ndarray) -> list[np.ndarray]:
    """(n, 4) rows of (x0, y0, x1, y1) -> the n (2, 2) point pairs LineCollection takes."""
    return list(arr.reshape(-1, 2, 2))


def _draw_schedule(ax: Axes, plan: Plan, *, max_drawn: int, max_read: int) -> None:
    from matplotlib.collections import LineCollection

    T = plan.chain.length
    sched = _read_schedule(plan.ops, T, max_drawn=max_drawn, max_read=max_read)
    hid = sched.hidden.array(3)
    if len(hid):
        ax.add_collection(LineCollection(
            _segments(hid[:, [0, 2, 1, 2]]),
            colors="tab:blue", linewidths=0.6, alpha=0.25, zorder=1))
    styles = (
        ("forward", "darkgrey" if T > 50 else "grey", 0.8, "forward, keeping nothing"),
        ("keep", "tab:orange", 3.0, "forward, keeping internal states"),
        ("backward", "tab:red", 2.0, "backward"),
    )
    for kind, colour, width, label in styles:
        arr = sched.segments(kind)
        ax.add_collection(LineCollection(_segments(arr), colors=colour, linewidths=width,
                                         capstyle="round", zorder=2))
        ax.plot([], [], color=colour, lw=width, label=label)  # legend handle
    if 0 < len(hid) <= 400:
        ax.scatter(hid[:, 0], hid[:, 2], s=14 if len(hid) < 100 else 6, c="tab:blue",
                   marker="o", zorder=3, label="hidden state kept (line: while held)")
    elif len(hid):
        ax.plot([], [], color="tab:blue", lw=0.8, alpha=0.5, label="hidden states held")
    ax.set_xlim(0, max(sched.work, 1) * 1.01)
    ax.set_ylim(0, T * 1.02)
    ax.set_xlabel("computation order (step evaluations, forward + backward)")
    ax.set_ylabel("time step t")
    notes = []
    if sched.stride > 1:
        notes.append(f"downsampled: down to 1 in {sched.stride} short runs drawn "
                     f"({sched.ops_read:,} ops)")
    if not sched.complete:
        notes.append(f"only the first {sched.ops_read:,} ops drawn")
    if notes:
        ax.text(0.99, 0.01, "; ".join(notes), transform=ax.transAxes, ha="right",
                va="bottom", fontsize=7, color="dimgrey")
    ax.legend(loc="upper left", fontsize=7, framealpha=0.9)
    ax.ticklabel_format(axis="both", style="sci", scilimits=(-3, 5))


# ---------------------------------------------------------------------------------------
# The trade-off: forward steps against memory, per policy
# ---------------------------------------------------------------------------------------


def _curve_budgets(chain: Chain, points: int) -> np.ndarray:
    """Log-spaced budgets from two hidden states (below that only recompute-all fits)."""
    lo, hi = 2 * chain.state_size, chain.store_all_peak
    if hi <= lo:
        return np.array([hi])
    return np.geomspace(lo, hi, max(points, 2))


def _optimal_curve(chain: Chain, policy: str, points: int) -> tuple[np.ndarray, np.ndarray]:
    """(budget, forward steps) along the ISM or MSM optimum."""
    T = chain.length
    u = chain.discretise(chain.store_all_peak)
    M = u.m - 1  # the table's widest column: just below store-all (which costs T)
    if T <= EXACT_LIMIT and 2 * u.s <= M and T * T * M <= _TABLE_WORK:
        # One exact table holds the optimum for every budget at once; solve() per budget
        # would rebuild a table each time (the solver's private _table, read-only here).
        C = tables(T, M, u.s, u.a, policy == "msm", True)
        ms = np.unique(np.geomspace(2 * u.s, M, 512).astype(int))
        return np.append(ms * u.unit, chain.store_all_peak), np.append(C[T, ms], T)
    if T > _SHORT:
        points = min(points, LONG_CURVE_POINTS)
    budgets = _curve_budgets(chain, points)
    costs = np.array([solve(chain, float(b), policy).forward_steps for b in budgets])
    return budgets, costs


def tradeoff_curves(
    chain: Chain, policies: Sequence[str] = DEFAULT_POLICIES, *, curve_points: int = 24
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Memory (fraction of the store-all peak) and ``C/T`` for each policy.

    Baselines give one point each (their own peak); ``hsm`` (closed form) and
    ``ism``/``msm`` give curves over budgets from two hidden states (``h[0]`` and the
    input of the step being back-propagated) up to store-all.
    Up to ``EXACT_LIMIT`` steps one exact table gives a whole ISM/MSM curve; beyond, the
    hierarchical planner is solved at a few budgets.
    """
    T, s, full = chain.length, chain.state_size, chain.store_all_peak
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for policy in policies:
        if policy not in POLICIES or policy == "auto":
            raise ValueError(
                f"plot_plan: unknown policy {policy!r} in policies; expected some of "
                f"{', '.join(DEFAULT_POLICIES)}"
            )
        if policy == "store_all":
            x, y = np.array([full]), np.array([T])
        elif policy == "recompute_all":  # keeps h[0] and the running step's input
            x, y = np.array([minimum_budget(chain)]), np.array([T * (T + 1) // 2])
        elif policy == "chen":
            sim = simulate_ops(chen_ops(T), chain)
            x, y = np.array([sim.peak]), np.array([sim.forward_steps])
        elif policy == "hsm":  # c states: c - 1 checkpoints and the running step's input
            least = 1 if T == 1 else 2
            cmax = max(least, math.floor(full / s + 1e-9))
            cs = np.unique(np.geomspace(least, cmax, 256).astype(int))
            x = cs * s
            y = np.array([hsm_cost(T, int(c) - (least - 1)) for c in cs])
        else:
            x, y = _optimal_curve(chain, policy, curve_points)
        out[policy] = (np.asarray(x, dtype=float) / full, np.asarray(y, dtype=float) / T)
    return out


def _draw_tradeoff(ax: Axes, plan: Plan, policies: Sequence[str], curve_points: int) -> None:
    chain = plan.chain
    full = chain.store_all_peak
    curves = tradeoff_curves(chain, policies, curve_points=curve_points)
    for policy, (x, y) in curves.items():
        colour = _COLOURS[policy]
        if len(x) == 1:
            ax.scatter(x, y, s=60, color=colour, edgecolor="black", zorder=4, label=policy)
        else:
            ax.step(x, y, where="post", color=colour, lw=1.6, label=policy, zorder=3,
                    ls="--" if policy == "ism" else "-", marker="." if len(x) <= 32 else None)
    ax.axvline(plan.budget / full, color="black", ls=":", lw=1)
    ax.text(plan.budget / full, 0.98, " budget", transform=ax.get_xaxis_transform(),
            fontsize=7, va="top")
    ax.scatter([summary(plan).peak / full], [plan.recompute_factor], marker="*", s=260,
               color="gold", edgecolor="black", zorder=5,
               label=f"this plan ({plan.policy}): C/T = {plan.recompute_factor:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("peak memory / store-all peak (curves: budget)")
    ax.set_ylabel("forward steps per time step, C/T")
    ax.set_title("memory vs compute (lower left is better)", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def _title(plan: Plan) -> str:
    chain = plan.chain
    sim = summary(plan)
    if plan.policy in ("store_all", "recompute_all", "chen"):
        how = "baseline"
    else:
        how = "exact" if plan.exact else "hierarchical"
    return (
        f"{plan.policy} ({how}): T = {chain.length:,}, budget = "
        f"{plan.budget / chain.state_size:,.0f} hidden states "
        f"({100 * plan.budget / chain.store_all_peak:.3g}% of store-all), alpha = "
        f"{chain.alpha:.3g}\nC = {plan.forward_steps:,} forward steps = "
        f"{plan.recompute_factor:.3f} T, peak {100 * sim.peak / chain.store_all_peak:.3g}% "
        f"of store-all, {sim.runs:,} forward runs"
    )


def plot_plan(
    plan: Plan,
    path: str | os.PathLike[str],
    *,
    policies: Sequence[str] = DEFAULT_POLICIES,
    curve_points: int = 24,
    max_drawn_ops: int = MAX_DRAWN_OPS,
) -> None:
    """Write a PNG of ``plan``: its schedule (left) and the memory/compute trade-off (right).

    Args:
        plan: the plan to draw.
        path: where to write the PNG.
        policies: policies drawn on the trade-off panel (baselines as points, optimal
            policies as curves); empty to leave the panel's curves out.
        curve_points: budgets per ISM/MSM curve when one exact table cannot give the
            whole curve (beyond ``EXACT_LIMIT`` steps, or a table too wide), each a
            separate solve; at most ``LONG_CURVE_POINTS`` beyond 300 steps.
        max_drawn_ops: past this many ops the schedule is drawn downsampled.

    Plans longer than ``MAX_READ_OPS`` ops are drawn up to there, with a note.

    Example::

        >>> from mbrnn.plan import Chain, solve
        >>> from mbrnn.plan.plot import plot_plan
        >>> plot_plan(solve(Chain(200, 1.0, 4.0), 40.0), "plan.png")  # doctest: +SKIP
    """
    if not isinstance(plan, Plan):
        raise TypeError(f"plot_plan: plan must be a Plan, got {type(plan).__name__}")
    if isinstance(curve_points, bool) or not isinstance(curve_points, int) or curve_points < 2:
        raise ValueError(f"plot_plan: curve_points must be an int >= 2, got {curve_points!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 6.2), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without touching pyplot's global backend
    left, right = fig.subplots(1, 2, width_ratios=(1.35, 1))
    _draw_schedule(left, plan, max_drawn=max_drawn_ops, max_read=MAX_READ_OPS)
    _draw_tradeoff(right, plan, policies, curve_points)
    fig.suptitle(_title(plan), fontsize=10)
    fig.savefig(os.fspath(path), dpi=110)
