"""BM25 retrieval over the docstrings of the sandbox's importable modules and the builtins.

The knowledge base (one document per module, public function/class and method)
is extracted with `inspect` on first use and cached as JSON, keyed by Python
version, under ``cache_dir`` (default ``$DEEPCODER_CACHE/retriever``, else
``~/.cache/deepcoder/retriever``). Results are deterministic: ties break on source name.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcoder.tools.safe_modules import ALLOWED_MODULES
from deepcoder.utils.paths import cache_dir as deepcoder_cache_dir

_KB_VERSION = 2  # 2: object addresses scrubbed from signatures
_OBJECT_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "with",
    ]
)


@dataclass(frozen=True)
class Snippet:
    """One retrieved document: e.g. source="collections.Counter"."""

    source: str
    text: str
    score: float


def tokenize(text: str) -> list[str]:
    """Lowercase words; identifiers split on `_` and `.` (both are non-word characters here)."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def _describe(source: str, obj) -> dict | None:
    doc = inspect.getdoc(obj)
    if not doc:
        return None
    try:
        signature = f"{source}{inspect.signature(obj)}\n" if callable(obj) else ""
    except (TypeError, ValueError):
        signature = ""
    # Some defaults print as "<object object at 0x7f…>": scrubbed, the text is the same in every process.
    return {"source": source, "text": _OBJECT_ADDRESS.sub("", signature + doc)}


def _module_documents(prefix: str, module) -> list[dict]:
    docs = [] if module is builtins else [_describe(prefix, module)]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        home = getattr(obj, "__module__", None)
        if home != module.__name__ and home in ALLOWED_MODULES:
            continue  # re-exported from another allowed module: documented there
        source = f"{prefix}.{name}" if prefix else name
        docs.append(_describe(source, obj))
        if inspect.isclass(obj):
            docs.extend(
                _describe(f"{source}.{attr}", member)
                for attr, member in sorted(vars(obj).items())
                if not attr.startswith("_") and callable(member)
            )
    return [d for d in docs if d]


def build_documents() -> list[dict]:
    """All documents of the knowledge base, sorted by source."""
    docs = _module_documents("", builtins)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # e.g. the typing.io alias
        for name in ALLOWED_MODULES:
            docs.extend(_module_documents(name, importlib.import_module(name)))
    unique = {d["source"]: d for d in docs}
    return [unique[s] for s in sorted(unique)]


class Retriever:
    """Searches the standard-library documentation knowledge base with BM25."""

    def __init__(self, cache_dir: str | os.PathLike | None = None, top_k: int = 3, max_chars_per_snippet: int = 400):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else deepcoder_cache_dir("retriever")
        self.top_k = top_k
        self.max_chars_per_snippet = max_chars_per_snippet
        self.loaded_from_cache: bool | None = None  # set when the knowledge base is loaded
        self._docs: list[dict] = []
        self._bm25: Any = None  # a rank_bm25.BM25Okapi once loaded; rank_bm25 ships no types

    @property
    def cache_path(self) -> Path:
        version = f"{sys.version_info.major}{sys.version_info.minor}"
        return self.cache_dir / f"stdlib-docs-v{_KB_VERSION}-py{version}.json"

    def _load(self) -> None:
        from rank_bm25 import BM25Okapi  # deferred: numpy is not needed until the first search

        path = self.cache_path
        if path.exists():
            docs = json.loads(path.read_text(encoding="utf-8"))
            self.loaded_from_cache = True
        else:
            docs = build_documents()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(docs), encoding="utf-8")
            tmp.replace(path)  # atomic: concurrent builders never see a partial file
            self.loaded_from_cache = False
        self._docs = docs
        self._bm25 = BM25Okapi([tokenize(d["source"] + " " + d["text"]) for d in docs])

    def search(self, query: str, k: int | None = None) -> list[Snippet]:
        """The best `k` (default top_k) documents with a positive score, best first."""
        if self._bm25 is None:
            self._load()
        tokens = tokenize(query)
        if not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        ranked = sorted(
            (i for i in range(len(self._docs)) if scores[i] > 0),
            key=lambda i: (-scores[i], self._docs[i]["source"]),
        )
        return [self._snippet(i, float(scores[i])) for i in ranked[: self.top_k if k is None else k]]

    def _snippet(self, index: int, score: float) -> Snippet:
        doc = self._docs[index]
        text = doc["text"]
        if len(text) > self.max_chars_per_snippet:
            text = text[: self.max_chars_per_snippet].rstrip() + "..."
        return Snippet(source=doc["source"], text=text, score=score)
