"""Where DeepCoder caches what it builds (tokenizers, knowledge bases, rendered data)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(sub: str = "") -> Path:
    """The cache root: ``$DEEPCODER_CACHE`` or ``~/.cache/deepcoder``, with an optional sub-folder."""
    root = Path(os.environ.get("DEEPCODER_CACHE") or Path.home() / ".cache" / "deepcoder")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path
