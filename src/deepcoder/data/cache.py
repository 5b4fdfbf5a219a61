"""On-disk cache of rendered examples, so a sweep over loss weights tokenises its data once.

The key covers everything that decides the token ids and labels: the trajectory file's bytes,
the tokenizer (its full serialisation and chat template), the span strategy and its settings,
``max_length`` and the renderer's version. Each example is stored with its
:class:`~deepcoder.data.example_info.ExampleInfo`, so filters and curricula need no re-render.
Stored teacher top-k logprobs (sparse tensors, far too big for JSON) go to a ``.teacher.pt``
beside it, written first: the JSON's presence is what makes a cache hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from deepcoder.data.example_info import ExampleInfo, Item
from deepcoder.spans.render import RenderedExample
from deepcoder.spans.teacher_topk import TeacherTopK
from deepcoder.utils.jsonl import write_json
from deepcoder.utils.paths import cache_dir

log = logging.getLogger(__name__)

RENDER_VERSION = 3  # bump when render.py, the span rules or the stored fields change


def dataset_key(path: str | Path, tokenizer: PreTrainedTokenizerBase, span: Any, **settings: Any) -> str:
    """A digest of the data, tokenizer, strategy and settings."""
    digest = hashlib.sha256()
    digest.update(Path(path).read_bytes())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(str(tokenizer.chat_template or "").encode())
    strategy = {"class": f"{type(span).__module__}.{type(span).__qualname__}", **vars(span)}
    digest.update(json.dumps([strategy, settings, RENDER_VERSION], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def cached_examples(key: str, build: Callable[[], list[Item]]) -> tuple[list[Item], bool]:
    """The examples stored under ``key``, or ``build()``'s result stored there; and whether it was a hit."""
    path = cache_dir("datasets") / f"{key}.json"
    teacher_path = path.with_suffix(".teacher.pt")
    if path.exists():
        log.info("rendered examples from cache %s", path)
        rows = json.loads(path.read_text(encoding="utf-8"))
        teachers = torch.load(teacher_path, weights_only=True) if teacher_path.exists() else [None] * len(rows)
        return [
            (
                RenderedExample(
                    **{**row["example"], "step_kinds": tuple(map(tuple, row["example"]["step_kinds"]))},
                    teacher=None if teacher is None else TeacherTopK.from_state(teacher),
                ),
                ExampleInfo(**row["info"]),
            )
            for row, teacher in zip(rows, teachers)
        ], True
    items = build()
    if any(example.teacher is not None for example, _ in items):
        partial = teacher_path.with_suffix(f".{os.getpid()}.tmp")
        torch.save([None if e.teacher is None else e.teacher.state() for e, _ in items], partial)
        partial.replace(teacher_path)
    write_json(
        path,
        [
            {
                "example": {
                    "trajectory_id": example.trajectory_id,
                    "input_ids": example.input_ids,
                    "labels": example.labels,
                    "span_ids": example.span_ids,
                    "step_ids": example.step_ids,
                    "step_kinds": example.step_kinds,
                },
                "info": asdict(info),
            }
            for example, info in items
        ],
    )
    return items, False
