"""The turn parser: fields, segments that tile the text, and malformed turns."""

from __future__ import annotations

from deepcoder.protocol.parsing import parse_turn

ACTION_TURN = "Thought: try it\nAction: python\nAction Input:\n```python\nprint(1)\n```"
FINAL_TURN = "Thought: done\nFinal Answer:\n```python\ndef f():\n    return 1\n```"


def _tiles(turn) -> bool:
    position = 0
    for segment in turn.segments:
        if segment.start != position:
            return False
        position = segment.end
    return position == len(turn.text)


def test_action_turn_fields_and_segments():
    turn = parse_turn(ACTION_TURN)
    assert (turn.thought, turn.tool, turn.tool_input, turn.error) == ("try it", "python", "print(1)", None)
    assert [s.label for s in turn.segments] == ["reason", "action"]
    assert turn.text[turn.segments[1].start :].startswith("Action: python")
    assert _tiles(turn)


def test_final_answer_turn():
    turn = parse_turn(FINAL_TURN)
    assert turn.is_final and turn.final_answer == "def f():\n    return 1"
    assert [s.label for s in turn.segments] == ["reason", "answer"] and _tiles(turn)


def test_hallucinated_observation_is_cut_off():
    turn = parse_turn(ACTION_TURN + "\nObservation:\n1\nThought: great\nFinal Answer:\n```python\nx\n```")
    assert turn.text == ACTION_TURN and turn.tool == "python" and turn.final_answer is None


def test_think_block_is_reasoning():
    turn = parse_turn("<think>\nhmm, loops\n</think>\nThought: ok\n" + FINAL_TURN.split("\n", 1)[1])
    assert turn.thought == "hmm, loops\nok" and turn.is_final
    assert turn.segments[0].label == "reason" and _tiles(turn)


def test_inline_action_input_for_retrieve():
    turn = parse_turn("Thought: docs\nAction: retrieve\nAction Input: collections.Counter")
    assert turn.is_action and turn.tool == "retrieve" and turn.tool_input == "collections.Counter"


def test_unknown_tool_and_missing_input_and_garbage_are_errors():
    assert "unknown tool" in parse_turn("Thought: x\nAction: shell\nAction Input: ls").error
    assert parse_turn("Thought: x\nAction: python\n").error == "missing Action Input"
    garbage = parse_turn("just some words")
    assert garbage.error and not garbage.is_action and not garbage.is_final and _tiles(garbage)


def test_unclosed_fence_still_yields_code():
    turn = parse_turn("Thought: x\nFinal Answer:\n```python\ndef f():\n    return 2")
    assert turn.final_answer == "def f():\n    return 2"


def test_keywords_inside_a_think_block_are_reasoning_not_actions():
    raw = (
        "<think>\nMaybe Final Answer:\n```python\nx\n```\nObservation: none yet\n</think>\n"
        "Thought: run it\nAction: python\nAction Input:\n```python\nprint(2)\n```"
    )
    turn = parse_turn(raw)
    assert turn.is_action and turn.final_answer is None and turn.tool_input == "print(2)"
    assert turn.text == raw and _tiles(turn)
    assert turn.text[: turn.segments[1].start].endswith("Thought: run it\n")
