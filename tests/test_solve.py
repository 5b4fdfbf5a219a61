"""``python -m deepcoder.solve``: one episode streamed turn by turn (coloured, or JSON Lines), graded
when the problem has tests, and the same episode ``evaluate.py`` plays; mistakes are one line."""

from __future__ import annotations

import json

import pytest

from deepcoder.solve import main, split_argv

from reporting_fixtures import torch_threads


def json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_lines_stream_each_step_then_the_graded_episode(capsys):
    main(["policy=reference", "sample/count_vowels", "--json"])
    lines = json_lines(capsys)
    steps, episode = lines[:-1], lines[-1]
    assert [line["type"] for line in lines] == ["step"] * len(steps) + ["episode"]
    assert [s["index"] for s in steps] == list(range(len(episode["steps"])))
    assert episode["problem_id"] == "sample/count_vowels" and episode["passed"] is True
    assert steps[0]["observation"] == episode["steps"][0]["observation"] == "3\n0\n"


def test_the_terminal_view_shows_turns_observations_and_the_grade(capsys):
    main(["policy=reference", "problems=humaneval", "HumanEval/0"])
    out = capsys.readouterr().out
    assert "turn 1" in out and "Observation:" in out and "Final Answer:" in out
    assert "PASSED" in out and "stop final_answer" in out


def test_new_problem_text_with_a_student_is_played_but_not_graded(untrained_student, capsys):
    text = 'def add(a, b):\n    """Return a + b."""\n'
    with torch_threads(1):
        main([f"student={untrained_student}", "policy.max_new_tokens=8", "agent.max_steps=1", text, "--json"])
    episode = json_lines(capsys)[-1]
    assert episode["passed"] is None and episode["problem_id"] == "cli/problem"
    assert "`add`" in episode["messages"][1]["content"] and len(episode["steps"]) == 1


def test_a_sampled_solve_is_the_episode_evaluate_plays(untrained_student, tmp_path, capsys):
    from deepcoder.run.evaluate import evaluate
    from deepcoder.utils.jsonl import read_jsonl

    from conftest import compose_config as config

    sampled = [f"student={untrained_student}", "policy.max_new_tokens=8", "agent.max_steps=2", "policy.temperature=1.0"]
    with torch_threads(1):
        main([*sampled, "sample/reverse_words", "--json"])
        solved = json_lines(capsys)[-1]
        evaluate(config("evaluate", *sampled, "problems.ids=[sample/reverse_words]", f"output_dir={tmp_path}"))
    evaluated = next(r for _, r in read_jsonl(tmp_path / "episodes.jsonl"))
    assert solved["messages"] == evaluated["messages"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["policy=reference", "sample/nope"], "no problem 'sample/nope' in problems=sample"),
        (["policy=reference", "Sum the even numbers."], "--entry-point NAME"),
        (["student=/no/such/dir", "sample/count_vowels"], "student=/no/such/dir: no such directory"),
        (["policy=nope", "sample/count_vowels"], "policy"),
    ],
)
def test_mistakes_are_one_line(argv, message):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    text = str(stopped.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text


def test_overrides_are_told_from_problem_text():
    assert split_argv(["student=DIR", "x == 1 returns", "k=[1]", "--json"]) == (
        ["student=DIR", "k=[1]"],
        ["x == 1 returns", "--json"],
    )
