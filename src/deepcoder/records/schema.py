"""The trajectory record as pydantic models, and a validator for whole trajectory files.

One schema for the records ``generate.py`` writes and those :mod:`deepcoder.spans.importers`
produces. Fields the pipeline reads are typed (strictly where a coercion would hide a bug:
``passed`` is a bool, never ``"True"``); extra fields (``category``, ``stop_reason``,
``source`` …) are allowed. A step's ``segments`` must tile its assistant message exactly,
since ``span=structured`` trusts them.

CLI: ``python -m deepcoder.records.schema FILE`` prints the report; exit code 1 if a record is bad.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from deepcoder.core.names import SPAN_NAMES

SpanName = Literal[SPAN_NAMES]  # type: ignore[valid-type]


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(Record):
    role: Literal["system", "user", "assistant"]
    content: StrictStr


class Teacher(Record):
    provider: StrictStr
    model: StrictStr
    fingerprint: StrictStr | None = None


class Action(Record):
    tool: StrictStr
    input: StrictStr


class TokenLogprob(Record):
    """One generated token with the server's top-k (``teachers.reasoning.top_logprobs_of``)."""

    token: StrictStr
    logprob: float | None = None
    top: list[tuple[StrictStr, float | None]] = []


class Step(Record):
    thought: StrictStr = ""
    action: Action | None = None
    observation: StrictStr | None = None
    segments: list[tuple[StrictInt, StrictInt, SpanName]] | None = None
    logprobs: list[TokenLogprob] | None = None


class Usage(Record):
    prompt_tokens: StrictInt = Field(ge=0)
    completion_tokens: StrictInt = Field(ge=0)


class Trajectory(Record):
    """One episode: the exact chat, its parsed steps and the measured outcome."""

    schema_version: StrictInt
    trajectory_id: StrictStr = Field(min_length=1)
    problem_id: StrictStr = Field(min_length=1)
    teacher: Teacher
    messages: list[Message] = Field(min_length=1)
    steps: list[Step] = []
    final_answer: StrictStr | None = None
    passed: StrictBool | None = None
    error: StrictStr | None = None
    usage: Usage | None = None
    latency_s: float | None = Field(default=None, ge=0)

    @field_validator("steps")
    @classmethod
    def _segments_tile_their_message(cls, steps: list[Step], info: ValidationInfo) -> list[Step]:
        if "messages" not in info.data:  # already reported as invalid
            return steps
        turns = [m.content for m in info.data["messages"] if m.role == "assistant"]
        if len(steps) > len(turns):
            raise ValueError(f"{len(steps)} steps but {len(turns)} assistant messages")
        for i, (step, content) in enumerate(zip(steps, turns)):
            position = 0
            for start, end, _ in step.segments or []:
                if start != position or end <= start:
                    raise ValueError(f"step {i}: segments do not tile its assistant message")
                position = end
            if step.segments and position != len(content):
                raise ValueError(f"step {i}: segments end at {position}, its message has {len(content)} characters")
        return steps


class TrajectoryRecord(TypedDict, total=False):
    """A trajectory record as plain JSON (what ``json.loads`` gives, what ``generate.py`` writes).

    The typed view of :class:`Trajectory` where records cross package boundaries as dicts, plus the
    extras the pipeline reads: ``category``/``difficulty`` (the problem's), ``test_error`` and
    ``stop_reason`` (the agent loop's), ``wall_s``, and ``source`` (an imported record's origin).
    Messages and steps stay plain dicts (``Message`` and ``Step`` above give their fields).
    """

    schema_version: int
    trajectory_id: str
    problem_id: str
    teacher: dict[str, Any]
    messages: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    final_answer: str | None
    passed: bool | None
    error: str | None
    usage: dict[str, int] | None
    latency_s: float | None
    category: str
    difficulty: str
    test_error: str | None
    stop_reason: str
    wall_s: float
    source: dict[str, Any]


@dataclass
class ValidationReport:
    """What a trajectory file holds: bad records (``file:line: field: problem``) and usable ones.

    Usable: valid, without ``error`` and ``passed`` — what training keeps by default.
    """

    path: Path
    n_records: int = 0
    n_valid: int = 0
    n_usable: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        summary = (
            f"{self.path}: {self.n_records} records, {self.n_valid} valid, "
            f"{self.n_usable} usable (valid, no error, passed)"
        )
        return "\n".join([*self.errors, summary])


def as_record(data: dict[str, Any]) -> TrajectoryRecord:
    """``data`` (a parsed JSON line) seen as a trajectory record: no copy and no check
    (:func:`check_record` validates); where untyped JSON enters the typed code."""
    return cast(TrajectoryRecord, data)


def field_errors(exc: ValidationError, where: str) -> list[str]:
    """One ``file:line: field 'a.b': message`` line per problem pydantic found."""
    return [f"{where}: field '{'.'.join(map(str, e['loc'])) or '(record)'}': {e['msg']}" for e in exc.errors()]


def check_record(record: Any, where: str) -> Trajectory:
    """Validate one record; ``ValueError`` naming ``where`` and every bad field."""
    try:
        return Trajectory.model_validate(record)
    except ValidationError as exc:
        raise ValueError("\n".join(field_errors(exc, where))) from None


def validate_file(path: str | Path) -> ValidationReport:
    """Check every line of a trajectory JSONL file; never raises for a bad record."""
    report = ValidationReport(Path(path))
    if not report.path.is_file():
        report.errors.append(f"{path}: file not found")
        return report
    with report.path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            report.n_records += 1
            where = f"{path}:{number}"
            try:
                record = Trajectory.model_validate(json.loads(line))
            except json.JSONDecodeError as exc:
                report.errors.append(f"{where}: invalid JSON: {exc.msg} (col {exc.colno})")
                continue
            except ValidationError as exc:
                report.errors += field_errors(exc, where)
                continue
            report.n_valid += 1
            report.n_usable += int(record.error is None and record.passed is True)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepcoder.records.schema", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="trajectories JSONL")
    report = validate_file(parser.parse_args(argv).file)
    print(report)
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
