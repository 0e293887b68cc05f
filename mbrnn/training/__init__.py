"""Training and evaluation of the zoo's models: ``mbrnn train`` and ``mbrnn evaluate``.

- :mod:`~mbrnn.training.config`: :class:`TrainConfig`, :func:`load_config`, the presets.
- :mod:`~mbrnn.training.loop`: :func:`train`, the training loop.
- :mod:`~mbrnn.training.evaluate`: :func:`evaluate_lm`, :func:`evaluate_classifier`,
  :func:`evaluate_model`.
- :mod:`~mbrnn.training.checkpoint`: :func:`save_checkpoint`, :func:`load_checkpoint`.

The config names are imported eagerly and import no torch, so the command line can build
its options cheaply; the others are imported on first use (PEP 562).

Example::

    >>> from mbrnn.training import load_config, train
    >>> result = train(load_config("tiny", {"max_steps": "20"}))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError as ConfigError
from .config import TrainConfig as TrainConfig
from .config import load_config as load_config
from .config import preset_names as preset_names

if TYPE_CHECKING:
    from .checkpoint import CHECKPOINT_FORMAT as CHECKPOINT_FORMAT
    from .checkpoint import load_checkpoint as load_checkpoint
    from .checkpoint import save_checkpoint as save_checkpoint
    from .evaluate import evaluate_classifier as evaluate_classifier
    from .evaluate import evaluate_lm as evaluate_lm
    from .evaluate import evaluate_model as evaluate_model
    from .log import plot_curves as plot_curves
    from .loop import build_model as build_model
    from .loop import train as train

#: The old name of :class:`~mbrnn.errors.ConfigError`, kept so that old code still imports it.
TrainError = ConfigError

_LAZY = {
    "CHECKPOINT_FORMAT": ".checkpoint",
    "build_model": ".loop",
    "evaluate_classifier": ".evaluate",
    "evaluate_lm": ".evaluate",
    "evaluate_model": ".evaluate",
    "load_checkpoint": ".checkpoint",
    "plot_curves": ".log",
    "save_checkpoint": ".checkpoint",
    "train": ".loop",
}

__all__ = [
    "CHECKPOINT_FORMAT",
    "ConfigError",
    "TrainConfig",
    "TrainError",
    "build_model",
    "evaluate_classifier",
    "evaluate_lm",
    "evaluate_model",
    "load_checkpoint",
    "load_config",
    "plot_curves",
    "preset_names",
    "save_checkpoint",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mbrnn.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
