"""Which rendered trajectories train: passed only, not too long, enough reasoning, no duplicates.

Filters run on cached examples (see ``example_info``), so changing one never re-tokenises.
Each filter counts what it drops; the counts are logged and reported by ``datamodule.stats()``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from deepcoder.core.names import TRAINED_SPANS
from deepcoder.data.example_info import ExampleInfo, Item, span_token_counts
from deepcoder.spans.render import RenderedExample

log = logging.getLogger(__name__)

DEDUPE_KEYS = ("program", "assistant")


@dataclass(frozen=True)
class Filters:
    """Filter settings (``data.filters``).

    ``max_tokens``: drop trajectories longer than this before truncation (``None``: keep them,
    truncated to ``data.max_length``). ``min_reason_tokens`` / ``min_reason_share``: drop those
    with fewer reasoning tokens, or a smaller share of reasoning among trained tokens.
    ``dedupe``: ``None``, ``"program"`` (same problem and same final program) or
    ``"assistant"`` (identical assistant text; also the fallback for a record without a final
    program); the first by ``trajectory_id`` is kept.
    """

    max_tokens: int | None = None
    min_reason_tokens: int = 0
    min_reason_share: float = 0.0
    dedupe: str | None = None

    def __post_init__(self) -> None:
        if self.dedupe not in (None, *DEDUPE_KEYS):
            raise ValueError(f"data.filters.dedupe must be null or one of {DEDUPE_KEYS}, got {self.dedupe!r}")
        if not 0.0 <= self.min_reason_share <= 1.0:
            raise ValueError(f"data.filters.min_reason_share must be in [0, 1], got {self.min_reason_share}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"data.filters.max_tokens must be >= 1 or null, got {self.max_tokens}")

    def apply(self, items: list[Item], only_passed: bool) -> tuple[list[Item], dict[str, int]]:
        """The kept items, in order, and how many each filter dropped."""
        dropped = {"not_passed": 0, "too_long": 0, "little_reasoning": 0, "duplicate": 0}
        seen: set[tuple[str, ...]] = set()
        kept = []
        for example, info in items:
            reason = self._drop_reason(example, info, only_passed, seen)
            if reason:
                dropped[reason] += 1
            else:
                kept.append((example, info))
        for reason, count in dropped.items():
            if count:
                log.info("filter %s dropped %d trajectories", reason, count)
        return kept, dropped

    def _drop_reason(
        self, example: RenderedExample, info: ExampleInfo, only_passed: bool, seen: set[tuple[str, ...]]
    ) -> str | None:
        if only_passed and info.passed is not True:
            return "not_passed"
        if self.max_tokens is not None and info.full_length > self.max_tokens:
            return "too_long"
        counts = span_token_counts(example)
        trained = sum(counts[span] for span in TRAINED_SPANS)
        if counts["reason"] < self.min_reason_tokens or counts["reason"] < self.min_reason_share * trained:
            return "little_reasoning"
        if self.dedupe:
            key = (
                (info.problem_id, info.program_digest or info.assistant_digest)
                if self.dedupe == "program"
                else (info.assistant_digest,)
            )
            if key in seen:
                return "duplicate"
            seen.add(key)
        return None
