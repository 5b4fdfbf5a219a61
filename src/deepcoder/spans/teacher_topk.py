"""Stored top-k logprobs → the teacher's distribution at the rendered chat's tokens.

``teacher=openai`` with ``top_logprobs=k`` stores, for every token a step generated,
``{"token", "logprob", "top": [[token, logprob], …]}`` (``step["logprobs"]``). Training needs
them at the student's token positions of the rendered chat, where position ``t`` holds the
teacher's top-k for token ``t`` (as ``labels[t]``; the module shifts both alike).

Alignment (decision): the step's generated tokens, mapped to student ids
(:class:`~deepcoder.spans.token_map.TokenMap`), are matched to the student's tokens of the same
assistant message plus the end-of-turn token after it, with ``difflib.SequenceMatcher`` on the
ids; runs of at least ``MIN_RUN`` equal ids are aligned. Matching ids rather than offsets
survives every way the recorded message differs from what the server generated: a separate
reasoning channel inlined as ``<think>`` (no logprobs unless the server sent them too), an
``Observation:`` the parser cut, whitespace it stripped, a token split the re-tokenisation does
not reproduce. Tokens left unaligned have no teacher distribution: the loss falls back to
cross-entropy there, i.e. to the teacher's own sampled token (:mod:`deepcoder.losses`).

The top-k at an aligned token: the returned alternatives that have a student id, plus the
chosen token when it lies outside them (its logprob is known too). Alternatives without an id,
or with OpenAI's ``-9999`` "very unlikely" placeholder, are left out: their mass stays in the
"any other token" outcome, which keeps the coarsened divergence exact.

Prepared datasets store the top-k flat, in the memory-mapped store of
:mod:`deepcoder.data.store` (positions, and each example's ``[rows, k]`` ids and logprobs).

A teacher with another tokenizer shows up as poor agreement: :func:`check_alignment` refuses a
dataset where fewer than ``ALIGNMENT_FLOOR`` of the comparable tokens align or fewer than
``MAPPED_FLOOR`` of the alternatives have a student id, with the numbers and an example.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, fields
from difflib import SequenceMatcher
from typing import Any

import torch

from deepcoder.records.schema import TrajectoryRecord
from deepcoder.spans.labels import LabelledTokens
from deepcoder.spans.token_map import TokenMap

MIN_RUN = 3  # shortest run of equal ids taken as aligned: a lone equal token may be a coincidence
UNLIKELY = -9999.0  # OpenAI's logprob for a top-k entry that is not really among the top
ALIGNMENT_FLOOR = 0.95  # one tokenizer aligns ~all tokens; another aligns far fewer
MAPPED_FLOOR = 0.95


@dataclass
class AlignmentCounts:
    """How well stored logprobs matched the student's tokens; summed over examples for the dataset.

    ``comparable`` counts, per step, the shorter of its generated tokens and the student's tokens
    of its message: what could align at best (a cut observation or an inlined reasoning channel
    makes one side longer without any mismatch).
    """

    steps: int = 0
    teacher_tokens: int = 0
    comparable: int = 0
    aligned: int = 0
    alternatives: int = 0
    mapped_alternatives: int = 0
    example: str = ""  # the first badly aligned step, for the error message

    def add(self, other: AlignmentCounts) -> None:
        for item in fields(self):
            if item.name == "example":
                self.example = self.example or other.example
            else:
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @property
    def aligned_share(self) -> float:
        return self.aligned / self.comparable if self.comparable else 0.0

    @property
    def mapped_share(self) -> float:
        return self.mapped_alternatives / self.alternatives if self.alternatives else 1.0


@dataclass(frozen=True)
class TeacherTopK:
    """A teacher's top-k at some token positions of one example, stored sparsely.

    ``positions`` ``[n]``, ``ids`` and ``logprobs`` ``[n, k]`` (``-inf`` past what was returned).
    """

    positions: torch.Tensor
    ids: torch.Tensor
    logprobs: torch.Tensor
    counts: AlignmentCounts = field(default_factory=AlignmentCounts, compare=False)

    @property
    def k(self) -> int:
        return self.ids.shape[1]

    def truncated(self, length: int) -> TeacherTopK:
        keep = self.positions < length
        return TeacherTopK(self.positions[keep], self.ids[keep], self.logprobs[keep], self.counts)


def align_teacher(tokens: LabelledTokens, record: TrajectoryRecord, token_map: TokenMap) -> TeacherTopK:
    """The stored top-k of every step of ``record``, at the rendered tokens they align with."""
    counts, rows = AlignmentCounts(), {}
    starts = [start for start, _ in tokens.offsets]
    assistant = [i for i, m in enumerate(record["messages"]) if m["role"] == "assistant"]
    for turn, (message, step) in enumerate(zip(assistant, record.get("steps") or [])):
        entries = step.get("logprobs")
        if not entries:
            continue
        begin = tokens.message_starts[message]
        first = bisect.bisect_left(starts, begin)
        last = bisect.bisect_left(starts, tokens.message_ends[message])
        region = list(range(first, min(last + 1, len(starts))))  # + the end-of-turn token after it
        chosen = [token_map.id_of(entry["token"]) for entry in entries]
        student = [tokens.input_ids[k] for k in region]
        matcher = SequenceMatcher(None, [-1 if i is None else i for i in chosen], student, autojunk=False)
        matched: dict[int, int] = {}  # teacher entry → region index
        for block in matcher.get_matching_blocks():
            if block.size >= MIN_RUN:
                matched.update((block.a + offset, block.b + offset) for offset in range(block.size))
        for j, b in matched.items():
            top = _top_k(entries[j], student[b], token_map, counts)  # matched: chosen[j] == student[b]
            if top:
                rows[region[b]] = top
        comparable = min(len(entries), len(region))
        counts.add(AlignmentCounts(steps=1, teacher_tokens=len(entries), comparable=comparable, aligned=len(matched)))
        if len(matched) < ALIGNMENT_FLOOR * comparable and not counts.example:
            counts.example = _mismatch(record, turn, entries, student, matched, token_map)
    return _sparse(rows, counts)


def _mismatch(
    record: TrajectoryRecord,
    turn: int,
    entries: list[dict[str, Any]],
    student: list[int],
    matched: dict[int, int],
    token_map: TokenMap,
) -> str:
    """Where a step's tokens first stop aligning: the teacher's tokens there and the student's."""
    gap = next((j for j in range(len(entries)) if j not in matched), len(entries))
    after = max((b + 1 for j, b in matched.items() if j < gap), default=0)
    student_tokens = [token_map.tokenizer.decode([index]) for index in student[after : after + 5]]
    return (
        f"trajectory {record.get('trajectory_id', '?')} step {turn}, teacher token {gap}: the teacher has "
        f"{[entry['token'] for entry in entries[gap : gap + 5]]} where the student has {student_tokens}"
    )


def _top_k(entry: dict[str, Any], chosen: int, token_map: TokenMap, counts: AlignmentCounts) -> dict[int, float]:
    """One token's returned alternatives (+ the chosen token) as student id → logprob."""
    top: dict[int, float] = {}
    for token, logprob in entry.get("top") or []:
        counts.alternatives += 1
        index = token_map.id_of(token)
        counts.mapped_alternatives += index is not None
        if index is not None and _usable(logprob):
            top.setdefault(index, float(logprob))
    if chosen not in top and _usable(entry.get("logprob")):
        top[chosen] = float(entry["logprob"])
    return top


def _usable(logprob: Any) -> bool:
    return isinstance(logprob, (int, float)) and math.isfinite(logprob) and UNLIKELY < logprob <= 0.0


def _sparse(rows: dict[int, dict[int, float]], counts: AlignmentCounts) -> TeacherTopK:
    positions = sorted(rows)
    k = max((len(top) for top in rows.values()), default=1)
    ids = torch.zeros(len(positions), k, dtype=torch.long)
    logprobs = torch.full((len(positions), k), float("-inf"))
    for n, position in enumerate(positions):
        ranked = sorted(rows[position].items(), key=lambda item: -item[1])
        ids[n, : len(ranked)] = torch.tensor([index for index, _ in ranked])
        logprobs[n, : len(ranked)] = torch.tensor([logprob for _, logprob in ranked])
    return TeacherTopK(torch.tensor(positions, dtype=torch.long), ids, logprobs, counts)


def check_alignment(counts: AlignmentCounts, where: str) -> None:
    """Refuse logprobs that did not come from the student's tokenizer, or that do not exist."""
    if not counts.steps:
        raise ValueError(
            f"{where}: no step carries top-k logprobs (generate with teacher=openai "
            "teacher.top_logprobs=k, or give the loss a live teacher)"
        )
    if counts.aligned_share < ALIGNMENT_FLOOR or counts.mapped_share < MAPPED_FLOOR:
        raise ValueError(
            f"{where}: the stored logprobs do not match the student's tokenizer: "
            f"{counts.aligned_share:.1%} of {counts.comparable} tokens align (need "
            f"{ALIGNMENT_FLOOR:.0%}) and {counts.mapped_share:.1%} of {counts.alternatives} top-k "
            f"alternatives are student tokens (need {MAPPED_FLOOR:.0%}); e.g. {counts.example or '-'}. "
            "Token-level distillation needs one shared vocabulary: generate with a teacher of the "
            "student's family, or use loss=sad"
        )


def batch_tensors(rows: list[list[tuple[TeacherTopK, int]]], length: int) -> dict[str, torch.Tensor]:
    """``teacher_ids``/``teacher_logprobs`` ``[B, length, k]`` from each row's ``(top-k, token offset)``
    parts; positions without a teacher hold ``-inf`` logprobs (the loss's "no teacher here")."""
    k = max((part.k for row in rows for part, _ in row), default=1)
    ids = torch.zeros(len(rows), length, k, dtype=torch.long)
    logprobs = torch.full((len(rows), length, k), float("-inf"))
    for b, row in enumerate(rows):
        for part, offset in row:
            ids[b, part.positions + offset, : part.k] = part.ids
            logprobs[b, part.positions + offset, : part.k] = part.logprobs
    return {"teacher_ids": ids, "teacher_logprobs": logprobs}
