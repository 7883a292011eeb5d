"""Shared test helpers: the repository root and the conformance vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "tests" / "vectors" / "mandate-v1.json"


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """``tests/vectors/mandate-v1.json``, as written by the Rust implementation."""
    with VECTORS.open() as file:
        return json.load(file)
