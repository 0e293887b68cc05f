"""Data for mbrnn: corpora, vocabularies, LM batching, sequence datasets and their splits.

Shared benchmark datasets are found through ``$MBRNN_DATA`` (default ``../shared/data``
next to the repository); see :func:`data_root`.
"""

from .batching import BPTTWindow as BPTTWindow
from .batching import batchify as batchify
from .batching import bptt_windows as bptt_windows
from .batching import shard_streams as shard_streams
from .classification import ClassifyData as ClassifyData
from .classification import FolderData as FolderData
from .classification import ImageData as ImageData
from .classification import load_classification as load_classification
from .classification import load_folder as load_folder
from .classification import load_images as load_images
from .formats import read_idx as read_idx
from .formats import read_wav as read_wav
from .hf import corpus_from_hf as corpus_from_hf
from .hf import load_hf_corpus as load_hf_corpus
from .paths import DATA_ENV_VAR as DATA_ENV_VAR
from .paths import data_root as data_root
from .paths import require_dataset as require_dataset
from .sequences import FashionMNISTSequences as FashionMNISTSequences
from .sequences import SequenceFolder as SequenceFolder
from .sequences import collate_sequences as collate_sequences
from .sequences import load_sequence as load_sequence
from .text import Corpus as Corpus
from .text import corpus_from_texts as corpus_from_texts
from .text import load_corpus as load_corpus
from .vocab import EOS as EOS
from .vocab import UNK as UNK
from .vocab import Level as Level
from .vocab import Vocab as Vocab

__all__ = [
    "DATA_ENV_VAR",
    "EOS",
    "UNK",
    "BPTTWindow",
    "ClassifyData",
    "Corpus",
    "FashionMNISTSequences",
    "FolderData",
    "ImageData",
    "Level",
    "SequenceFolder",
    "Vocab",
    "batchify",
    "bptt_windows",
    "collate_sequences",
    "corpus_from_hf",
    "corpus_from_texts",
    "data_root",
    "load_classification",
    "load_corpus",
    "load_folder",
    "load_hf_corpus",
    "load_images",
    "load_sequence",
    "read_idx",
    "read_wav",
    "require_dataset",
    "shard_streams",
]
