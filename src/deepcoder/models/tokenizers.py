"""Loading a saved tokenizer as the fast kind that rendering needs (its offset mapping)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast


def load_fast_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved at ``path`` (a directory or hub id); refuses a slow (Python) tokenizer,
    which has no offset mapping to carry span labels from characters to tokens."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TypeError(
            f"{path}: {type(tokenizer).__name__} is a slow tokenizer; span labels need a fast one "
            "(tokenizer.json, the `tokenizers` library)"
        )
    return tokenizer
