"""Statistics of a training set: tokens and shares per span kind, and real tokens per batch."""

from __future__ import annotations

import numpy as np

from deepcoder.core.names import SPAN_NAMES


def span_statistics(span_counts: np.ndarray) -> dict[str, dict[str, float]]:
    """``span_tokens`` (count per span kind) and ``span_shares`` (of all tokens, rounded to 1e-4), from
    the examples' tokens per span kind ``[n, spans]``."""
    totals: dict[str, float] = dict(zip(SPAN_NAMES, span_counts.sum(axis=0, dtype=np.int64).tolist()))
    all_tokens = sum(totals.values())
    shares = {span: round(count / all_tokens, 4) if all_tokens else 0.0 for span, count in totals.items()}
    return {"span_tokens": totals, "span_shares": shares}


def real_token_share(batches: list[list[int]]) -> float:
    """Real tokens / tokens in the padded batches, over batches given as their rows' lengths."""
    real = sum(sum(rows) for rows in batches)
    padded = sum(len(rows) * max(rows) for rows in batches if rows)
    return real / padded if padded else 0.0
