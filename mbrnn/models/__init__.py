"""The model zoo's code: one model per file, its config dataclass beside it.

Pretrained weights live in ``models/<name>/`` at the repository root; load them with
:func:`mbrnn.hub.from_pretrained` (also ``mbrnn.from_pretrained``).
"""

from __future__ import annotations

from .language_model import LanguageModel as LanguageModel
from .language_model import LanguageModelConfig as LanguageModelConfig
from .sequence_classifier import SequenceClassifier as SequenceClassifier
from .sequence_classifier import SequenceClassifierConfig as SequenceClassifierConfig

__all__ = [
    "LanguageModel",
    "LanguageModelConfig",
    "SequenceClassifier",
    "SequenceClassifierConfig",
]
