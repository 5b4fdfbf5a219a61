"""Span strategies for transcripts that carry no recorded segments: labels from text rules.

Same interface as :class:`deepcoder.spans.strategies.StructuredSpans`, for imported transcripts
(FireAct, other ReAct datasets) and for reasoning-model output:

- :class:`ReactSpans` reads ``Thought:`` / ``Action:`` / ``Action Input:`` / ``Final Answer:``
  lines, in our multi-line protocol or FireAct's one-line ``Action: search[…]`` style.
- :class:`ThinkSpans` reads ``<think>…</think>`` blocks, fenced code and a ``Final Answer:``.

Both return segments that tile the message exactly. A section starts at its keyword (the
keyword is part of it) and keeps the newline that ends it, so on a tokenizer that splits at
line starts (Qwen2's pre-tokenizer does) no token straddles two spans.
"""

from __future__ import annotations

import re

from deepcoder.protocol.parsing import THINK_RE, Segment
from deepcoder.records.schema import TrajectoryRecord


def tile(length: int, marks: list[tuple[int, str]]) -> list[Segment]:
    """Segments from ``(start, label)`` marks in increasing order: each runs to the next mark.

    Empty segments are dropped and neighbours with the same label merged.
    """
    segments: list[Segment] = []
    for (start, label), (end, _) in zip(marks, [*marks[1:], (length, "")]):
        if end <= start:
            continue
        if segments and segments[-1].label == label:
            segments[-1] = Segment(segments[-1].start, end, label)
        else:
            segments.append(Segment(start, end, label))
    return segments


def merged(segments: list[Segment], merge_answer: bool) -> list[Segment]:
    """Relabel ``answer`` as ``action`` when ``merge_answer`` (the SAD paper's [ACT] span)."""
    if not merge_answer:
        return segments
    return tile(
        segments[-1].end if segments else 0, [(s.start, "action" if s.label == "answer" else s.label) for s in segments]
    )


class ReactSpans:
    """ReAct text rules: each keyword line opens a section that runs to the next keyword.

    ``Thought:`` and any text before the first keyword (a leading ``<think>`` block included,
    whose keywords are ignored, as the agent's parser does) are ``reason``; ``Action:`` and
    ``Action Input:`` with their content are ``action``; ``Final Answer:`` and everything after it
    are ``answer`` (``action`` with ``merge_answer``). FireAct's ``Action: finish[…]`` is labelled
    ``action``: it is an Action line, and the student must learn to emit it as one. An
    ``Observation:`` written inside an assistant message (a transcript not split into turns) is
    ``observation``, so environment text is never trained on. Patterns are multiline regexes.
    """

    name = "react"

    def __init__(
        self,
        merge_answer: bool = False,
        thought: str = r"^Thought(?: \d+)?:",
        action: str = r"^Action(?: Input)?(?: \d+)?:",
        final_answer: str = r"^Final Answer:",
        observation: str = r"^Observation(?: \d+)?:",
    ) -> None:
        self.merge_answer = merge_answer
        self.patterns = {
            label: re.compile(pattern, re.MULTILINE)
            for label, pattern in (
                ("reason", thought),
                ("action", action),
                ("answer", final_answer),
                ("observation", observation),
            )
        }

    def assistant_segments(self, record: TrajectoryRecord, turn: int, content: str) -> list[Segment]:
        think = THINK_RE.match(content)
        body = think.end() if think else 0
        marks = sorted(
            (m.start(), label) for label, pattern in self.patterns.items() for m in pattern.finditer(content, body)
        )
        answer = next((i for i, (_, label) in enumerate(marks) if label == "answer"), len(marks))
        return merged(tile(len(content), [(0, "reason"), *marks[: answer + 1]]), self.merge_answer)


class ThinkSpans:
    """Reasoning-model rules: ``<think>…</think>`` is ``reason``, a fenced code block is ``action``,
    ``Final Answer:`` and everything after it is ``answer`` (``action`` with ``merge_answer``), and
    all other text is ``reason``.

    A think block keeps the whitespace after it and a fence the rest of its closing line, so the
    newline after a block is not a token of the next span. Fences inside a think block are
    reasoning; an unclosed block or fence runs to the end of the message.
    """

    name = "think"

    def __init__(self, merge_answer: bool = False, final_answer: str = r"^Final Answer:") -> None:
        self.merge_answer = merge_answer
        self.pattern = re.compile(
            r"(?P<reason><think>.*?(?:</think>\s*|\Z))"
            r"|(?P<action>```.*?(?:```[^\n]*\n?|\Z))"
            rf"|(?P<answer>{final_answer})",
            re.DOTALL | re.MULTILINE,
        )

    def assistant_segments(self, record: TrajectoryRecord, turn: int, content: str) -> list[Segment]:
        marks = [(0, "reason")]
        for match in self.pattern.finditer(content):
            kind = match.lastgroup
            if kind is None:  # every alternative is a named group that closes last, so this cannot match
                raise ValueError(f"span pattern {self.pattern.pattern!r} matched outside its named groups")
            marks.append((match.start(), kind))
            if kind == "answer":
                break
            marks.append((match.end(), "reason"))
        return merged(tile(len(content), marks), self.merge_answer)
