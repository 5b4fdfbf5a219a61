"""Parse one model turn into thought, action and final answer, with character spans.

Accepted shape (an optional leading ``<think>…</think>`` block counts as reasoning)::

    Thought: …
    Action: python
    Action Input:
    ```python
    …
    ```

or ``Thought: …`` followed by ``Final Answer:`` and a fenced program. Anything from a line
starting with ``Observation:`` on is cut off: observations are written by the environment,
never by the model. The segments cover the kept text exactly: ``reason`` up to the ``Action:``
or ``Final Answer:`` keyword, then ``action`` or ``answer`` to the end, so span labelling
(:mod:`deepcoder.spans.strategies`) and parsing can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

THINK_RE = re.compile(r"\A\s*<think>(.*?)</think>", re.DOTALL)
OBSERVATION_RE = re.compile(r"^Observation:", re.MULTILINE)
ACTION_RE = re.compile(r"^Action:[ \t]*(\S*)[ \t]*$", re.MULTILINE)
ACTION_INPUT_RE = re.compile(r"^Action Input:[ \t]*", re.MULTILINE)
FINAL_RE = re.compile(r"^Final Answer:[ \t]*", re.MULTILINE)
THOUGHT_RE = re.compile(r"^Thought:[ \t]*", re.MULTILINE)
FENCE_RE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Segment:
    """A labelled character range ``[start, end)`` of the turn's kept text."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class ParsedTurn:
    """What a model turn says, plus the exact text it was parsed from."""

    text: str
    thought: str
    tool: str | None = None
    tool_input: str | None = None
    final_answer: str | None = None
    error: str | None = None
    segments: list[Segment] = field(default_factory=list)

    @property
    def is_action(self) -> bool:
        return self.tool is not None and self.error is None

    @property
    def is_final(self) -> bool:
        return self.final_answer is not None and self.error is None


def strip_fence(text: str) -> str:
    """The code inside the first fenced block, or the stripped text when there is no fence."""
    match = FENCE_RE.search(text)
    return match.group(1).strip("\n") if match else text.strip()


def truncate_at_observation(text: str) -> str:
    """Drop a hallucinated ``Observation:`` and everything after it."""
    match = OBSERVATION_RE.search(text)
    return text[: match.start()].rstrip() if match else text.rstrip()


def _thought(text: str) -> str:
    think = THINK_RE.match(text)
    rest = text[think.end() :] if think else text
    parts = [think.group(1).strip()] if think else []
    match = THOUGHT_RE.search(rest)
    parts.append((rest[match.end() :] if match else rest).strip())
    return "\n".join(p for p in parts if p)


def parse_turn(raw: str, tools: frozenset[str] | set[str] = frozenset({"python", "retrieve"})) -> ParsedTurn:
    """Parse one assistant turn; a turn with neither a valid action nor a final answer has ``error``.

    Keywords inside a leading ``<think>`` block are part of the reasoning, never actions.
    """
    think = THINK_RE.match(raw)
    body_start = think.end() if think else 0
    text = raw[:body_start] + truncate_at_observation(raw[body_start:])
    final = FINAL_RE.search(text, body_start)
    action = ACTION_RE.search(text, body_start)
    if final and (not action or final.start() < action.start()):
        answer = strip_fence(text[final.end() :])
        segments = [Segment(0, final.start(), "reason"), Segment(final.start(), len(text), "answer")]
        error = None if answer else "empty Final Answer"
        return ParsedTurn(
            text,
            _thought(text[: final.start()]),
            final_answer=answer or None,
            error=error,
            segments=_nonempty(segments),
        )
    if action:
        tool = action.group(1)
        body = text[action.end() :]
        given = ACTION_INPUT_RE.search(body)
        tool_input = strip_fence(body[given.end() :]) if given else ""
        error = None
        if tool not in tools:
            error = f"unknown tool {tool!r}; use one of {sorted(tools)}"
        elif not given or not tool_input:
            error = "missing Action Input"
        segments = [Segment(0, action.start(), "reason"), Segment(action.start(), len(text), "action")]
        return ParsedTurn(
            text,
            _thought(text[: action.start()]),
            tool=tool,
            tool_input=tool_input,
            error=error,
            segments=_nonempty(segments),
        )
    return ParsedTurn(
        text,
        _thought(text),
        error="no Action or Final Answer found",
        segments=_nonempty([Segment(0, len(text), "reason")]),
    )


def _nonempty(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if s.end > s.start]
