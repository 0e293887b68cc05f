"""Training checkpoints: one ``torch.save`` file that holds everything to resume exactly.

A checkpoint is a dict (``weights_only``-loadable)::

    format      CHECKPOINT_FORMAT
    config      asdict(TrainConfig)         a resumed run must match it (but _RUN_KEYS)
    model, optimizer, scheduler             their state_dicts
    step, epoch, offset, state              the data position and the carried recurrent state
    rng         one rng_state() per rank    torch, Python and CUDA generators
    vocab       the LM's tokens, or None

It is written atomically (a temporary file, then ``os.replace``), so an interrupted write
leaves the previous checkpoint whole.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write
from ..errors import ConfigError
from .config import _RUN_KEYS, TrainConfig

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "rng_state", "save_checkpoint",
           "set_rng_state"]

CHECKPOINT_FORMAT = 1


def rng_state() -> dict[str, Any]:
    """This process's random generators: torch's, Python's and (if any) CUDA's."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save(payload)`` to ``path`` atomically, creating its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    """Read a checkpoint and check that it belongs to this run's model and data.

    Raises:
        ConfigError: no checkpoint at ``path``, an unreadable or foreign file, or one
            written with a config that differs from ``cfg`` outside the run keys (the
            message lists each difference).
    """
    if not path.is_file():
        raise ConfigError(f"resume: no checkpoint at {path}; run without --resume first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise ConfigError(f"resume: {path} is not a readable mbrnn checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"resume: {path} is not an mbrnn training checkpoint (format {CHECKPOINT_FORMAT})")
    saved, now = ckpt["config"], asdict(cfg)
    differ = sorted(k for k in now if k not in _RUN_KEYS and saved.get(k) != now[k])
    if differ:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}" for k in differ)
        raise ConfigError(f"resume: {path} was written by a different model or data ({detail}); "
                          "use the same config or another --out")
    return ckpt
