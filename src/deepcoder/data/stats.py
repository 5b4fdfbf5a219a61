"""Statistics of a training set: tokens and shares per span kind, and real tokens per batch."""

from __future__ import annotations

from deepcoder.core.names import SPAN_NAMES
from deepcoder.data.example_info import span_token_counts
from deepcoder.spans.render import RenderedExample


def span_statistics(examples: list[RenderedExample]) -> dict[str, dict[str, float]]:
    """``span_tokens`` (count per span kind) and ``span_shares`` (of all tokens, rounded to 1e-4)."""
    totals: dict[str, float] = dict.fromkeys(SPAN_NAMES, 0)
    for example in examples:
        for span, count in span_token_counts(example).items():
            totals[span] += count
    all_tokens = sum(totals.values())
    shares = {span: round(count / all_tokens, 4) if all_tokens else 0.0 for span, count in totals.items()}
    return {"span_tokens": totals, "span_shares": shares}


def real_token_share(batches: list[list[int]]) -> float:
    """Real tokens / tokens in the padded batches, over batches given as their rows' lengths."""
    real = sum(sum(rows) for rows in batches)
    padded = sum(len(rows) * max(rows) for rows in batches if rows)
    return real / padded if padded else 0.0
