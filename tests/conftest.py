"""Shared fixtures: an isolated cache, the tiny tokenizer, and reference trajectories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep every test run's caches (tokenizer, knowledge base) out of the user's home."""
    os.environ.setdefault("DEEPCODER_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from deepcoder.models import TinyModel

    return TinyModel().load_tokenizer()
