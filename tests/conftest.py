"""Shared fixtures and helpers: an isolated cache, the tiny tokenizer, composed stage configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["reporting_fixtures"]  # the demo_layout session fixture, for every module


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep every test run's caches (tokenizer, knowledge base) out of the user's home."""
    os.environ.setdefault("DEEPCODER_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from deepcoder.models.tiny import TinyModel

    return TinyModel().load_tokenizer()


@pytest.fixture(scope="session")
def untrained_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved, untrained tiny model (seed 0) and its tokenizer: what ``student=DIR`` loads."""
    from deepcoder.models.tiny import TinyModel

    out = tmp_path_factory.mktemp("student")
    model, tokenizer = TinyModel().load(seed=0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def compose_config(name: str, *overrides: str, hydra: bool = False):
    """A stage's config (``train``, ``generate``, ``evaluate``) from conf/, as its CLI would compose it."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(name, list(overrides), return_hydra_config=hydra)
