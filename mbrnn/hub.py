"""Save and load models: ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json``).

The layout and the arguments follow ``huggingface_hub.PyTorchModelHubMixin`` (a folder
with ``config.json`` and ``model.safetensors``; ``from_pretrained`` takes a local folder
or a Hub repo id, with ``revision``, ``cache_dir``, ``force_download``, ``token`` and
``local_files_only``), with two differences: loading is strict (every tensor must be
there, nothing extra), and ``config.json`` carries ``model_type`` and
``format_version`` so that the right class is built and old artifacts keep loading.

``name_or_path`` is resolved in this order: an existing local folder; a name from the
zoo shipped with mbrnn (:data:`ZOO_DIR`, no network); a Hub repo id (``owner/name``,
``huggingface_hub.snapshot_download``). A name that can only be a path (it starts with
``.``, ``/`` or ``~``, or its parent folder exists) and does not exist is an error, not a
Hub id.

The zoo is the repository's ``models/<name>/`` folders, installed as the package data of
``mbrnn.zoo``, so :mod:`importlib.resources` finds it in editable and regular installs
alike; running from a checkout without an install, it is the checkout's ``models/``.
"""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_model
from torch import nn

from ._io import atomic_write, atomic_write_text
from .data.vocab import Vocab
from .models.language_model import LanguageModel, LanguageModelConfig
from .models.sequence_classifier import SequenceClassifier, SequenceClassifierConfig

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "ZOO_DIR",
    "from_pretrained",
    "load_config",
    "resolve",
    "save_pretrained",
    "zoo_names",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"


def _find_zoo() -> Path:
    """The zoo's folder: the installed ``mbrnn.zoo`` package, else a checkout's ``models/``."""
    try:
        installed = files("mbrnn.zoo")
    except ModuleNotFoundError:  # running from a checkout that was never installed
        installed = None
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "models"


#: The pretrained zoo shipped with mbrnn: one folder per model name.
ZOO_DIR = _find_zoo()

_MODELS: dict[str, tuple[type[nn.Module], Any]] = {
    LanguageModelConfig.model_type: (LanguageModel, LanguageModelConfig),
    SequenceClassifierConfig.model_type: (SequenceClassifier, SequenceClassifierConfig),
}


def zoo_names() -> list[str]:
    """Names of the pretrained models in the zoo (:data:`ZOO_DIR`)."""
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def save_pretrained(model: nn.Module, save_directory: str | os.PathLike[str], *,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``save_directory``: config.json, model.safetensors, tokenizer.json.

    Args:
        model: a :class:`~mbrnn.models.LanguageModel` or
            :class:`~mbrnn.models.SequenceClassifier` (unwrapped from DDP).
        save_directory: created if missing.
        extra: JSON-serialisable metadata stored under ``"extra"`` in config.json (e.g.
            the training data and metrics); ignored when loading.

    Returns:
        The folder.
    """
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in _MODELS:
        raise TypeError(
            f"save_pretrained: expected an mbrnn zoo model (LanguageModel or SequenceClassifier), "
            f"got {type(model).__name__}"
        )
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"model_type": config.model_type, "format_version": FORMAT_VERSION,
                            **config.to_dict()}
    if extra:
        data["extra"] = extra
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_model(model, tmp))  # handles tied weights
    vocab = getattr(model, "vocab", None)
    if vocab is not None:
        vocab.save(folder / TOKENIZER_FILE)
    atomic_write_text(folder / CONFIG_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return folder


def resolve(name_or_path: str | os.PathLike[str], *, revision: str | None = None,
            cache_dir: str | os.PathLike[str] | None = None, force_download: bool = False,
            token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """The local folder holding ``name_or_path``: a folder, a zoo name, or a Hub download.

    Raises:
        FileNotFoundError: ``name_or_path`` is a path that does not exist, or is neither a
            folder, a zoo name nor a Hub repo id.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if (ZOO_DIR / name / CONFIG_FILE).is_file():
        return ZOO_DIR / name
    if not path.exists() and _is_path(name):
        where = path.expanduser().absolute()
        raise FileNotFoundError(
            f"from_pretrained: no such folder {name!r}"
            + ("" if str(where) == name else f" ({where})")
            + f"; pass an existing model folder, a zoo name "
            f"({', '.join(zoo_names()) or 'the zoo is empty'}) or a Hub repo id (owner/name)"
        )
    if path.exists() or name.count("/") != 1:
        raise FileNotFoundError(
            f"from_pretrained: {name!r} is not a model folder, not a zoo name "
            f"({', '.join(zoo_names()) or 'the zoo is empty'}) and not a Hub repo id (owner/name)"
        )
    from huggingface_hub import snapshot_download

    folder = snapshot_download(
        repo_id=name, revision=revision, cache_dir=None if cache_dir is None else Path(cache_dir), force_download=force_download,
        token=token, local_files_only=local_files_only,
        allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, "README.md"],
    )
    return Path(folder)


def _is_path(name: str) -> bool:
    """Whether ``name`` can only mean a local path, never a Hub repo id (``owner/name``)."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name \
            or os.path.isabs(name):
        return True
    parent = Path(name).parent
    return parent != Path(".") and parent.is_dir()


def load_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a model folder's config.json (model type and format version)."""
    file = Path(folder) / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"from_pretrained: no {CONFIG_FILE} in {folder}")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"from_pretrained: {file} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"from_pretrained: {file} must hold a JSON object")
    version = data.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(
            f"from_pretrained: {file} has format_version={version!r}; this mbrnn reads "
            f"versions 1..{FORMAT_VERSION} (upgrade mbrnn for newer artifacts)"
        )
    if data.get("model_type") not in _MODELS:
        raise ValueError(
            f"from_pretrained: {file} has model_type={data.get('model_type')!r}; expected one "
            f"of {sorted(_MODELS)}"
        )
    return data


def load_weights(model: nn.Module, weights: Path, *, device: str = "cpu") -> None:
    """Load ``model.safetensors`` into ``model``, strictly: every tensor the model has (a
    weight shared by two names, such as a tied decoder, once), nothing else. The model's
    own load hooks run, so older files load (a renamed key, a shared weight saved under
    the other name)."""
    state = load_file(str(weights), device=device)
    missing, unexpected = model.load_state_dict(state, strict=False)
    shared: dict[int, list[str]] = {}  # storage -> every name of a shared tensor
    for name, tensor in model.state_dict().items():
        shared.setdefault(tensor.untyped_storage().data_ptr(), []).append(name)
    loaded = set(model.state_dict()) - set(missing)
    missing = [k for k in missing if not any(
        alias in loaded for alias in shared[model.state_dict()[k].untyped_storage().data_ptr()])]
    if missing or unexpected:
        # RuntimeError, as torch's strict load_state_dict raises for the same mismatch
        raise RuntimeError(f"from_pretrained: {weights} does not fit a {type(model).__name__} "
                           f"of this config: Missing key(s) {sorted(missing)}, unexpected "
                           f"key(s) {sorted(unexpected)}")


def from_pretrained(name_or_path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu",
                    revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                    force_download: bool = False, token: str | bool | None = None,
                    local_files_only: bool = False, **overrides: Any) -> nn.Module:
    """Load a model saved by :func:`save_pretrained`: strictly, in eval mode.

    Args:
        name_or_path: a folder, a zoo name (``"shakespeare-char-lstm"``) or a Hub repo id.
        map_location: the device to load onto.
        revision, cache_dir, force_download, token, local_files_only: as in
            ``huggingface_hub.snapshot_download`` (Hub ids only).
        overrides: config fields to replace, e.g. ``memory_budget="64MiB"``.

    Returns:
        The model; ``model.pretrained_info`` holds config.json's ``"extra"`` metadata.

    Example::

        >>> model = from_pretrained("shakespeare-char-lstm")  # doctest: +SKIP
    """
    folder = resolve(name_or_path, revision=revision, cache_dir=cache_dir,
                     force_download=force_download, token=token, local_files_only=local_files_only)
    data = load_config(folder)
    model_cls, config_cls = _MODELS[data.pop("model_type")]
    data.pop("format_version")
    extra = data.pop("extra", {})
    config = config_cls.from_dict({**data, **overrides})
    if model_cls is LanguageModel:
        vocab_file = folder / TOKENIZER_FILE
        vocab = Vocab.load(vocab_file) if vocab_file.is_file() else None
        model: nn.Module = LanguageModel(config, vocab=vocab)
    else:
        model = model_cls(config)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"from_pretrained: no {WEIGHTS_FILE} in {folder}")
    load_weights(model, weights, device=str(map_location))
    model.to(map_location)
    model.eval()
    model.pretrained_info = extra  # pyright: ignore[reportAttributeAccessIssue]
    return model
