"""The model zoo's code: one model per file, its config dataclass beside it.

Pretrained weights live in ``models/<name>/`` at the repository root; load them with
:func:`from_pretrained` (see :mod:`mbrnn.hub`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .language_model import LanguageModel as LanguageModel
from .language_model import LanguageModelCell as LanguageModelCell
from .language_model import LanguageModelConfig as LanguageModelConfig
from .sequence_classifier import SequenceClassifier as SequenceClassifier
from .sequence_classifier import SequenceClassifierConfig as SequenceClassifierConfig

__all__ = [
    "LanguageModel",
    "LanguageModelCell",
    "LanguageModelConfig",
    "SequenceClassifier",
    "SequenceClassifierConfig",
    "from_pretrained",
]


def from_pretrained(name_or_path: str, **kwargs: Any) -> nn.Module:
    """A zoo name, a folder or a Hub repo id to a model: see :func:`mbrnn.hub.from_pretrained`."""
    from ..hub import from_pretrained as load

    return load(name_or_path, **kwargs)
