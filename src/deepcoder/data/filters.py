"""Which rendered trajectories train: passed only, not too long, enough reasoning, no duplicates.

Filters run on the cached examples' per-example columns (:mod:`deepcoder.data.store`), so changing
one never re-tokenises, nor reads a token.
Each filter counts what it drops; the counts are logged and reported by ``datamodule.stats()``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from deepcoder.core.names import SPAN_INDEX, TRAINED_SPANS
from deepcoder.data.store import ExampleStore

log = logging.getLogger(__name__)

DEDUPE_KEYS = ("program", "assistant")
DROP_REASONS = ("not_passed", "too_long", "little_reasoning", "duplicate")


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

    def apply(self, store: ExampleStore, indices: np.ndarray, only_passed: bool) -> tuple[np.ndarray, dict[str, int]]:
        """The kept examples of ``indices`` (in order), and how many each filter dropped; the first
        filter that applies counts the drop. Reads the store's per-example columns, no token."""
        counts = store["span_counts"][indices]
        reason = counts[:, SPAN_INDEX["reason"]]
        trained = counts[:, [SPAN_INDEX[span] for span in TRAINED_SPANS]].sum(axis=1)
        too_long = store["full_length"][indices] > (self.max_tokens if self.max_tokens is not None else np.inf)
        reasons = np.select(
            [
                (store["passed"][indices] != 1) & only_passed,
                too_long,
                (reason < self.min_reason_tokens) | (reason < self.min_reason_share * trained),
            ],
            [1, 2, 3],
            default=0,
        )
        if self.dedupe:
            reasons[self._duplicates(store, indices, reasons == 0)] = 4
        dropped = dict(zip(DROP_REASONS, np.bincount(reasons, minlength=5)[1:].tolist()))
        for reason_name, count in dropped.items():
            if count:
                log.info("filter %s dropped %d trajectories", reason_name, count)
        return indices[reasons == 0], dropped

    def _duplicates(self, store: ExampleStore, indices: np.ndarray, kept: np.ndarray) -> list[int]:
        """Positions (in ``indices``) of the kept examples that repeat an earlier kept one."""
        seen: set[tuple[str, ...]] = set()
        repeats = []
        for position in np.flatnonzero(kept).tolist():
            i = int(indices[position])
            assistant = store.string("assistant_digest", i)
            if self.dedupe == "program":
                key: tuple[str, ...] = (store.string("problem_id", i), store.string("program_digest", i) or assistant)
            else:
                key = (assistant,)
            if key in seen:
                repeats.append(position)
            seen.add(key)
        return repeats
