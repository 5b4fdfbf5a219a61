"""Render a trajectory with the tokenizer's chat template and label every token with its span.

The text is rendered once with the chat template; each message's content is located in that
text in order, labelled per character, and the labels are carried to tokens through the fast
tokenizer's offset mapping. Boundary rule: **a token takes the label of its first character**.
The end-of-turn token that closes an assistant message (e.g. ``<|im_end|>``) takes the label of
the message's last segment, so the student learns when to stop and hand over to the tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedTokenizerBase

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX, TRAINED_SPANS
from deepcoder.protocol.prompts import OBSERVATION_PREFIX
from deepcoder.spans.labels import LabelledTokens, SpanStrategy
from deepcoder.spans.teacher_topk import TeacherTopK, align_teacher
from deepcoder.spans.token_map import TokenMap


@dataclass(frozen=True)
class RenderedExample:
    """Token ids with their training labels (``-100`` = not trained) and span ids, all one length;
    with stored teacher logprobs, the teacher's top-k at the tokens they align with."""

    trajectory_id: str
    input_ids: list[int]
    labels: list[int]
    span_ids: list[int]
    teacher: TeacherTopK | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.input_ids)

    def truncated(self, length: int) -> RenderedExample:
        """The first ``length`` tokens (and the teacher's top-k among them)."""
        teacher = None if self.teacher is None else self.teacher.truncated(length)
        return RenderedExample(
            self.trajectory_id, self.input_ids[:length], self.labels[:length], self.span_ids[:length], teacher
        )


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


def character_labels(
    text: str,
    messages: list[dict[str, str]],
    starts: list[int],
    record: dict[str, Any],
    strategy: SpanStrategy,
    end_of_turn: str,
) -> list[int]:
    """A span index for every character of the rendered ``text`` (``starts``: :func:`message_starts`)."""
    labels = [SPAN_INDEX["prompt"]] * len(text)
    turn = 0
    for index, (message, start) in enumerate(zip(messages, starts)):
        content = message["content"]
        end = start + len(content)
        if message["role"] == "assistant":
            segments = strategy.assistant_segments(record, turn, content)
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


def label_tokens(tokenizer: PreTrainedTokenizerBase, record: dict[str, Any], strategy: SpanStrategy) -> LabelledTokens:
    """Render the chat once, label its characters, tokenise it, and give each token a span."""
    messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    starts = message_starts(text, messages, record.get("trajectory_id", "?"))
    char_spans = character_labels(text, messages, starts, record, strategy, tokenizer.eos_token or "")
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(offset) for offset in encoding["offset_mapping"]]
    span_ids = [char_spans[min(start, len(char_spans) - 1)] for start, _ in offsets]
    return LabelledTokens(list(encoding["input_ids"]), offsets, span_ids, char_spans, starts)


def render_trajectory(
    tokenizer: PreTrainedTokenizerBase,
    record: dict[str, Any],
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
    example = RenderedExample(record.get("trajectory_id", ""), tokens.input_ids, labels, tokens.span_ids, teacher)
    return example if max_length is None else example.truncated(max_length)
