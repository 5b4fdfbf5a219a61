"""On-disk cache of rendered examples, so a sweep over loss weights tokenises its data once.

The key covers everything that decides the token ids and labels: the trajectory file's bytes,
the tokenizer (its full serialisation and chat template), the span strategy and its settings,
the filters, ``max_length`` and the renderer's version.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from transformers import PreTrainedTokenizerBase

from deepcoder.data.render import RenderedExample
from deepcoder.utils.jsonl import write_json
from deepcoder.utils.paths import cache_dir

log = logging.getLogger(__name__)

RENDER_VERSION = 1  # bump when render.py or the span rules change what they produce


def dataset_key(path: str | Path, tokenizer: PreTrainedTokenizerBase, span: Any, **settings: Any) -> str:
    """A digest of the data, tokenizer, strategy and settings."""
    digest = hashlib.sha256()
    digest.update(Path(path).read_bytes())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(str(tokenizer.chat_template or "").encode())
    strategy = {"class": f"{type(span).__module__}.{type(span).__qualname__}", **vars(span)}
    digest.update(json.dumps([strategy, settings, RENDER_VERSION], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def cached_examples(key: str, build: Callable[[], list[RenderedExample]]) -> tuple[list[RenderedExample], bool]:
    """The examples stored under ``key``, or ``build()``'s result stored there; and whether it was a hit."""
    path = cache_dir("datasets") / f"{key}.json"
    if path.exists():
        log.info("rendered examples from cache %s", path)
        return [RenderedExample(**row) for row in json.loads(path.read_text(encoding="utf-8"))], True
    examples = build()
    write_json(path, [asdict(example) for example in examples])
    return examples, False
