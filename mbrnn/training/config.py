"""A training run's configuration: :class:`TrainConfig`, filled by :func:`load_config` from a
TOML preset and ``--key=value`` overrides.

Presets ship with the package (``mbrnn/training/configs/<name>.toml``, found through
:mod:`importlib.resources`, so any install has them); a preset may also be a path to a
``.toml`` file. The TOML file is flat: one ``key = value`` per :class:`TrainConfig` field.
An unknown key, a value of the wrong type or a value outside its choices is a
:class:`~mbrnn.errors.ConfigError`.

Example::

    >>> cfg = load_config("tiny", {"max_steps": "20", "memory-budget": "2MiB"})
    >>> cfg.max_steps, cfg.memory_budget
    (20, '2MiB')
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib  # pyright: ignore[reportMissingImports]

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = ["TrainConfig", "load_config", "preset_names"]


@dataclass
class TrainConfig:
    """Everything a run needs; see :func:`preset_names` for the shipped presets.

    The fields below keep their names and defaults across versions: a checkpoint stores
    them (``asdict``) and a resumed run compares them, all but the ``_RUN_KEYS``.
    """

    # [data]
    task: str = "lm"  # "lm" or "classify"
    data: str = "tinyshakespeare"  # a folder under $MBRNN_DATA, or a path
    level: str = "char"  # lm: "word", "char" or "byte"
    fractions: list[float] = field(default_factory=lambda: [0.9, 0.05, 0.05])  # single-file corpus
    pixels_per_step: int = 1  # classify, Fashion-MNIST: T = 784 / pixels_per_step
    permute: bool = False  # classify, Fashion-MNIST: pixels in a fixed random order
    valid_size: int = 5000  # classify: sequences held out of train for validation
    labels_csv: str = ""  # classify, a folder of .npy/.wav files: labels from this CSV
    # [model]
    cell: str = "lstm"
    embedding_size: int = 128
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.0
    embedding_dropout: float = 0.0
    weight_dropout: float = 0.0
    tie_weights: bool = True
    bidirectional: bool = False
    # [model] memory
    memory_budget: str = ""  # "" keeps everything; else e.g. "64MiB"
    policy: str = "auto"
    bptt: int = 100  # lm: window length
    truncate: int = 0  # > 0: back-propagate through only this many steps (comparison)
    # [optim]
    batch_size: int = 32
    eval_batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    clip: float = 1.0  # 0: no clipping
    warmup_steps: int = 0
    schedule: str = "cosine"  # "cosine" or "constant"
    max_steps: int = 1000
    eval_every: int = 200
    eval_batches: int = 0  # 0: the whole validation split
    checkpoint_every: int = 500
    stop_at: int = 0  # stop (checkpoint and exit) after this step, as Ctrl-C would
    time_limit: float = 0.0  # seconds; > 0: end the run (evaluate, save) once exceeded
    seed: int = 0
    # [run]
    device: str = "cpu"
    dtype: str = "float32"  # "float32", "float64", or autocast "bfloat16" / "float16"
    threads: int = 0  # torch.set_num_threads; 0 leaves the default
    out: str = "runs/default"
    resume: bool = False
    dry_run: bool = False
    plot: bool = False
    progress: bool = True


# Keys that may differ between a checkpoint and the run that resumes it.
_RUN_KEYS = {"max_steps", "time_limit", "eval_every", "checkpoint_every", "stop_at", "device", "threads",
             "out", "resume", "dry_run", "plot", "progress", "eval_batches"}
_CHOICES = {"task": ("lm", "classify"), "level": ("word", "char", "byte"), "cell": ("lstm", "gru"),
            "schedule": ("cosine", "constant"),
            "dtype": ("float32", "float64", "bfloat16", "float16")}
_POSITIVE = ("bptt", "batch_size", "eval_batch_size", "max_steps", "pixels_per_step")


def _presets() -> Traversable:
    return files("mbrnn.training").joinpath("configs")


def preset_names() -> list[str]:
    """The names of the presets shipped with mbrnn, sorted (``"tiny"``, ...)."""
    return sorted(p.name.removesuffix(".toml") for p in _presets().iterdir()
                  if p.name.endswith(".toml"))


def _convert(name: str, kind: Any, value: Any, where: str) -> Any:
    """``value`` (a TOML value or a command-line string) as field ``name``'s type."""
    kind = {"int": int, "float": float, "bool": bool, "str": str, "list[float]": list}.get(kind, kind)
    text = isinstance(value, str) and kind is not str
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if text and value.lower() in ("true", "1", "yes", ""):
                return True
            if text and value.lower() in ("false", "0", "no"):
                return False
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if text:
                return int(value)
        elif kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if text:
                return float(value)
        elif kind is str:
            if isinstance(value, str):
                return value
        elif kind is list:
            items = value.split(",") if text else value
            if isinstance(items, list):
                return [float(v) for v in items]
    except ValueError:
        pass
    raise ConfigError(f"{where}: {name} must be {getattr(kind, '__name__', kind)}, got {value!r}")


def _read_preset(preset: str) -> tuple[str, dict[str, Any]]:
    """``(where, table)`` of a preset name or a ``.toml`` path."""
    path: Path | Traversable = Path(preset)
    if not path.is_file():
        path = _presets().joinpath(f"{preset}.toml")
    if not path.is_file():
        raise ConfigError(f"config preset {preset!r} not found (a .toml path or one of: "
                          f"{', '.join(preset_names())})")
    try:
        return str(path), tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e


def load_config(preset: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML preset and overrides.

    Args:
        preset: a preset name (see :func:`preset_names`) or a path to a ``.toml`` file;
            ``None`` starts from the defaults.
        overrides: ``{key: value}`` applied after the preset; keys may use ``-`` for ``_``
            and values may be strings, as on the command line (``"true"``, ``"0.8,0.1,0.1"``).

    Returns:
        The config; with ``dry_run``, at most 4 steps, evaluated every 2 on 2 batches.

    Raises:
        ConfigError: a missing preset, an unknown key or a value of the wrong type.
    """
    types_ = {f.name: f.type for f in fields(TrainConfig)}
    values: dict[str, Any] = {}
    sources: list[tuple[str, dict[str, Any]]] = []
    if preset:
        sources.append(_read_preset(preset))
    sources.append(("command line", dict(overrides or {})))
    for where, table in sources:
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in types_:
                raise ConfigError(f"{where}: unknown config key {key!r}; known keys: {', '.join(sorted(types_))}")
            values[name] = _convert(name, types_[name], value, where)
    cfg = TrainConfig(**values)
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise ConfigError(f"config: {name} must be one of {choices}, got {getattr(cfg, name)!r}")
    for name in _POSITIVE:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"config: {name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.dry_run:
        cfg.max_steps = min(cfg.max_steps, 4)
        cfg.eval_every, cfg.eval_batches = 2, 2
    return cfg
