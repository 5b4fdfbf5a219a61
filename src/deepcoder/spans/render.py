"""Render a trajectory with the tokenizer's chat template and label every token with its span.

The text is rendered once with the chat template; each message's content is located in that
text in order, labelled per character, and the labels are carried to tokens through the fast
tokenizer's offset mapping. Boundary rule: **a token takes the label of its first character**.
The end-of-turn token that closes an assistant message (e.g. ``<|im_end|>``) takes the label of
the message's last segment, so the student learns when to stop and hand over to the tool.

Two rendering rules keep the training text what the agent sees at inference:

- assistant content is rendered without its leading whitespace: the template's newline and that
  whitespace would merge into one ``prompt`` token, and the generation prompt
  (``<|im_start|>assistant\n``) would not be a prefix of the training tokens;
- message content is tokenised as plain text: a literal ``<|im_end|>`` in teacher code is the
  characters, not the end of the turn (the template's own special tokens stay special). Each
  content is its own piece, cut where a pre-tokenizer that splits after a newline (Qwen2's,
  the tiny one's) cuts anyway, so ordinary text gives the tokens of the whole chat (tested).

Each token also knows its agent step (:mod:`deepcoder.spans.steps`): an assistant turn, its
end-of-turn token and the observation that answers it carry the turn's index, all else ``-1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX, TRAINED_SPANS
from deepcoder.protocol.parsing import Segment
from deepcoder.protocol.prompts import OBSERVATION_PREFIX
from deepcoder.records.schema import TrajectoryRecord
from deepcoder.spans.labels import LabelledTokens, SpanStrategy
from deepcoder.spans.step_kinds import step_kinds
from deepcoder.spans.teacher_topk import TeacherTopK, align_teacher
from deepcoder.spans.token_map import TokenMap


@dataclass(frozen=True)
class RenderedExample:
    """Token ids with their training labels (``-100`` = not trained) and span ids, all one length;
    with stored teacher logprobs, the teacher's top-k at the tokens they align with; each token's
    agent step (``-1``: none; empty: not known) and each step's kinds (:mod:`deepcoder.spans.steps`)."""

    trajectory_id: str
    input_ids: list[int]
    labels: list[int]
    span_ids: list[int]
    teacher: TeacherTopK | None = field(default=None, compare=False)
    step_ids: list[int] = field(default_factory=list)
    step_kinds: tuple[tuple[str, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.input_ids)

    def require_teacher(self) -> TeacherTopK:
        """The teacher's top-k, for callers that render every example with teacher logprobs."""
        if self.teacher is None:
            raise ValueError(
                f"trajectory {self.trajectory_id} was rendered without teacher logprobs: "
                "render all examples of a batch with the same token map"
            )
        return self.teacher

    def truncated(self, length: int) -> RenderedExample:
        """The first ``length`` tokens (and the teacher's top-k among them)."""
        teacher = None if self.teacher is None else self.teacher.truncated(length)
        return RenderedExample(
            self.trajectory_id,
            self.input_ids[:length],
            self.labels[:length],
            self.span_ids[:length],
            teacher,
            self.step_ids[:length],
            self.step_kinds,
        )


def chat_messages(record: TrajectoryRecord) -> tuple[list[dict[str, str]], list[int]]:
    """The messages as rendered (assistant content without leading whitespace) and how many
    characters each lost at its start."""
    messages, leads = [], []
    for message in record["messages"]:
        content = message["content"]
        if message["role"] == "assistant":
            content = content.lstrip()
        messages.append({"role": message["role"], "content": content})
        leads.append(len(message["content"]) - len(content))
    return messages, leads


def message_starts(text: str, messages: list[dict[str, str]], where: str = "?") -> list[int]:
    """Where each message's content begins in the rendered chat ``text``, found in order."""
    starts, cursor = [], 0
    for index, message in enumerate(messages):
        start = text.find(message["content"], cursor)
        if start < 0:
            raise ValueError(
                f"trajectory {where}: message {index} "
                "not found in the rendered chat (does the chat template alter content?)"
            )
        starts.append(start)
        cursor = start + len(message["content"])
    return starts


def shifted(segments: list[Segment], lead: int) -> list[Segment]:
    """Segments of the recorded message moved onto its rendered content, which lost ``lead`` characters."""
    moved = [Segment(max(s.start - lead, 0), s.end - lead, s.label) for s in segments]
    return [s for s in moved if s.end > s.start]


def character_labels(
    text: str,
    messages: list[dict[str, str]],
    starts: list[int],
    record: TrajectoryRecord,
    strategy: SpanStrategy,
    end_of_turn: str,
    leads: list[int] | None = None,
) -> list[int]:
    """A span index for every character of the rendered ``text`` (``starts``: :func:`message_starts`;
    ``leads``: the characters each rendered message lost, see :func:`chat_messages`)."""
    labels = [SPAN_INDEX["prompt"]] * len(text)
    turn = 0
    for index, (message, start) in enumerate(zip(messages, starts)):
        content = message["content"]
        end = start + len(content)
        if message["role"] == "assistant":
            lead = leads[index] if leads else 0
            recorded = record["messages"][index]["content"] if lead else content
            segments = shifted(strategy.assistant_segments(record, turn, recorded), lead)
            for segment in segments:
                labels[start + segment.start : start + segment.end] = [SPAN_INDEX[segment.label]] * (
                    segment.end - segment.start
                )
            if segments and text.startswith(end_of_turn, end):
                labels[end : end + len(end_of_turn)] = [SPAN_INDEX[segments[-1].label]] * len(end_of_turn)
            turn += 1
        elif message["role"] == "user" and index > 1 and content.startswith(OBSERVATION_PREFIX):
            labels[start:end] = [SPAN_INDEX["observation"]] * len(content)
    return labels


def character_steps(text: str, messages: list[dict[str, str]], starts: list[int], end_of_turn: str) -> list[int]:
    """The agent step of every character: assistant turn ``i`` (with its end-of-turn token) and the
    observation answering it are step ``i``; everything else ``-1``."""
    steps = [-1] * len(text)
    turn = -1
    for index, (message, start) in enumerate(zip(messages, starts)):
        end = start + len(message["content"])
        if message["role"] == "assistant":
            turn += 1
            if text.startswith(end_of_turn, end):
                end += len(end_of_turn)
            steps[start:end] = [turn] * (end - start)
        elif (
            message["role"] == "user" and index > 1 and turn >= 0 and message["content"].startswith(OBSERVATION_PREFIX)
        ):
            steps[start:end] = [turn] * (end - start)
    return steps


def encode(
    tokenizer: PreTrainedTokenizerBase, text: str, messages: list[dict[str, str]], starts: list[int]
) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets of the rendered chat: the template's text with its special
    tokens, each message's content as plain text (special-token text in it is split)."""
    pieces, cursor = [], 0
    for message, start in zip(messages, starts):
        end = start + len(message["content"])
        pieces += [(cursor, start, False), (start, end, True)]
        cursor = end
    pieces.append((cursor, len(text), False))
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    for begin, end, plain in pieces:
        if end > begin:
            encoding = tokenizer(
                text[begin:end], add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=plain
            )
            ids += encoding["input_ids"]
            offsets += [(begin + a, begin + b) for a, b in encoding["offset_mapping"]]
    return ids, offsets


def label_tokens(
    tokenizer: PreTrainedTokenizerBase, record: TrajectoryRecord, strategy: SpanStrategy
) -> LabelledTokens:
    """Render the chat once, label its characters, tokenise it, and give each token a span and a step."""
    messages, leads = chat_messages(record)
    text = str(tokenizer.apply_chat_template(messages, tokenize=False))  # a str with tokenize=False; stubs say a union
    starts = message_starts(text, messages, record.get("trajectory_id", "?"))
    end_of_turn = tokenizer.eos_token or ""
    char_spans = character_labels(text, messages, starts, record, strategy, end_of_turn, leads)
    char_steps = character_steps(text, messages, starts, end_of_turn)
    input_ids, offsets = encode(tokenizer, text, messages, starts)
    first = [min(start, len(text) - 1) for start, _ in offsets]  # a token's label: its first character's
    return LabelledTokens(
        input_ids,
        offsets,
        [char_spans[i] for i in first],
        char_spans,
        starts,
        [char_steps[i] for i in first],
        [start + len(m["content"]) for m, start in zip(messages, starts)],
    )


def render_trajectory(
    tokenizer: PreTrainedTokenizerBase,
    record: TrajectoryRecord,
    strategy: SpanStrategy,
    max_length: int | None = None,
    token_map: TokenMap | None = None,
) -> RenderedExample:
    """Token ids, training labels and span ids of one trajectory record; with ``token_map``, also the
    teacher's stored top-k logprobs aligned with the tokens (:mod:`deepcoder.spans.teacher_topk`)."""
    tokens = label_tokens(tokenizer, record, strategy)
    trained = {SPAN_INDEX[name] for name in TRAINED_SPANS}
    labels = [token if span in trained else IGNORE_INDEX for token, span in zip(tokens.input_ids, tokens.span_ids)]
    teacher = None if token_map is None else align_teacher(tokens, record, token_map)
    example = RenderedExample(
        record.get("trajectory_id", ""),
        tokens.input_ids,
        labels,
        tokens.span_ids,
        teacher,
        tokens.step_ids,
        step_kinds(record),
    )
    return example if max_length is None else example.truncated(max_length)
