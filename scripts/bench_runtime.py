"""Benchmark budgeted BPTT at run time: time per training step against peak memory.

For the built-in LSTM cell (``mbrnn.LSTMCell(256, 256)``, batch 32) run through
``mbrnn.Recurrent`` (the per-step Python loop), each policy is run at a ladder of budgets
from the store-all peak down to the policy's minimum, and compared in the same run with
two baselines over the same cell and the same loss:

- ``plain``: plain autograd, a Python loop of ``cell(x[t], state)`` (keeps everything);
- ``checkpoint``: ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`` over
  chunks of ``ceil(sqrt(T))`` steps of that loop (Chen et al. 2016's sqrt(T) scheme).

The loss is per step, ``(y * w).sum()`` with a fixed random ``w`` of the output's shape
(T, B, H). A training step is forward + loss + backward; parameter gradients are reset
to ``None`` before each.

What is measured, per point:

- ``measured_peak``: :func:`mbrnn.runtime.memory.measure_peak` (the CPU storage tracker)
  around one training step: every tensor byte allocated inside it, above what was live.
- ``bptt_peak = measured_peak - io_bytes``, where ``io_bytes = 2 * T * B * H * 4``: the
  output ``y`` and either the loss's ``y * w`` temporary (forward) or ``dL/dy``
  (backward), the caller's tensors that ``memory_budget`` does not cover (NOTE [ What
  the budget covers ] in :mod:`mbrnn.runtime.budget`). ``within_budget`` checks
  ``bptt_peak <= budget``.
- ``seconds``: the median of ``repeats`` (>= 5 by default) ``time.perf_counter`` timings
  of a training step, after the memory run and ``warmup`` untimed steps. The repeats are
  interleaved across all points of one ``T`` (round-robin, every other round reversed),
  so that a slow spell of a shared machine spreads over every method rather than
  landing on one. The table also gives the best (minimum) time, the steadier figure
  when other work shares the machine.
- ``forward_steps``: the plan's forward steps (``T`` = no recomputation) and the steps the
  executor actually ran (``executed_forward_steps``).

The ladder for each policy is ``fractions`` of the store-all predicted peak
(``plan_for(..., memory_budget=huge).predicted_peak`` under ``store_all``) plus the
policy's own minimum (``Recurrent.minimum_budget``). A fraction below the minimum is
recorded ``infeasible``; a rung whose plan equals the previous rung's (chen and store_all
have a fixed shape) is recorded ``same_plan``. A point predicted to take longer than
``--max-point-seconds`` over all its runs is recorded ``skipped`` with the reason; the
prediction is ``t_plain + (forward_steps - T) * t_forward`` per step, from the plain
baseline's time and a no-grad sweep's time per step. From ``T >= long_from`` only
``long_fractions`` (and the minimum) are tried, to keep the full run within ~25 minutes
on two cores.

Results go to ``<out>/runtime.json`` and ``<out>/runtime.png`` (memory against time,
one curve per method and one panel per ``T``); the markdown table goes to stdout.

Usage::

    python scripts/bench_runtime.py                     # the full run (~25 min, 2 cores)
    python scripts/bench_runtime.py --quick --out /tmp/b  # a smoke test, seconds
    python scripts/bench_runtime.py --T 1000 --policies msm chen --repeats 7
    python scripts/bench_runtime.py --T 5000 --policies msm --merge  # add to runtime.json
    python scripts/bench_runtime.py --replot             # table + PNG from runtime.json

The JSON holds ``runs`` (each command, its config and machine), ``lengths`` (per ``T``:
the figures above and the run that measured it) and ``rows`` (one per point, measured or
not). It is rewritten after every length, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

import mbrnn
from mbrnn.runtime.memory import measure_peak

POLICIES = ("store_all", "chen", "hsm", "ism", "msm", "auto")
COLOURS = {"store_all": "tab:green", "chen": "tab:purple", "hsm": "tab:blue",
           "ism": "tab:orange", "msm": "tab:red", "auto": "black",
           "plain": "tab:grey", "checkpoint": "tab:brown"}
STYLE: dict[str, dict[str, Any]] = {  # ism, msm and auto often coincide: keep all visible
    "store_all": {"marker": "s", "ms": 7, "ls": "-"},
    "chen": {"marker": "P", "ms": 9, "ls": "-"},
    "hsm": {"marker": "^", "ms": 7, "ls": "-"},
    "ism": {"marker": "o", "ms": 10, "ls": "-", "mfc": "none", "lw": 2.5, "alpha": 0.7},
    "msm": {"marker": "o", "ms": 5, "ls": "-"},
    "auto": {"marker": "x", "ms": 8, "ls": "--", "lw": 1},
}
MIB = 2.0**20


@dataclass(frozen=True)
class BenchConfig:
    lengths: tuple[int, ...] = (100, 1_000, 5_000)
    batch: int = 32
    input_size: int = 256
    hidden_size: int = 256
    policies: tuple[str, ...] = POLICIES
    fractions: tuple[float, ...] = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02)
    long_from: int = 2_000  # from this T on, only long_fractions (and the minimum)
    long_fractions: tuple[float, ...] = (0.2, 0.05)
    repeats: int = 5
    warmup: int = 1
    max_point_seconds: float = 90.0  # skip a point whose runs together are predicted longer
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    seed: int = 0


QUICK = BenchConfig(
    lengths=(8, 20),
    batch=2,
    input_size=4,
    hidden_size=8,
    fractions=(1.0, 0.6),
    long_from=16,
    long_fractions=(1.0, 0.6),
    repeats=5,
    warmup=1,
    max_point_seconds=10.0,
    threads=1,  # tiny steps: a second intra-op thread only adds synchronisation
)


@dataclass
class Row:
    T: int
    method: str  # "plain", "checkpoint" or "mbrnn"
    policy: str | None  # the mbrnn policy asked for
    label: str  # "100%", "5%", "min" (a rung of the ladder) or the baseline's name
    status: str  # "ok", "infeasible", "same_plan" or "skipped"
    reason: str = ""
    fraction: float | None = None  # of the store-all predicted peak; None for "min"
    budget: int | None = None
    minimum_budget: int | None = None
    chosen: str | None = None  # the policy the plan used (what "auto" picked)
    forward_steps: int | None = None
    executed_forward_steps: int | None = None
    predicted_peak: int | None = None
    predicted_seconds: float | None = None
    measured_peak: int | None = None
    bptt_peak: int | None = None
    within_budget: bool | None = None
    seconds: float | None = None
    times: list[float] = field(default_factory=list)
    ratio_to_plain: float | None = None


@dataclass
class LengthInfo:
    T: int
    io_bytes: int
    store_all_peak: int
    checkpoint_chunk: int
    forward_step_seconds: float  # a no-grad step, for the skip prediction
    plain_seconds_estimate: float  # one plain training step, for the skip prediction
    minimum_budgets: dict[str, int] = field(default_factory=dict)
    run: int = 0  # the index in "runs" (the command) that measured this length


# ---------------------------------------------------------------------------------------
# The three ways to run a training step
# ---------------------------------------------------------------------------------------


def loss_fn(y: Tensor, w: Tensor) -> Tensor:
    return (y * w).sum()


def plain_step(cell: mbrnn.LSTMCell, x: Tensor, w: Tensor) -> None:
    state = cell.init_state(x.shape[1], dtype=x.dtype)
    ys = []
    for x_t in x.unbind(0):
        y, state = cell(x_t, state)
        ys.append(y)
    y = torch.stack(ys)
    del ys, state  # as Recurrent's own loop: only y (and the graph) outlive the forward
    loss_fn(y, w).backward()


def _chunk(cell: mbrnn.LSTMCell, x: Tensor, h: Tensor, c: Tensor
           ) -> tuple[Tensor, Tensor, Tensor]:
    ys = []
    state = (h, c)
    for x_t in x.unbind(0):
        y, state = cell(x_t, state)
        ys.append(y)
    return torch.stack(ys), state[0], state[1]


def checkpoint_step(cell: mbrnn.LSTMCell, x: Tensor, w: Tensor, chunk: int) -> None:
    h, c = cell.init_state(x.shape[1], dtype=x.dtype)
    outs = []
    for start in range(0, x.shape[0], chunk):
        ys, h, c = checkpoint(_chunk, cell, x[start : start + chunk], h, c,
                              use_reentrant=False)
        outs.append(ys)
    y = torch.cat(outs)
    del outs, ys, h, c  # the chunks' outputs: y is their copy, holding them would double it
    loss_fn(y, w).backward()


def mbrnn_step(rnn: mbrnn.Recurrent, x: Tensor, w: Tensor, *, budget: int) -> None:
    rnn.memory_budget = budget  # one module per policy, its probe shared by every rung
    y, _ = rnn(x)
    loss_fn(y, w).backward()


# ---------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


@dataclass
class Point:
    """A row being measured and the step that measures it."""

    row: Row
    run: Callable[[], None]


def _zero_grad(cell: mbrnn.LSTMCell) -> None:
    for p in cell.parameters():
        p.grad = None


def timed(cell: mbrnn.LSTMCell, run: Callable[[], None]) -> float:
    _zero_grad(cell)
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def measured(cell: mbrnn.LSTMCell, run: Callable[[], None]) -> int:
    _zero_grad(cell)
    gc.collect()
    return measure_peak(run, device="cpu")


def predict_seconds(plain_seconds: float, forward_seconds: float, T: int,
                    forward_steps: int) -> float:
    """One training step under a plan: plain's time plus a no-grad step per recompute."""
    return plain_seconds + max(0, forward_steps - T) * forward_seconds


def point_seconds(step_seconds: float, cfg: BenchConfig) -> float:
    """All runs of one point: the memory run (counted twice: the tracker is slower),
    the warm-up and the timed repeats."""
    return step_seconds * (2 + cfg.warmup + cfg.repeats)


def ladder(cfg: BenchConfig, T: int) -> tuple[float, ...]:
    return cfg.long_fractions if cfg.long_from <= T else cfg.fractions


def prepare_length(cfg: BenchConfig, T: int, log: Callable[[str], None]
                   ) -> tuple[LengthInfo, list[Row], list[Point], mbrnn.LSTMCell]:
    """Measure memory (and warm up) every point of one length; return what to time."""
    B, F, H = cfg.batch, cfg.input_size, cfg.hidden_size
    torch.manual_seed(cfg.seed)
    cell = mbrnn.LSTMCell(F, H)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.randn(T, B, F, generator=gen)
    w = torch.randn(T, B, H, generator=gen)
    io_bytes = 2 * T * B * H * x.element_size()
    chunk = math.ceil(math.sqrt(T))
    rows: list[Row] = []
    points: list[Point] = []

    def add(row: Row, run: Callable[[], None], budget: int | None) -> int:
        peak = measured(cell, run)
        row.measured_peak, row.bptt_peak = peak, peak - io_bytes
        if budget is not None:
            row.within_budget = row.bptt_peak <= budget
        for _ in range(cfg.warmup):
            timed(cell, run)
        rows.append(row)
        points.append(Point(row, run))
        return peak - io_bytes

    # the baselines, and the figures the skip prediction needs
    plain_peak = add(Row(T, "plain", None, "plain", "ok"), lambda: plain_step(cell, x, w), None)
    plain_estimate = timed(cell, lambda: plain_step(cell, x, w))
    ckpt_peak = add(Row(T, "checkpoint", None, f"sqrt(T)={chunk}", "ok"),
                    lambda: checkpoint_step(cell, x, w, chunk), None)
    with torch.no_grad():
        t0 = time.perf_counter()
        mbrnn.Recurrent(cell)(x)  # the plain sweep; without grad, nothing is kept
        forward_seconds = (time.perf_counter() - t0) / T
    probe = mbrnn.Recurrent(cell, policy="store_all")
    store_peak = probe.plan_for(T, B, memory_budget=2**50).predicted_peak
    info = LengthInfo(T, io_bytes, store_peak, chunk, forward_seconds, plain_estimate)
    log(f"T={T}: plain {plain_estimate:.3f} s/step, no-grad forward {forward_seconds * 1e3:.3f}"
        f" ms/step, store-all peak {store_peak / MIB:.2f} MiB, y + dL/dy {io_bytes / MIB:.2f} MiB;"
        f" measured peak (- y, dL/dy): plain {plain_peak / MIB:.2f} MiB, checkpoint "
        f"{ckpt_peak / MIB:.2f} MiB")

    for policy in cfg.policies:
        rnn = mbrnn.Recurrent(cell, memory_budget=store_peak, policy=policy)
        minimum = rnn.minimum_budget(T, B)
        info.minimum_budgets[policy] = minimum
        rungs: list[tuple[str, float | None, int]] = [
            (f"{f:.0%}", f, int(f * store_peak)) for f in ladder(cfg, T)]
        if all(minimum != b for _, _, b in rungs):
            rungs.append(("min", None, minimum))
        previous: tuple[Row, tuple[int, int, str]] | None = None
        for label, frac, budget in rungs:
            row = Row(T, "mbrnn", policy, label, "ok", fraction=frac, budget=budget,
                      minimum_budget=minimum)
            if budget < minimum:
                row.status = "infeasible"
                row.reason = (f"budget {budget / MIB:.2f} MiB < minimum {minimum / MIB:.2f} MiB")
                rows.append(row)
                continue
            bp = rnn.plan_for(T, B, memory_budget=budget)
            row.chosen = bp.plan.policy
            row.forward_steps = bp.plan.forward_steps
            row.predicted_peak = bp.predicted_peak
            key = (bp.plan.forward_steps, bp.kept_peak, bp.plan.policy)
            if previous is not None and previous[1] == key:
                row.status = "same_plan"
                row.reason = f"the same plan as {previous[0].label}"
                rows.append(row)
                continue
            row.predicted_seconds = predict_seconds(plain_estimate, forward_seconds, T,
                                                    bp.plan.forward_steps)
            total = point_seconds(row.predicted_seconds, cfg)
            if total > cfg.max_point_seconds:
                row.status = "skipped"
                row.reason = (f"{bp.plan.forward_steps} forward steps: predicted "
                              f"{row.predicted_seconds:.1f} s/step, {total:.0f} s for the point "
                              f"> --max-point-seconds {cfg.max_point_seconds:g}")
                rows.append(row)
                log(f"T={T} {policy} {label}: skipped ({row.reason})")
                continue
            previous = (row, key)
            bptt = add(row, lambda r=rnn, b=budget: mbrnn_step(r, x, w, budget=b), budget)
            stats = rnn.last_stats
            row.executed_forward_steps = None if stats is None else stats.forward_steps
            log(f"T={T} {policy} {label}: {row.chosen} forward {bp.plan.forward_steps} "
                f"(x{bp.plan.forward_steps / T:.2f}), bptt peak {bptt / MIB:.2f} MiB "
                f"of budget {budget / MIB:.2f} MiB (predicted {bp.predicted_peak / MIB:.2f})")
    return info, rows, points, cell


def time_points(cfg: BenchConfig, cell: mbrnn.LSTMCell, points: Sequence[Point],
                log: Callable[[str], None]) -> None:
    """``cfg.repeats`` rounds, each timing every point once (round-robin), every other
    round in reverse order, so that load rising or falling within rounds averages out."""
    for r in range(cfg.repeats):
        gc.collect()  # once a round: a full collection costs more than a small step
        t0 = time.perf_counter()
        for pt in (points if r % 2 == 0 else points[::-1]):
            pt.row.times.append(timed(cell, pt.run))
        log(f"  T={points[0].row.T} round {r + 1}/{cfg.repeats}: "
            f"{time.perf_counter() - t0:.1f} s")
    for pt in points:
        pt.row.seconds = statistics.median(pt.row.times)


def bench_length(cfg: BenchConfig, T: int, log: Callable[[str], None]
                 ) -> tuple[LengthInfo, list[Row]]:
    info, rows, points, cell = prepare_length(cfg, T, log)
    time_points(cfg, cell, points, log)
    plain = next(pt.row for pt in points if pt.row.method == "plain")
    for row in rows:
        if row.seconds is not None and plain.seconds:
            row.ratio_to_plain = row.seconds / plain.seconds
    return info, rows


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------


def _mib(v: float | None) -> str:
    return "-" if v is None else f"{v / MIB:.2f}"


def format_table(infos: Sequence[LengthInfo], rows: Sequence[Row]) -> str:
    """One markdown table per length: every rung, measured or not."""
    out: list[str] = []
    for info in infos:
        out.append(f"**T = {info.T:,}** (store-all predicted peak {_mib(info.store_all_peak)} "
                   f"MiB; y + dL/dy = {_mib(info.io_bytes)} MiB, not in the budget)")
        out.append("")
        out.append("| method | budget | budget MiB | plan | forward steps | predicted MiB "
                   "| measured MiB (- y, dL/dy) | total MiB | s/step (median) | x plain "
                   "| s/step (best) |")
        out.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            if r.T != info.T:
                continue
            name = r.method if r.policy is None else r.policy
            budget = r.label if r.method == "mbrnn" else "-"
            if r.status != "ok":
                note = {"infeasible": "infeasible", "same_plan": "same plan as above",
                        "skipped": "skipped (time cap)"}[r.status]
                steps = "-" if r.forward_steps is None else f"{r.forward_steps:,}"
                out.append(f"| {name} | {budget} | {_mib(r.budget)} | {note} | {steps} "
                           "| | | | | | |")
                continue
            plan = r.chosen if r.method == "mbrnn" else r.label
            steps = f"{r.forward_steps:,} (x{r.forward_steps / r.T:.2f})" \
                if r.forward_steps is not None else f"{r.T:,}" + (
                    " + recompute" if r.method == "checkpoint" else "")
            flag = "" if r.within_budget is not False else " OVER"
            secs = "-" if r.seconds is None else f"{r.seconds:.3f}"
            ratio = "-" if r.ratio_to_plain is None else f"{r.ratio_to_plain:.2f}"
            best = f"{min(r.times):.3f}" if r.times else "-"
            out.append(f"| {name} | {budget} | {_mib(r.budget)} | {plan} | {steps} "
                       f"| {_mib(r.predicted_peak)} | {_mib(r.bptt_peak)}{flag} "
                       f"| {_mib(r.measured_peak)} | {secs} | {ratio} | {best} |")
        out.append("")
    return "\n".join(out)


def plot(infos: Sequence[LengthInfo], rows: Sequence[Row], path: Path, title: str) -> None:
    """Memory against time, one panel per ``T``: a curve per policy along its budget ladder
    (msm's points labelled with their budget), a marker per baseline. Log-log; the top
    axis is the time relative to plain autograd. The lower left (fast and small) is empty
    by nature, so the legend goes there."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    n = len(infos)
    fig = Figure(figsize=(max(7.0, 6.0 * n), 6.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    plain_g = FuncFormatter(lambda v, _pos: f"{v:g}")
    for ax, info in zip(axes, infos, strict=True):
        ok = [r for r in rows if r.T == info.T and r.status == "ok"
              and r.seconds is not None and r.bptt_peak is not None]
        for policy in POLICIES:  # along the ladder: from the most memory to the least
            mine = sorted((r for r in ok if r.policy == policy),
                          key=lambda r: -(r.bptt_peak or 0))
            if not mine:
                continue
            xs = [r.seconds for r in mine]
            ys = [(r.bptt_peak or 0) / MIB for r in mine]
            ax.plot(xs, ys, label=f"mbrnn {policy}", color=COLOURS[policy], **STYLE[policy])
            if policy == "msm":
                for r, x, y in zip(mine, xs, ys, strict=True):
                    ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(6, 3),
                                fontsize=7, color=COLOURS[policy])
        for r in ok:
            if r.method == "plain":
                ax.plot([r.seconds], [(r.bptt_peak or 0) / MIB], marker="*", ms=15, ls="none",
                        color=COLOURS["plain"], mec="black", label="plain autograd")
            elif r.method == "checkpoint":
                chunk = r.label.removeprefix("sqrt(T)=")
                ax.plot([r.seconds], [(r.bptt_peak or 0) / MIB], marker="D", ms=9, ls="none",
                        color=COLOURS["checkpoint"], mec="black",
                        label=f"torch checkpoint, {chunk}-step chunks")
        plain = next((r.seconds for r in ok if r.method == "plain"), None)
        ax.set_xscale("log")  # (resets the ticks: set them after)
        ax.set_yscale("log")
        for axis, subs in ((ax.xaxis, (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)),
                           (ax.yaxis, (1.0, 2.0, 5.0))):
            axis.set_major_locator(LogLocator(subs=subs))
            axis.set_major_formatter(plain_g)
            axis.set_minor_formatter(NullFormatter())
        if plain:
            top = ax.secondary_xaxis("top", functions=(lambda v, p=plain: v / p,
                                                       lambda v, p=plain: v * p))
            top.set_xlabel("time / plain autograd", fontsize=9)
            top.xaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0)))
            top.xaxis.set_major_formatter(plain_g)
            top.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("time per training step (s, median)")
        ax.set_title(f"T = {info.T:,} (chunks of {info.checkpoint_chunk} for checkpoint)",
                     fontsize=11)
        ax.grid(True, which="both", alpha=0.25)
    handles: dict[str, Any] = {}  # one legend for all panels, below them
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label.startswith("torch checkpoint"):
                label = "torch checkpoint (sqrt(T)-step chunks)"
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(len(handles), 4 if n == 1 else 8), fontsize=8, frameon=False)
    axes[0].set_ylabel("measured peak memory, minus y and dL/dy (MiB)")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)


def _title(data: dict[str, Any]) -> str:
    info = data["machine"]
    cfgs = [run["config"] for run in data["runs"]]
    threads = sorted({run["machine"]["torch_threads"] for run in data["runs"]})
    cfg = cfgs[-1]
    return (f"mbrnn budgeted BPTT: LSTMCell({cfg['input_size']}, {cfg['hidden_size']}), "
            f"batch {cfg['batch']}, loss (y*w).sum(), median of {cfg['repeats']}\n"
            f"{info['cpu']}, {info['nproc']} CPUs, {'/'.join(map(str, threads))} torch "
            f"thread(s), torch {info['torch']}")


def _load(path: Path) -> tuple[dict[str, Any], list[LengthInfo], list[Row]]:
    data = json.loads(path.read_text())
    infos = [LengthInfo(**d) for d in data["lengths"]]
    rows = [Row(**d) for d in data["rows"]]
    return data, infos, rows


def _save(out: Path, data: dict[str, Any], infos: Sequence[LengthInfo],
          rows: Sequence[Row]) -> tuple[Path, Path]:
    """Write the JSON and the PNG; lengths and rows sorted by ``T``."""
    infos = sorted(infos, key=lambda i: i.T)
    rows = sorted(rows, key=lambda r: r.T)  # stable: a length's rows keep their order
    data = {**data, "lengths": [asdict(i) for i in infos], "rows": [asdict(r) for r in rows]}
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "runtime.json", out / "runtime.png"
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    plot(infos, rows, png_path, _title(data))
    return json_path, png_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark budgeted BPTT: time per training step against peak memory.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="output folder")
    parser.add_argument("--T", type=int, nargs="+", default=None, help="sequence lengths")
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=None)
    parser.add_argument("--fractions", type=float, nargs="+", default=None,
                        help="budgets as fractions of the store-all peak, for every T")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5)")
    parser.add_argument("--max-point-seconds", type=float, default=None,
                        help="skip a point predicted to take longer (default 90; quick 10)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's; quick: 1)")
    parser.add_argument("--merge", action="store_true",
                        help="add to <out>/runtime.json, replacing the lengths run again")
    parser.add_argument("--replot", action="store_true",
                        help="redraw the PNG and print the table from <out>/runtime.json")
    parser.add_argument("--quiet", action="store_true", help="print only the final table")
    args = parser.parse_args(argv)
    if args.replot:
        data, infos, rows = _load(args.out / "runtime.json")
        _save(args.out, data, infos, rows)
        print(format_table(infos, rows))
        return 0

    cfg = QUICK if args.quick else BenchConfig()
    if args.T is not None:
        if min(args.T) < 1:
            parser.error("--T must be >= 1")
        cfg = replace(cfg, lengths=tuple(args.T))
    if args.policies is not None:
        cfg = replace(cfg, policies=tuple(args.policies))
    if args.fractions is not None:
        if not all(0 < f <= 1 for f in args.fractions):
            parser.error("--fractions must be in (0, 1]")
        cfg = replace(cfg, fractions=tuple(args.fractions), long_fractions=tuple(args.fractions))
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error("--repeats must be >= 1")
        cfg = replace(cfg, repeats=args.repeats)
    if args.max_point_seconds is not None:
        cfg = replace(cfg, max_point_seconds=args.max_point_seconds)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        cfg = replace(cfg, threads=args.threads)

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    data: dict[str, Any] = {"runs": []}
    infos: list[LengthInfo] = []
    rows: list[Row] = []
    if args.merge and (args.out / "runtime.json").exists():
        data, infos, rows = _load(args.out / "runtime.json")
        infos = [i for i in infos if i.T not in cfg.lengths]
        rows = [r for r in rows if r.T not in cfg.lengths]
    command = " ".join(["python", "scripts/bench_runtime.py",
                        *(sys.argv[1:] if argv is None else argv)])
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    gc.collect()
    gc.freeze()  # torch's own objects: later collections need not walk them again
    try:
        info = machine()
        run = {"command": command, "config": asdict(cfg), "quick": args.quick,
               "machine": info, "total_seconds": 0.0, "lengths": []}
        data = {**data, "machine": info, "runs": [*data["runs"], run]}
        t0 = time.perf_counter()
        for T in cfg.lengths:
            length, length_rows = bench_length(cfg, T, log)
            length.run = len(data["runs"]) - 1
            infos.append(length)
            rows.extend(length_rows)
            run["lengths"].append(T)
            run["total_seconds"] = time.perf_counter() - t0
            json_path, _ = _save(args.out, data, infos, rows)  # after every length
            log(f"T={T} done at {run['total_seconds']:.0f} s; wrote {json_path}")
    finally:  # leave the process as it was (the smoke test calls main in-process)
        gc.unfreeze()
        torch.set_num_threads(threads)
    infos.sort(key=lambda i: i.T)
    rows.sort(key=lambda r: r.T)
    print(f"machine: {info['cpu']}, {info['nproc']} CPUs, {info['torch_threads']} torch "
          f"threads ({info['platform']})")
    print(format_table(infos, rows))
    print(f"total {run['total_seconds']:.0f} s; wrote {args.out / 'runtime.json'} and "
          f"{args.out / 'runtime.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
