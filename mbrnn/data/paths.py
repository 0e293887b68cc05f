"""Where the shared benchmark datasets live.

Datasets are never copied into the repository. Code finds them through the environment
variable ``MBRNN_DATA``; without it, the default is ``../shared/data`` next to the
repository root (the folder that holds the ``mbrnn`` package).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "data_root", "require_dataset"]

DATA_ENV_VAR = "MBRNN_DATA"

_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """The folder that holds the shared datasets.

    ``$MBRNN_DATA`` when it is set and not empty, else ``<repo root>/../shared/data``.
    The folder is not required to exist; :func:`require_dataset` checks.
    """
    env = os.environ.get(DATA_ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return _REPO_ROOT.parent / "shared" / "data"


def _root_origin() -> str:
    if os.environ.get(DATA_ENV_VAR, ""):
        return f"from ${DATA_ENV_VAR}"
    return f"the default, as ${DATA_ENV_VAR} is not set"


def require_dataset(name: str) -> Path:
    """The folder of dataset ``name`` under :func:`data_root`, which must exist.

    Args:
        name: the dataset's folder name, e.g. ``"wikitext-2"``, ``"tinyshakespeare"``,
            ``"fashion-mnist"``.

    Raises:
        FileNotFoundError: the folder is missing; the message says where it looked and
            how to point ``MBRNN_DATA`` at the right place.

    Example::

        >>> corpus = load_corpus(require_dataset("wikitext-2"))  # doctest: +SKIP
    """
    if not isinstance(name, str):
        raise TypeError(f"require_dataset: name must be a str, got {type(name).__name__}")
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(
            f"require_dataset: name must be a folder name under the data root, got {name!r}"
        )
    root = data_root()
    path = root / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"require_dataset: dataset {name!r} not found: {path} is not a folder "
            f"(data root {root}, {_root_origin()}); set {DATA_ENV_VAR} to the folder that "
            f"holds {name}/, e.g. export {DATA_ENV_VAR}=/path/to/shared/data"
        )
    return path
