"""mbrnn.data (the package's __init__): an explicit public API."""

from __future__ import annotations

import mbrnn.data


def test_public_api_is_explicit() -> None:
    exported = set(mbrnn.data.__all__)
    assert exported == {name for name in vars(mbrnn.data) if not name.startswith("_")} - {
        "batching",
        "classification",
        "formats",
        "hf",
        "paths",
        "sequences",
        "text",
        "vocab",
    }
