"""What filters, curricula and statistics need to know about a rendered trajectory.

Computed once at render time and stored as per-example columns (:mod:`deepcoder.data.columns`),
so changing a filter or a curriculum never re-tokenises.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from deepcoder.records.schema import TrajectoryRecord


@dataclass(frozen=True)
class ExampleInfo:
    """A record's outcome and identity digests, and its token count before truncation."""

    problem_id: str
    passed: bool | None
    steps: int
    full_length: int
    program_digest: str | None
    assistant_digest: str


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(record: TrajectoryRecord, full_length: int) -> ExampleInfo:
    """The :class:`ExampleInfo` of ``record``, rendered to ``full_length`` tokens before truncation."""
    program = record.get("final_answer")
    assistant = "\x00".join(m["content"] for m in record["messages"] if m["role"] == "assistant")
    return ExampleInfo(
        str(record.get("problem_id", "")),
        record.get("passed"),
        len(record.get("steps") or []),
        full_length,
        _digest(program.strip()) if program else None,
        _digest(assistant),
    )
