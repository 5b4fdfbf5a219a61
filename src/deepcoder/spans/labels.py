"""The types that connect span labelling to its users: a span strategy, and a rendered chat's
tokens with their labels. Rendering produces them; teacher top-k alignment and views read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from deepcoder.protocol.parsing import Segment
from deepcoder.records.schema import TrajectoryRecord


class SpanStrategy(Protocol):
    name: str

    def assistant_segments(self, record: TrajectoryRecord, turn: int, content: str) -> list[Segment]: ...


@dataclass(frozen=True)
class LabelledTokens:
    """The rendered chat's tokens with their character offsets, span ids and agent steps, the
    per-character labels, and where each message's rendered content starts and ends."""

    input_ids: list[int]
    offsets: list[tuple[int, int]]
    span_ids: list[int]
    char_spans: list[int]
    message_starts: list[int]
    step_ids: list[int]
    message_ends: list[int]
