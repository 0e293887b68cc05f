"""What a run shows: the progress bar's fields, one line per evaluation, the learning curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .config import TrainConfig

__all__ = ["describe", "plot_curves", "progress"]


def progress(cfg: TrainConfig, loss: float, rate: float, peak: int) -> dict[str, str]:
    """The progress bar's fields: loss, bits per char or perplexity, speed, peak memory."""
    shown = {"loss": f"{loss:.3f}"}
    if cfg.task == "lm":
        shown["bpc" if cfg.level != "word" else "ppl"] = (
            f"{loss / math.log(2):.3f}" if cfg.level != "word" else f"{math.exp(min(loss, 50)):.1f}")
        shown["tok/s"] = f"{rate:.0f}"
    else:
        shown["seq/s"] = f"{rate:.1f}"
    if peak:
        shown["peak"] = f"{peak / 2**20:.1f}MiB"
    return shown


def describe(cfg: TrainConfig, m: dict[str, Any]) -> str:
    """One evaluation as a line: ``step 200: train 1.9 valid 2.0 bpc 2.9``."""
    head = f"step {m['step']}: train {m['train_loss']:.4f} valid {m['loss']:.4f}"
    if cfg.task == "classify":
        return f"{head} acc {100 * m['accuracy']:.2f}%"
    return f"{head} ppl {m['ppl']:.2f}" if cfg.level == "word" else f"{head} bpc {m['bpc']:.4f}"


def plot_curves(log_path: Path, png: Path) -> None:
    """Train and validation loss against step, from ``log.jsonl``, drawn to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in rows], [r["train_loss"] for r in rows], label="train")
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="valid")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
