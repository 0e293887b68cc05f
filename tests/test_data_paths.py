"""mbrnn.data.paths: where the shared datasets are found."""

from __future__ import annotations

from pathlib import Path

import pytest

import mbrnn.data
from mbrnn.data import data_root, require_dataset


def test_data_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MBRNN_DATA", str(tmp_path))
    assert data_root() == tmp_path


def test_data_root_default_is_shared_next_to_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    repo_root = Path(mbrnn.data.__file__).resolve().parents[2]
    expected = repo_root.parent / "shared" / "data"
    monkeypatch.delenv("MBRNN_DATA", raising=False)
    assert data_root() == expected
    monkeypatch.setenv("MBRNN_DATA", "")
    assert data_root() == expected


def test_require_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MBRNN_DATA", str(tmp_path))
    (tmp_path / "toy").mkdir()
    assert require_dataset("toy") == tmp_path / "toy"
    with pytest.raises(FileNotFoundError, match="MBRNN_DATA") as info:
        require_dataset("wikitext-2")
    assert "wikitext-2" in str(info.value) and str(tmp_path) in str(info.value)
    for bad in ("", "../toy", str(tmp_path)):
        with pytest.raises(ValueError, match="folder name"):
            require_dataset(bad)
