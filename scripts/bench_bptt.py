"""Benchmark a training step: torch.nn.LSTM, torch.utils.checkpoint and mbrnn.LSTM.

For each configuration ``T x H x layers`` (batch ``B``, input size ``H``) one training
step is forward, a per-step loss (the mean squared error against a target at every
step) and backward. For each method the script records, in one run on one machine:

- ``seconds``: the median of ``--repeats`` timed steps (>= 5 for reported numbers), the
  methods of one configuration timed round-robin so that drifting load hits them alike;
- ``peak_bytes``: the peak tensor memory of one step (``mbrnn.runtime.memory``: a
  dispatch-mode meter on CPU, the allocator's counters on CUDA);
- ``rnn_bytes``: the recurrence's own peak: forward, then ``y.backward(g)`` with ``g``
  allocated beforehand, less the output ``y``. Only the parameters' gradients are live
  beside it (counted, as in mbrnn's budget), so this is the memory the recurrence needs,
  whatever surrounds it. checkpoint back-propagates its output's pieces without
  concatenating them here. nn.LSTM's ``rnn_bytes`` is its
  *activation memory*, mbrnn's budgets are fractions of it, and the budget bounds
  mbrnn's ``rnn_bytes`` (NOTE [ Two memory figures ]);
- ``bptt_bytes``: ``peak_bytes`` minus the I/O baseline, the peak of the same loss and
  its backward on a stand-in output (the output, the loss's temporaries and ``dL/dy``);
- ``min_seconds``: the fastest of those steps (less sensitive to a shared machine);
- ``max_grad_diff``: the largest parameter-gradient difference to nn.LSTM's, relative
  to the largest gradient.

Methods: ``nn.LSTM`` (plain BPTT, the speed anchor, cuDNN on CUDA); ``checkpoint``:
the same module run in ``round(sqrt(T))``-step chunks under
``torch.utils.checkpoint.checkpoint(use_reentrant=False)``; ``mbrnn store_all``;
``mbrnn <p>% <policy>`` with ``memory_budget`` = p % of nn.LSTM's activation memory;
``mbrnn @checkpoint auto``: mbrnn with the checkpoint run's ``rnn_bytes`` as budget,
for the comparison at equal memory. The long run (``--long-T``) times mbrnn (and the
checkpoint baseline) at a length where plain BPTT cannot fit: its memory is extrapolated
from a measured ``T = 1000`` run (activation and I/O bytes are linear in ``T``) and
compared with the machine's RAM; it is not run.

NOTE [ Two memory figures ]
The whole step's peak comes while the loss runs: the output, the loss's temporaries and
``dL/dy`` (several sequence-sized tensors) plus whatever the recurrence holds between its
forward and backward passes. Work the recurrence does later, in its backward pass, can
hide under the temporaries freed by then: ``torch.utils.checkpoint`` recomputes a whole
chunk there, and its ``bptt_bytes`` shows only its saved chunk boundaries. So
``bptt_bytes`` depends on the loss; ``rnn_bytes`` does not, and it is what a budget
means. The comparison at equal memory uses ``rnn_bytes``; the targets also report the
fastest mbrnn run within checkpoint's whole-step peak.

NOTE [ Threads ]
On CPU the default is one intra-op thread. On a small machine shared with other jobs,
OpenMP's spin-waiting threads made the same step vary by up to 100x between runs with
two threads (a descheduled thread stalls every barrier); with one thread it is stable.
Every method runs with the same setting; ``--threads`` overrides it.

Writes ``<out>/bptt.json``, ``<out>/bptt_memory_time.png`` (time against memory per
configuration) and ``<out>/bptt_time_vs_T.png``. ``--append`` merges into an existing
JSON (rows replaced by configuration and method), so a long grid can run in pieces; the
JSON is rewritten after every configuration, so a stopped run keeps what it measured.

Usage::

    python scripts/bench_bptt.py --quick                      # smoke test, seconds
    python scripts/bench_bptt.py --configs 1000x256x1 --out bench
    python scripts/bench_bptt.py --configs 100x256x1 100x256x2 --append
    python scripts/bench_bptt.py --configs --long-T 100000 --long-H 128 --append
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mbrnn import LSTM, InfeasibleBudgetError
from mbrnn.runtime.memory import measure_peak

POLICIES = ("auto", "msm", "ism", "hsm", "chen")
FRACTIONS = (0.5, 0.2, 0.1, 0.05, 0.02)
TARGET = (1000, 256, 1)  # T, H, layers of the target row (B = 32)


# ---------------------------------------------------------------------------------------
# One training step per method
# ---------------------------------------------------------------------------------------


def _loss(y: Tensor, target: Tensor) -> Tensor:
    return (y - target).square().mean()


def _checkpointed(lstm: nn.LSTM, x: Tensor, chunk: int) -> list[Tensor]:
    """nn.LSTM over ``chunk``-step pieces, each under non-reentrant checkpointing: the
    pieces of the output (a training step concatenates them for its loss)."""

    def piece(xc: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y, (h, c) = lstm(xc, (h, c))
        return y, h, c

    L, B = lstm.num_layers, x.shape[1]
    h = x.new_zeros(L, B, lstm.hidden_size)
    c = x.new_zeros(L, B, lstm.hidden_size)
    ys = []
    for i in range(0, x.shape[0], chunk):
        y, h, c = checkpoint(piece, x[i : i + chunk], h, c, use_reentrant=False)
        ys.append(y)
    return ys


def _step_fn(method: str, module: nn.Module, x: Tensor, target: Tensor,
             budget: tuple[int, str] | None = None, *, grad_out: Tensor | None = None
             ) -> Callable[[], None]:
    """One training step; ``budget``: the mbrnn module's (memory_budget, policy) for it.
    With ``grad_out`` the loss is left out: ``y.backward(grad_out)`` (``rnn_bytes``)."""
    chunk = max(1, round(math.sqrt(x.shape[0])))

    def step() -> None:
        for p in module.parameters():
            p.grad = None
        if budget is not None:  # one mbrnn module for all budgets: it probes once
            assert isinstance(module, LSTM)
            module.memory_budget, module.policy = budget
        if method == "checkpoint":
            ys = _checkpointed(module, x, chunk)  # type: ignore[arg-type]
            if grad_out is not None:  # no concatenated copy of y where no loss needs one
                torch.autograd.backward(ys, list(grad_out.split(chunk)))
                return
            y = torch.cat(ys)
            del ys
        else:
            y, _ = module(x)
        if grad_out is None:
            _loss(y, target).backward()
        else:
            y.backward(grad_out)

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - t


def _grads(module: nn.Module) -> list[Tensor]:
    return [p.grad.detach().clone() for p in module.parameters() if p.grad is not None]


def _grad_diff(grads: list[Tensor], ref: list[Tensor]) -> float:
    scale = max(g.abs().max().item() for g in ref)
    return max((a - b).abs().max().item() for a, b in zip(grads, ref, strict=True)) / scale


def _io_bytes(T: int, B: int, H: int, target: Tensor, device: torch.device) -> int:
    """The I/O baseline: a stand-in output, held through the loss and its backward."""
    leaf = torch.zeros(T, B, H, device=device, dtype=target.dtype, requires_grad=True)

    def step() -> None:
        y = leaf * 1.0  # allocated in the step and alive to its end, as a module's output
        _loss(y, target).backward()

    peak = measure_peak(step, device=device)
    return int(peak)


# ---------------------------------------------------------------------------------------
# One configuration
# ---------------------------------------------------------------------------------------


def run_config(T: int, H: int, layers: int, B: int, *, policies: Sequence[str],
               fractions: Sequence[float], repeats: int, device: torch.device,
               quiet: bool, run_torch: bool = True, ref_bytes: int | None = None,
               fraction_of: str = "nn.LSTM", with_checkpoint: bool = True
               ) -> list[dict[str, Any]]:
    """Rows for one configuration. Without ``run_torch`` nn.LSTM is not run and budgets
    are fractions of ``ref_bytes`` (its extrapolated activation memory)."""
    torch.manual_seed(0)
    ref = nn.LSTM(H, H, layers, device=device)
    x = torch.randn(T, B, H, device=device)
    target = torch.randn(T, B, H, device=device)
    io = _io_bytes(T, B, H, target, device)
    grad_out = torch.randn(T, B, H, device=device)  # dL/dy for rnn_bytes
    y_bytes = grad_out.numel() * grad_out.element_size()
    config = {"T": T, "B": B, "H": H, "layers": layers, "io_bytes": io}
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    rows: list[dict[str, Any]] = []
    runs: dict[str, tuple[Callable[[], None], dict[str, Any]]] = {}
    ref_grads: list[Tensor] | None = None
    ours = LSTM.from_torch(ref)

    def add(method: str, module: nn.Module, setting: tuple[int, str] | None = None,
            **info: Any) -> dict[str, Any] | None:
        nonlocal ref_grads
        row: dict[str, Any] = {**config, "method": method, **info}
        rows.append(row)
        kind = method if method == "checkpoint" else "module"
        step = _step_fn(kind, module, x, target, setting)
        try:
            step()  # warm-up: probes and plans mbrnn, learns the output's shape
        except InfeasibleBudgetError as e:
            row.update(status="infeasible", reason=str(e))
            log(f"  {method:28s} infeasible")
            return None
        grads = _grads(module)
        if method == "nn.LSTM":
            ref_grads = grads
        row["max_grad_diff"] = 0.0 if ref_grads is None else _grad_diff(grads, ref_grads)
        peak = measure_peak(step, device=device)
        own = measure_peak(_step_fn(kind, module, x, target, setting, grad_out=grad_out),
                           device=device)
        row.update(status="ok", peak_bytes=int(peak), bptt_bytes=int(peak - io),
                   rnn_bytes=int(own - y_bytes))
        if isinstance(module, LSTM) and module.last_plan is not None:
            fp = module.last_plan
            row.update(policy=fp.plans[0].plan.policy, forward_steps=fp.forward_steps,
                       runs=fp.runs, predicted_peak=fp.predicted_peak,
                       predicted_time=fp.time_overhead())
        runs[method] = (step, row)
        return row

    base = None
    if run_torch:
        base = add("nn.LSTM", ref)
        assert base is not None
        ref_bytes = base["rnn_bytes"]
    assert ref_bytes is not None
    ck = add("checkpoint", ref) if with_checkpoint else None
    if run_torch:  # storing everything fits only where nn.LSTM does
        add("mbrnn store_all", ours, (2**50, "store_all"))
    for frac in fractions:
        for policy in policies:
            budget = int(frac * ref_bytes)
            add(f"mbrnn {100 * frac:g}% {policy}", ours, (budget, policy), budget=budget,
                fraction=frac, fraction_of=fraction_of, requested=policy)
    if ck is not None and ck["status"] == "ok":
        # at checkpoint's memory: its rnn_bytes as the budget, or mbrnn's minimum if above
        ours.policy = "auto"  # (minimum_budget is the module's policy's minimum)
        budget = max(int(ck["rnn_bytes"]), ours.minimum_budget(T, B))
        add("mbrnn @checkpoint auto", ours, (budget, "auto"), budget=budget, requested="auto")
    # time round-robin in a shuffled order, so drifting load hits every method alike
    times: dict[str, list[float]] = {m: [] for m in runs}
    order = list(runs)
    gen = torch.Generator().manual_seed(0)
    for _ in range(repeats):
        for i in torch.randperm(len(order), generator=gen).tolist():
            times[order[i]].append(_time(runs[order[i]][0], device))
    anchor = statistics.median(times["nn.LSTM"]) if "nn.LSTM" in times else None
    for method, (_, row) in runs.items():
        row["times"] = times[method]
        row["seconds"] = statistics.median(times[method])
        row["min_seconds"] = min(times[method])
        if anchor is not None:
            row["ratio"] = row["seconds"] / anchor
        if "budget" in row:
            row["within_budget"] = row["rnn_bytes"] <= row["budget"]
        log(f"  {method:28s} {row['seconds']:8.3f} s  x{row.get('ratio', float('nan')):.3f}  "
            f"peak {row['peak_bytes'] / 2**20:9.1f} MiB  rnn {row['rnn_bytes'] / 2**20:9.1f} MiB  "
            f"bptt {row['bptt_bytes'] / 2**20:9.1f} MiB  grad diff {row['max_grad_diff']:.1e}")
    return rows


def long_run(T: int, H: int, B: int, *, fraction: float, repeats: int, device: torch.device,
             quiet: bool, with_checkpoint: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Extrapolate nn.LSTM's memory from T = 1000; run mbrnn (and checkpoint) at T."""
    probe = run_config(1000, H, 1, B, policies=(), fractions=(), repeats=1, device=device,
                       quiet=True)
    base = probe[0]
    per_step_act = base["rnn_bytes"] / 1000
    per_step_io = base["io_bytes"] / 1000
    inputs = 2 * T * B * H * 4  # x and the target
    need = T * (per_step_act + per_step_io) + inputs
    ram = _ram_bytes(device)
    info = {
        "T": T, "H": H, "B": B, "measured_at_T": 1000,
        "nn_lstm_activation_bytes": int(T * per_step_act),
        "nn_lstm_total_bytes": int(need), "machine_bytes": ram, "nn_lstm_fits": need <= ram,
    }
    if not quiet:
        print(f"long run: nn.LSTM would need {need / 2**30:.1f} GiB at T={T:,} "
              f"(machine: {ram / 2**30:.1f} GiB)", flush=True)
    rows = run_config(
        T, H, 1, B, policies=("auto",), fractions=(fraction,), repeats=repeats, device=device,
        quiet=quiet, run_torch=need <= ram, ref_bytes=int(T * per_step_act),
        fraction_of="nn.LSTM (extrapolated)", with_checkpoint=with_checkpoint)
    for r in rows:
        r["long_run"] = True
    return info, rows


# ---------------------------------------------------------------------------------------
# Machine, targets, plots
# ---------------------------------------------------------------------------------------


def _ram_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    info = {
        "nproc": os.cpu_count(), "cpu": cpu, "threads": torch.get_num_threads(),
        "ram_bytes": _ram_bytes(torch.device("cpu")), "torch": torch.__version__,
        "python": platform.python_version(), "device": str(device),
        "mkldnn": torch.backends.mkldnn.is_available(), "loadavg": os.getloadavg(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets on the T=1000, B=32, H=256, 1-layer row (else the first row)."""
    def of(T: int, H: int, L: int) -> dict[str, dict[str, Any]]:
        return {r["method"]: r for r in rows
                if (r["T"], r["H"], r["layers"]) == (T, H, L) and not r.get("long_run")}

    got = of(*TARGET)
    where = "T=1000, B=32, H=256, 1 layer"
    if "nn.LSTM" not in got:
        first = next((r for r in rows if r["method"] == "nn.LSTM"), None)
        if first is None:  # a long run alone: nothing to compare with here
            return {"row": None}
        got = of(first["T"], first["H"], first["layers"])
        where = f"T={first['T']}, B={first['B']}, H={first['H']}, {first['layers']} layer(s) (quick)"
    out: dict[str, Any] = {"row": where}
    store = got.get("mbrnn store_all")
    if store and store["status"] == "ok":
        out["store_all"] = {"ratio": store["ratio"], "target": 1.10,
                            "met": store["ratio"] <= 1.10}
    five = got.get("mbrnn 5% auto")
    if five and five["status"] == "ok":
        out["five_percent"] = {
            "ratio": five["ratio"], "target": 1.35, "rnn_bytes": five["rnn_bytes"],
            "budget": five["budget"], "within_budget": five["within_budget"],
            "met": five["ratio"] <= 1.35 and five["within_budget"]}
    ck, eq = got.get("checkpoint"), got.get("mbrnn @checkpoint auto")
    if ck and eq and ck["status"] == eq["status"] == "ok":
        out["vs_checkpoint"] = {
            "checkpoint_seconds": ck["seconds"], "mbrnn_seconds": eq["seconds"],
            "checkpoint_peak_bytes": ck["peak_bytes"], "mbrnn_peak_bytes": eq["peak_bytes"],
            "checkpoint_rnn_bytes": ck["rnn_bytes"], "mbrnn_rnn_bytes": eq["rnn_bytes"],
            "equal_memory": eq["rnn_bytes"] <= 1.01 * ck["rnn_bytes"],
            "met": eq["seconds"] < ck["seconds"] and eq["rnn_bytes"] <= 1.01 * ck["rnn_bytes"]}
    # the fastest mbrnn run whose measured memory is within checkpoint's (any budget):
    # the recurrence's own, and the whole step's
    if ck and ck["status"] == "ok":
        for field, name in (("rnn_bytes", "rnn_bytes"), ("peak_bytes", "peak")):
            fits = [r for r in got.values() if r["method"].startswith("mbrnn")
                    and r["status"] == "ok" and r[field] <= 1.01 * ck[field]]
            best = min(fits, key=lambda r: r["seconds"], default=None)
            out[f"fastest_mbrnn_within_checkpoint_{name}"] = None if best is None else {
                "method": best["method"], "seconds": best["seconds"],
                field: best[field], "faster": best["seconds"] < ck["seconds"]}
    return out


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    configs = sorted({(r["T"], r["H"], r["layers"]) for r in ok})
    n = len(configs)
    cols = min(3, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(5 * cols, 4 * math.ceil(n / cols)),
                             squeeze=False)
    colours = {"auto": "black", "msm": "tab:red", "ism": "tab:orange", "hsm": "tab:blue",
               "chen": "tab:purple"}
    for ax, (T, H, L) in zip(axes.flat, configs, strict=False):
        mine = [r for r in ok if (r["T"], r["H"], r["layers"]) == (T, H, L)]
        for r in mine:
            m = r["method"]
            if m == "nn.LSTM":
                kw = dict(marker="*", s=160, color="tab:green", label="nn.LSTM")
            elif m == "checkpoint":
                kw = dict(marker="s", s=60, color="tab:gray", label="checkpoint sqrt(T)")
            elif m == "mbrnn store_all":
                kw = dict(marker="D", s=50, color="tab:olive", label="mbrnn store_all")
            elif m.startswith("mbrnn @checkpoint"):
                kw = dict(marker="P", s=90, color="tab:cyan", label="mbrnn @ checkpoint's peak")
            else:
                pol = r.get("requested", "auto")
                kw = dict(marker="o", s=25, color=colours.get(pol, "k"), label=f"mbrnn {pol}")
            ax.scatter(r["rnn_bytes"] / 2**20, r["seconds"], **kw)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("recurrence peak memory (MiB, output excluded)")
        ax.set_ylabel("seconds per training step")
        ax.set_title(f"T={T:,}  H={H}  layers={L}", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "bptt_memory_time.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    families = sorted({(r["H"], r["layers"]) for r in ok})
    styles = {"nn.LSTM": "-", "checkpoint": ":", "mbrnn store_all": "--", "mbrnn 5% auto": "-."}
    for H, L in families:
        for method, ls in styles.items():
            pts = sorted((r["T"], r["seconds"]) for r in ok
                         if (r["H"], r["layers"]) == (H, L) and r["method"] == method)
            if pts:
                ax.plot(*zip(*pts, strict=True), ls, marker="o", label=f"{method} H={H} L={L}")
    for r in ok:
        if r.get("long_run") and r["method"].startswith("mbrnn"):
            ax.scatter(r["T"], r["seconds"], marker="X", s=80, color="k")
            ax.annotate(f"{r['method']} (plain BPTT does not fit)", (r["T"], r["seconds"]),
                        fontsize=7, xytext=(-150, 8), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("seconds per training step")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / "bptt_time_vs_T.png", dpi=110)
    plt.close(fig)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| T | H | L | method | s/step (median) | min | x nn.LSTM | peak MiB | RNN MiB "
             "| BPTT MiB | budget MiB | fwd steps | grad diff |", "|---" * 13 + "|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['T']} | {r['H']} | {r['layers']} | {r['method']} | infeasible "
                         "| | | | | | | | |")
            continue
        budget = f"{r['budget'] / 2**20:.1f}" if "budget" in r else ""
        ratio = f"{r['ratio']:.3f}" if "ratio" in r else ""
        lines.append(
            f"| {r['T']} | {r['H']} | {r['layers']} | {r['method']} | {r['seconds']:.3f} | "
            f"{r['min_seconds']:.3f} | {ratio} | {r['peak_bytes'] / 2**20:.1f} | "
            f"{r['rnn_bytes'] / 2**20:.1f} | {r['bptt_bytes'] / 2**20:.1f} | {budget} | "
            f"{r.get('forward_steps', r['T'])} | {r['max_grad_diff']:.1e} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def _config(text: str) -> tuple[int, int, int]:
    try:
        T, H, L = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TxHxLAYERS such as 1000x256x1, got {text!r}"
                                         ) from None
    return T, H, L


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--configs", type=_config, nargs="*", default=None,
                   help="TxHxLAYERS, e.g. 1000x256x1 (default: the issue's grid)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--policies", nargs="+", default=list(POLICIES))
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: 1 on CPU, see the module's NOTE)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--long-T", type=int, default=0, help="also the long run at this T")
    p.add_argument("--long-H", type=int, default=128)
    p.add_argument("--long-fraction", type=float, default=0.02)
    p.add_argument("--long-checkpoint", action="store_true",
                   help="also time the checkpoint baseline in the long run")
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--append", action="store_true", help="merge into an existing bptt.json")
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny sizes, seconds")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    threads = args.threads or (1 if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    if args.quick:
        configs = [(60, 16, 1)]
        args.batch, args.repeats, args.fractions, args.policies = 4, 2, [0.5, 0.05], ["auto"]
    elif args.configs is None:
        configs = [(T, H, L) for H in (256, 1024) for L in (1, 2) for T in (100, 1000, 10_000)]
    else:
        configs = list(args.configs)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bptt.json"
    old: dict[str, Any] = json.loads(path.read_text()) if args.append and path.exists() else {}
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    long_info = old.get("long_run")
    argv_list = list(sys.argv[1:] if argv is None else argv)

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["T"], r["H"], r["layers"], r["B"], r["method"])

    def write() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Merge what is measured so far into the JSON: a stopped run keeps it."""
        new_keys = {key(r) for r in rows}
        merged = [r for r in old.get("rows", []) if key(r) not in new_keys] + rows
        merged.sort(key=lambda r: (r.get("long_run", False), r["H"], r["layers"], r["T"]))
        runs = [*old.get("runs", []), {"argv": argv_list, "machine": machine(device),
                                       "seconds": time.perf_counter() - t0}]
        result = {"quick": args.quick, "machine": machine(device), "runs": runs,
                  "rows": merged, "long_run": long_info, "targets": targets(merged)}
        path.write_text(json.dumps(result, indent=1))
        return merged, result

    for T, H, L in configs:
        if not args.quiet:
            print(f"T={T} H={H} layers={L} B={args.batch}", flush=True)
        rows += run_config(T, H, L, args.batch, policies=args.policies, fractions=args.fractions,
                           repeats=args.repeats, device=device, quiet=args.quiet)
        write()
    if args.long_T:
        long_info, long_rows = long_run(args.long_T, args.long_H, args.batch,
                                        fraction=args.long_fraction, repeats=args.repeats,
                                        device=device, quiet=args.quiet,
                                        with_checkpoint=args.long_checkpoint)
        rows += long_rows
    merged, result = write()
    plot(merged, args.out)
    if not args.quiet:
        print(table(merged))
        print(json.dumps(result["targets"], indent=1))
        if long_info:
            print(json.dumps(long_info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
