"""Rendering and span labels: every assistant token is trained, prompt and observations never."""

from __future__ import annotations

import dataclasses

import pytest

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX, SPAN_NAMES
from deepcoder.protocol.parsing import parse_turn
from deepcoder.protocol.prompts import observation_message
from deepcoder.spans.render import render_trajectory
from deepcoder.spans.strategies import StructuredSpans

TURNS = [
    "Thought: I will test it.\nAction: python\nAction Input:\n```python\nprint(repr(add(1, 2)))\n```",
    "Thought: It prints 3, as expected.\nFinal Answer:\n```python\ndef add(a, b):\n    return a + b\n```",
]


def make_record(turns=TURNS, observation="3", with_segments=True) -> dict:
    messages = [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "Write add(a, b)."},
    ]
    steps = []
    for i, raw in enumerate(turns):
        turn = parse_turn(raw)
        messages.append({"role": "assistant", "content": turn.text})
        step = {
            "thought": turn.thought,
            "observation": None,
            "segments": [dataclasses.astuple(s) for s in turn.segments] if with_segments else None,
        }
        if i < len(turns) - 1:
            messages.append({"role": "user", "content": observation_message(observation)})
            step["observation"] = observation
        steps.append(step)
    return {
        "schema_version": 1,
        "trajectory_id": "t0",
        "problem_id": "p0",
        "teacher": {"provider": "test", "model": "hand-written"},
        "messages": messages,
        "steps": steps,
    }


def spans_text(tokenizer, example, span: str) -> str:
    ids = [t for t, s in zip(example.input_ids, example.span_ids) if s == SPAN_INDEX[span]]
    return tokenizer.decode(ids)


@pytest.mark.parametrize("with_segments", [True, False])
def test_each_span_decodes_to_its_text(tiny_tokenizer, with_segments):
    example = render_trajectory(tiny_tokenizer, make_record(with_segments=with_segments), StructuredSpans())
    eos = tiny_tokenizer.eos_token
    assert (
        spans_text(tiny_tokenizer, example, "reason")
        == "Thought: I will test it.\nThought: It prints 3, as expected.\n"
    )
    assert spans_text(tiny_tokenizer, example, "action") == TURNS[0][TURNS[0].index("Action:") :] + eos
    assert spans_text(tiny_tokenizer, example, "answer") == TURNS[1][TURNS[1].index("Final Answer:") :] + eos
    assert spans_text(tiny_tokenizer, example, "observation") == observation_message("3")


def test_only_assistant_tokens_carry_labels(tiny_tokenizer):
    example = render_trajectory(tiny_tokenizer, make_record(), StructuredSpans())
    assert len(example.input_ids) == len(example.labels) == len(example.span_ids)
    for token, label, span in zip(example.input_ids, example.labels, example.span_ids):
        if SPAN_NAMES[span] in {"prompt", "observation"}:
            assert label == IGNORE_INDEX
        else:
            assert label == token
    text = tiny_tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])
    assert text == "".join(t + tiny_tokenizer.eos_token for t in TURNS)


def test_merge_answer_labels_final_answer_as_action(tiny_tokenizer):
    example = render_trajectory(tiny_tokenizer, make_record(), StructuredSpans(merge_answer=True))
    assert SPAN_INDEX["answer"] not in example.span_ids


def test_generation_prompt_is_a_prefix_of_the_training_text(tiny_tokenizer):
    """What the student sees at inference is token for token what it was trained after."""
    record = make_record()
    example = render_trajectory(tiny_tokenizer, record, StructuredSpans())
    prefix = tiny_tokenizer.apply_chat_template(record["messages"][:2], tokenize=False, add_generation_prompt=True)
    prefix_ids = tiny_tokenizer(prefix, add_special_tokens=False)["input_ids"]
    assert example.input_ids[: len(prefix_ids)] == prefix_ids
    assert example.labels[len(prefix_ids) - 1] == IGNORE_INDEX and example.labels[len(prefix_ids)] != IGNORE_INDEX


def test_segments_that_do_not_tile_the_message_are_rejected(tiny_tokenizer):
    record = make_record()
    record["steps"][0]["segments"] = [[0, 5, "reason"]]
    with pytest.raises(ValueError, match="trajectory t0, assistant turn 0"):
        render_trajectory(tiny_tokenizer, record, StructuredSpans())


class SplitInsideAWord:
    """A strategy whose reason/action boundary falls inside the token ``Thought``."""

    name = "split"

    def assistant_segments(self, record, turn, content):
        from deepcoder.protocol.parsing import Segment

        return [Segment(0, 3, "action"), Segment(3, len(content), "reason")]


def test_a_straddling_token_takes_the_label_of_its_first_character(tiny_tokenizer):
    record = make_record(turns=[TURNS[1]])
    example = render_trajectory(tiny_tokenizer, record, SplitInsideAWord())
    thought = tiny_tokenizer.convert_tokens_to_ids("Thought")
    index = [
        i
        for i, (t, s) in enumerate(zip(example.input_ids, example.span_ids))
        if t == thought and SPAN_NAMES[s] != "prompt"
    ]
    assert index, "the tokenizer should keep 'Thought' as one token"
    assert SPAN_NAMES[example.span_ids[index[0]]] == "action"  # 'Tho' is action, 'ught' reason
    assert SPAN_NAMES[example.span_ids[index[0] + 1]] == "reason"
