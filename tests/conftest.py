from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from data_helpers import write_text
from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=60, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """oneDNN's OpenMP threads spin on a shared 2-core machine: tiny calls go 100x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# mbrnn.data: a tiny WikiText-style corpus folder, read by test_data_text and test_data_hf
@pytest.fixture
def wikitext_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "wt"
    folder.mkdir()
    write_text(folder / "train.txt", " = Title = \n\n the cat <unk> sat \n")
    write_text(folder / "valid.txt", " the dog sat \n")
    write_text(folder / "test.txt", " cat sat \n")
    return folder
