"""Property tests of the text-rule span strategies on generated ReAct and think transcripts.

Each generated assistant turn is a list of ``(text, label)`` parts, so the expected labels are
known: the strategies must recover them exactly, and rendering must give every span its text.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX, SPAN_NAMES
from deepcoder.spans.render import render_trajectory
from deepcoder.spans.text_spans import ReactSpans, ThinkSpans

PROSE = st.text(string.ascii_letters + string.digits + " .,!?'\"()-_é中😀", min_size=1, max_size=25)
CODE = st.text(string.ascii_lowercase + string.digits + " ()=+[]'.:,", max_size=25)
LINES = st.lists(PROSE, min_size=1, max_size=3).map("\n".join)
CODE_BLOCK = st.lists(CODE, min_size=1, max_size=3).map(lambda lines: "```python\n" + "\n".join(lines) + "\n```")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def react_turn(draw, final: bool) -> list[tuple[str, str]]:
    """Thought (after an optional think block) and an Action, FireAct one-line or our protocol."""
    parts = [(f"<think>\n{draw(LINES)}\n</think>\n", "reason")] if draw(st.booleans()) else []
    parts.append((f"Thought: {draw(LINES)}\n", "reason"))
    if draw(st.booleans()):
        parts.append((f"Action: {'finish' if final else 'search'}[{draw(PROSE)}]", "action"))
    elif final:
        parts.append((f"Final Answer:\n{draw(CODE_BLOCK)}", "answer"))
    else:
        parts.append((f"Action: python\nAction Input:\n{draw(CODE_BLOCK)}", "action"))
    return parts


@st.composite
def think_turn(draw, final: bool) -> list[tuple[str, str]]:
    """Think blocks, prose and fenced code in any order, then a Final Answer on the last turn."""
    kinds = draw(st.lists(st.sampled_from(["think", "prose", "code"]), min_size=1, max_size=4))
    parts = [
        {
            "think": lambda: (f"<think>\n{draw(LINES)}\n</think>\n\n", "reason"),
            "prose": lambda: (f"{draw(LINES)}\n", "reason"),
            "code": lambda: (f"{draw(CODE_BLOCK)}\n", "action"),
        }[kind]()
        for kind in kinds
    ]
    return parts + [(f"Final Answer:\n{draw(CODE_BLOCK)}", "answer")] if final else parts


@st.composite
def transcript(draw, turn) -> tuple[dict, list[list[tuple[str, str]]]]:
    """A record (question, assistant turns, ``Observation:`` messages) and each turn's parts."""
    n = draw(st.integers(1, 3))
    turns = [draw(turn(final=i == n - 1)) for i in range(n)]
    messages = [{"role": "system", "content": "You are an agent."}] if draw(st.booleans()) else []
    messages.append({"role": "user", "content": draw(LINES)})
    for i, parts in enumerate(turns):
        messages.append({"role": "assistant", "content": "".join(text for text, _ in parts)})
        if i < len(turns) - 1 or draw(st.booleans()):
            messages.append({"role": "user", "content": f"Observation: {draw(LINES)}"})
    return {"trajectory_id": "t", "problem_id": "p", "messages": messages}, turns


def expected_segments(parts: list[tuple[str, str]], merge_answer: bool) -> list[tuple[int, int, str]]:
    segments, position = [], 0
    for text, label in parts:
        label = "action" if merge_answer and label == "answer" else label
        if segments and segments[-1][2] == label:
            segments[-1] = (segments[-1][0], position + len(text), label)
        else:
            segments.append((position, position + len(text), label))
        position += len(text)
    return segments


def check(tokenizer, record, turns, strategy, merge_answer):
    assistant = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
    for i, (content, parts) in enumerate(zip(assistant, turns)):
        segments = strategy.assistant_segments(record, i, content)
        assert [(s.start, s.end) for s in segments] == list(
            zip([0] + [s.end for s in segments[:-1]], [s.end for s in segments])
        )
        assert segments[-1].end == len(content)
        assert [(s.start, s.end, s.label) for s in segments] == expected_segments(parts, merge_answer)

    example = render_trajectory(tokenizer, record, strategy)
    eos = tokenizer.eos_token
    expected = dict.fromkeys(SPAN_NAMES, "")
    for parts in turns:
        leading = True  # the renderer drops an assistant turn's leading whitespace (render hygiene)
        for text, label in parts:
            if leading:
                text = text.lstrip()
                leading = not text
            expected["action" if merge_answer and label == "answer" else label] += text
        last = expected_segments(parts, merge_answer)[-1][2]
        expected[last] += eos
    expected["observation"] = "".join(
        m["content"] for m in record["messages"][2:] if m["role"] == "user" and m["content"].startswith("Observation:")
    )
    for span in ("reason", "action", "answer", "observation"):
        ids = [t for t, s in zip(example.input_ids, example.span_ids) if s == SPAN_INDEX[span]]
        assert tokenizer.decode(ids) == expected[span], span

    for token, label, span in zip(example.input_ids, example.labels, example.span_ids):
        assert label == (IGNORE_INDEX if SPAN_NAMES[span] in ("prompt", "observation") else token)
    trained = tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])
    assert trained == "".join(content.lstrip() + eos for content in assistant)


@SETTINGS
@given(data=transcript(react_turn), merge_answer=st.booleans())
def test_react_spans_recover_the_transcript(tiny_tokenizer, data, merge_answer):
    record, turns = data
    check(tiny_tokenizer, record, turns, ReactSpans(merge_answer=merge_answer), merge_answer)


@SETTINGS
@given(data=transcript(think_turn), merge_answer=st.booleans())
def test_think_spans_recover_the_transcript(tiny_tokenizer, data, merge_answer):
    record, turns = data
    check(tiny_tokenizer, record, turns, ThinkSpans(merge_answer=merge_answer), merge_answer)


def test_a_whitespace_only_first_span_is_not_rendered(tiny_tokenizer):
    """Hypothesis's find: a turn that opens with whitespace-only reasoning renders none of it."""
    parts = [(" \n", "reason"), ("Final Answer:\n```python\n\n```", "answer")]
    record = {
        "trajectory_id": "t",
        "problem_id": "p",
        "messages": [{"role": "user", "content": "0"}, {"role": "assistant", "content": "".join(t for t, _ in parts)}],
    }
    check(tiny_tokenizer, record, [parts], ThinkSpans(merge_answer=False), False)


def test_react_observation_inside_an_assistant_message_is_not_trained():
    content = "Thought: a\nAction: search[x]\nObservation: y\nThought: b\nAction: finish[z]"
    labels = [(content[s.start : s.end], s.label) for s in ReactSpans().assistant_segments({}, 0, content)]
    assert labels == [
        ("Thought: a\n", "reason"),
        ("Action: search[x]\n", "action"),
        ("Observation: y\n", "observation"),
        ("Thought: b\n", "reason"),
        ("Action: finish[z]", "action"),
    ]


def test_react_patterns_are_configurable():
    spans = ReactSpans(thought=r"^Gedanke:", action=r"^Aktion:")
    content = "Gedanke: a\nAktion: suche[x]"
    assert [s.label for s in spans.assistant_segments({}, 0, content)] == ["reason", "action"]
