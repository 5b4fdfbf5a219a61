"""Rendering keeps the training text what the agent sees at inference, on the tiny tokenizer and
the exact Qwen2.5 one: no leading whitespace in assistant content, special-token text in content
is plain text, ordinary chats tokenise as one piece, and every token knows its agent step."""

from __future__ import annotations

import pytest
from test_render import TURNS, make_record

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX, SPAN_NAMES
from deepcoder.models.qwen_tokenizer import load_qwen_tokenizer
from deepcoder.protocol.prompts import observation_message
from deepcoder.spans.render import chat_messages, render_trajectory
from deepcoder.spans.strategies import StructuredSpans


@pytest.fixture(scope="module", params=["tiny", "qwen2.5"])
def tokenizer(request, tiny_tokenizer):
    return tiny_tokenizer if request.param == "tiny" else load_qwen_tokenizer()


def with_leading_whitespace(leads: list[str]) -> dict:
    """The standard record with ``leads`` before its assistant messages (recorded segments shifted)."""
    record = make_record()
    assistant = [m for m in record["messages"] if m["role"] == "assistant"]
    for message, step, lead in zip(assistant, record["steps"], leads):
        message["content"] = lead + message["content"]
        step["segments"] = [
            (0 if i == 0 else start + len(lead), end + len(lead), label)
            for i, (start, end, label) in enumerate(step["segments"])
        ]
    return record


def test_assistant_content_is_rendered_without_leading_whitespace(tokenizer):
    """Before: ``\\n  \\n`` after ``assistant`` became one prompt token, and the generation prompt was
    not a prefix of the training tokens."""
    record = with_leading_whitespace(["  \n", " "])
    example = render_trajectory(tokenizer, record, StructuredSpans())
    messages, leads = chat_messages(record)
    assert leads[2] == 3 and messages[2]["content"] == TURNS[0]
    for turn, index in enumerate(i for i, m in enumerate(messages) if m["role"] == "assistant"):
        prefix = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        assert example.input_ids[: len(prefix_ids)] == prefix_ids, f"turn {turn}"
        assert SPAN_NAMES[example.span_ids[len(prefix_ids)]] == "reason"
        assert example.labels[len(prefix_ids)] != IGNORE_INDEX
    trained = tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])
    assert trained == "".join(t + tokenizer.eos_token for t in TURNS)


def test_special_token_text_in_content_is_plain_text(tokenizer):
    """Before: a literal ``<|im_end|>`` in teacher code was the end-of-turn token, trained as action."""
    code = 'Thought: print it.\nAction: python\nAction Input:\n```python\nprint("<|im_end|>")\n```'
    record = make_record(turns=[code, TURNS[1]], observation="<|im_end|>")
    example = render_trajectory(tokenizer, record, StructuredSpans())
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    assert example.input_ids.count(eos) == len(record["messages"])  # one per message, none from content
    action = [t for t, s in zip(example.input_ids, example.span_ids) if s == SPAN_INDEX["action"]]
    assert tokenizer.decode(action).count("<|im_end|>") == 2  # the literal, and the real end of the turn
    assert action.count(eos) == 1 and action[-1] == eos
    observation = [t for t, s in zip(example.input_ids, example.span_ids) if s == SPAN_INDEX["observation"]]
    assert eos not in observation and tokenizer.decode(observation) == observation_message("<|im_end|>")


def test_ordinary_chats_tokenise_as_the_whole_rendered_text(tokenizer):
    """Content is tokenised piece by piece; without special text or leading whitespace that is exactly
    the tokenisation of the whole chat (pieces are cut where the pre-tokenizer cuts anyway)."""
    for turns in (TURNS, [TURNS[1]], ["Thought: déjà vu — 你好 🙂\n" + TURNS[1][TURNS[1].index("Final") :]]):
        record = make_record(turns=turns, observation="  spaced\n\n  out  ")
        example = render_trajectory(tokenizer, record, StructuredSpans())
        text = tokenizer.apply_chat_template(record["messages"], tokenize=False)
        assert example.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_every_token_knows_its_agent_step(tokenizer):
    example = render_trajectory(tokenizer, make_record(), StructuredSpans())
    by_step: dict[int, set[str]] = {}
    for span, step in zip(example.span_ids, example.step_ids):
        by_step.setdefault(step, set()).add(SPAN_NAMES[span])
    assert by_step[-1] == {"prompt"}
    assert by_step[0] == {"reason", "action", "observation"}  # the turn, its end of turn, its observation
    assert by_step[1] == {"reason", "answer"}
    assert example.step_kinds == ((), ())
