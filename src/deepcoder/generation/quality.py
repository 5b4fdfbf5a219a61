"""Quality of a trajectory set: how many records reason, act with code, explain their answer.

The measures the project started with, defined on the records the agent writes, so reports,
notebooks and filters share one definition:

* ``with_reasoning``: some step has reasoning text — a ``Thought:``, a ``<think>`` block, or a
  provider's separate reasoning channel (the loop stores all three as the step's ``thought``).
* ``with_think``: some assistant turn carries a ``<think>…</think>`` block (R1-style models).
* ``with_code_action``: some step calls the ``python`` tool with non-empty code.
* ``with_explanation``: the final-answer turn says, in prose, why the answer is right: at least
  ``EXPLANATION_MIN_WORDS`` words outside code fences, ``<think>`` blocks and the protocol
  keywords (the turn's ``Thought:`` and any text after the program both count).

Shares and means are over the records without ``error`` (a failed API call has no trajectory
to judge); ``n_errors`` says how many were left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from deepcoder.records.schema import TrajectoryRecord

EXPLANATION_MIN_WORDS = 5
THINK_BLOCK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
FENCED_RE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
KEYWORD_RE = re.compile(r"^(?:Thought|Final Answer):", re.MULTILINE)
WORD_RE = re.compile(r"[^\W\d_]{2,}")


def has_reasoning(record: TrajectoryRecord) -> bool:
    return any((step.get("thought") or "").strip() for step in record.get("steps") or [])


def has_think(record: TrajectoryRecord) -> bool:
    return any(
        match.group(1).strip() for message in _assistant_turns(record) for match in THINK_BLOCK_RE.finditer(message)
    )


def has_code_action(record: TrajectoryRecord) -> bool:
    return any(
        (step.get("action") or {}).get("tool") == "python" and (step["action"].get("input") or "").strip()
        for step in record.get("steps") or []
    )


def explanation_words(record: TrajectoryRecord) -> int:
    """Words of prose in the final-answer turn (0 without a final answer)."""
    turns = _assistant_turns(record)
    if record.get("final_answer") is None or not turns:
        return 0
    prose = KEYWORD_RE.sub(" ", FENCED_RE.sub(" ", THINK_BLOCK_RE.sub(" ", turns[-1])))
    return len(WORD_RE.findall(prose))


def has_explanation(record: TrajectoryRecord) -> bool:
    return explanation_words(record) >= EXPLANATION_MIN_WORDS


def quality(records: Sequence[TrajectoryRecord]) -> dict[str, Any]:
    """Counts, pass rate and the quality shares and means of one group of records."""
    ok = [r for r in records if not r.get("error")]
    n, m = len(records), len(ok)

    def share(test) -> float:
        return round(sum(1 for r in ok if test(r)) / m, 4) if m else 0.0

    def mean(values: list[float]) -> float:
        return round(sum(values) / m, 2) if m else 0.0

    prompt = [float((r.get("usage") or {}).get("prompt_tokens", 0)) for r in ok]
    completion = [float((r.get("usage") or {}).get("completion_tokens", 0)) for r in ok]
    return {
        "n": n,
        "n_errors": n - m,
        "pass_rate": round(sum(1 for r in records if r.get("passed")) / n, 4) if n else 0.0,
        "with_reasoning": share(has_reasoning),
        "with_think": share(has_think),
        "with_code_action": share(has_code_action),
        "with_explanation": share(has_explanation),
        "mean_steps": mean([float(len(r.get("steps") or [])) for r in ok]),
        "mean_prompt_tokens": mean(prompt),
        "mean_completion_tokens": mean(completion),
        "mean_tokens": mean([p + c for p, c in zip(prompt, completion)]),
    }


def quality_by(records: Sequence[TrajectoryRecord], key: str) -> dict[str, dict[str, Any]]:
    """:func:`quality` per value of ``key`` (``category``, ``difficulty``), sorted by value."""
    groups: dict[str, list[TrajectoryRecord]] = {}
    for record in records:
        groups.setdefault(str(record.get(key)), []).append(record)
    return {name: quality(group) for name, group in sorted(groups.items())}


def _assistant_turns(record: TrajectoryRecord) -> list[str]:
    return [m.get("content") or "" for m in record.get("messages") or [] if m.get("role") == "assistant"]
