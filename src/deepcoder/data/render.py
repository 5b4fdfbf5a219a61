"""Render a trajectory with the tokenizer's chat template and label every token with its span.

The text is rendered once with the chat template; each message's content is located in that
text in order, labelled per character, and the labels are carried to tokens through the fast
tokenizer's offset mapping. Boundary rule: **a token takes the label of its first character**.
The end-of-turn token that closes an assistant message (e.g. ``<|im_end|>``) takes the label of
the message's last segment, so the student learns when to stop and hand over to the tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from transformers import PreTrainedTokenizerBase

from deepcoder.agent.parsing import Segment
from deepcoder.agent.prompts import OBSERVATION_PREFIX
from deepcoder.data.spans import SPAN_INDEX, TRAINED_SPANS

IGNORE_INDEX = -100


class SpanStrategy(Protocol):
    name: str

    def assistant_segments(self, record: dict[str, Any], turn: int, content: str) -> list[Segment]: ...


@dataclass(frozen=True)
class RenderedExample:
    """Token ids with their training labels (``-100`` = not trained) and span ids, all one length."""

    trajectory_id: str
    input_ids: list[int]
    labels: list[int]
    span_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def character_labels(text: str, messages: list[dict[str, str]], record: dict[str, Any],
                     strategy: SpanStrategy, end_of_turn: str) -> list[int]:
    """A span index for every character of the rendered ``text``."""
    labels = [SPAN_INDEX["prompt"]] * len(text)
    cursor, turn = 0, 0
    for index, message in enumerate(messages):
        content = message["content"]
        start = text.find(content, cursor)
        if start < 0:
            raise ValueError(f"trajectory {record.get('trajectory_id', '?')}: message {index} "
                             "not found in the rendered chat (does the chat template alter content?)")
        end = start + len(content)
        if message["role"] == "assistant":
            segments = strategy.assistant_segments(record, turn, content)
            for segment in segments:
                labels[start + segment.start:start + segment.end] = \
                    [SPAN_INDEX[segment.label]] * (segment.end - segment.start)
            if segments and text.startswith(end_of_turn, end):
                labels[end:end + len(end_of_turn)] = [SPAN_INDEX[segments[-1].label]] * len(end_of_turn)
                end += len(end_of_turn)
            turn += 1
        elif message["role"] == "user" and index > 1 and content.startswith(OBSERVATION_PREFIX):
            labels[start:end] = [SPAN_INDEX["observation"]] * len(content)
        cursor = end
    return labels


@dataclass(frozen=True)
class LabelledTokens:
    """The rendered chat's tokens with their character offsets and span ids, and the per-character labels."""

    input_ids: list[int]
    offsets: list[tuple[int, int]]
    span_ids: list[int]
    char_spans: list[int]


def label_tokens(tokenizer: PreTrainedTokenizerBase, record: dict[str, Any], strategy: SpanStrategy) -> LabelledTokens:
    """Render the chat once, label its characters, tokenise it, and give each token a span."""
    messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    char_spans = character_labels(text, messages, record, strategy, tokenizer.eos_token or "")
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(offset) for offset in encoding["offset_mapping"]]
    span_ids = [char_spans[min(start, len(char_spans) - 1)] for start, _ in offsets]
    return LabelledTokens(list(encoding["input_ids"]), offsets, span_ids, char_spans)


def render_trajectory(tokenizer: PreTrainedTokenizerBase, record: dict[str, Any], strategy: SpanStrategy,
                      max_length: int | None = None) -> RenderedExample:
    """Token ids, training labels and span ids of one trajectory record."""
    tokens = label_tokens(tokenizer, record, strategy)
    trained = {SPAN_INDEX[name] for name in TRAINED_SPANS}
    labels = [token if span in trained else IGNORE_INDEX for token, span in zip(tokens.input_ids, tokens.span_ids)]
    end = len(tokens.input_ids) if max_length is None else max_length
    return RenderedExample(record.get("trajectory_id", ""), tokens.input_ids[:end], labels[:end],
                           tokens.span_ids[:end])
