"""Tokenizer-free text sizes, for backends and reports that have no tokenizer."""

from __future__ import annotations

import re

_WORD_RE = re.compile(r"\w+|[^\w\s]")


def count_words(text: str) -> int:
    """A tokenizer-free size estimate (words and punctuation marks), for backends without one."""
    return len(_WORD_RE.findall(text))
