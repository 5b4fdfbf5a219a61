"""The structured span strategy: exact labels from the segments the agent recorded.

The labels themselves are :data:`deepcoder.core.names.SPAN_NAMES`; the text-rule strategies for
imported transcripts are in :mod:`deepcoder.spans.text_spans`.
"""

from __future__ import annotations

from deepcoder.core.names import SPAN_INDEX
from deepcoder.protocol.parsing import Segment, parse_turn
from deepcoder.records.schema import TrajectoryRecord


class StructuredSpans:
    """Exact labels from the character segments the agent recorded for each step.

    The agent's parser produced those segments from the very text stored in ``messages``; a
    record without them (hand-written or older) is parsed again with the same parser.
    ``merge_answer=True`` labels the final answer as ``action`` (the SAD paper's [ACT]).
    """

    name = "structured"

    def __init__(self, merge_answer: bool = False) -> None:
        self.merge_answer = merge_answer

    def assistant_segments(self, record: TrajectoryRecord, turn: int, content: str) -> list[Segment]:
        """Segments of the ``turn``-th assistant message, checked to tile ``content`` exactly."""
        steps = record.get("steps") or []
        raw = steps[turn].get("segments") if turn < len(steps) else None
        segments = [Segment(*s) for s in raw] if raw else parse_turn(content).segments
        where = f"trajectory {record.get('trajectory_id', '?')}, assistant turn {turn}"
        position = 0
        for segment in segments:
            if segment.start != position or segment.end <= segment.start or segment.label not in SPAN_INDEX:
                raise ValueError(f"{where}: segments {raw} do not tile the message text")
            position = segment.end
        if position != len(content):
            raise ValueError(f"{where}: segments end at {position}, message has {len(content)} characters")
        if self.merge_answer:
            segments = [Segment(s.start, s.end, "action" if s.label == "answer" else s.label) for s in segments]
        return segments
