"""``python -m deepcoder.show``: JSON tokens that add up to the chat, the coloured view, errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepcoder.core.names import SPAN_NAMES
from deepcoder.protocol.parsing import parse_turn
from deepcoder.protocol.prompts import observation_message
from deepcoder.show import load_tokens, main
from deepcoder.spans.render import render_trajectory
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.spans.view import render_tokens, to_html

from conftest import ROOT

FIREACT = ROOT / "tests" / "fixtures" / "fireact" / "hotpotqa_gpt.jsonl"
TURNS = [
    "Thought: Test it — naïvely.\nAction: python\nAction Input:\n```python\nprint(add(1, 2))\n```",
    "Thought: It prints 3.\nFinal Answer:\n```python\ndef add(a, b):\n    return a + b\n```",
]


def trajectory(index: int) -> dict:
    """A record as the agent writes it (two steps, recorded segments)."""
    messages = [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": f"Write add(a, b). <{index}>"},
    ]
    steps = []
    for i, raw in enumerate(TURNS):
        turn = parse_turn(raw)
        messages.append({"role": "assistant", "content": turn.text})
        steps.append(
            {
                "thought": turn.thought,
                "action": None,
                "observation": "3" if i == 0 else None,
                "segments": [list(dataclasses.astuple(s)) for s in turn.segments],
            }
        )
        if i == 0:
            messages.append({"role": "user", "content": observation_message("3")})
    return {
        "schema_version": 1,
        "trajectory_id": f"t{index}",
        "problem_id": "p",
        "messages": messages,
        "steps": steps,
        "final_answer": "def add(a, b):\n    return a + b",
        "passed": True,
        "error": None,
        "teacher": {"provider": "reference", "model": "m", "fingerprint": None},
    }


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("show") / "trajectories.jsonl"
    path.write_text("".join(json.dumps(trajectory(i)) + "\n" for i in range(2)), encoding="utf-8")
    return path


def run_show(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepcoder.show", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@pytest.mark.e2e
def test_json_tokens_add_up_to_the_rendered_chat(trajectories, tiny_tokenizer, tmp_path):
    tokenizer_dir = tmp_path / "tokenizer"
    tiny_tokenizer.save_pretrained(tokenizer_dir)
    result = run_show(str(trajectories), "--index", "1", "--json", "--model", str(tokenizer_dir))
    assert result.returncode == 0, result.stderr
    tokens = json.loads(result.stdout)
    assert all(set(t) == {"text", "span"} for t in tokens)
    record = trajectory(1)
    example = render_trajectory(tiny_tokenizer, record, StructuredSpans())
    assert (
        "".join(t["text"] for t in tokens)
        == tiny_tokenizer.decode(example.input_ids)
        == tiny_tokenizer.apply_chat_template(record["messages"], tokenize=False)
    )
    assert [t["span"] for t in tokens] == [SPAN_NAMES[s] for s in example.span_ids]


def test_coloured_view_runs(trajectories, tiny_tokenizer, capsys):
    main([str(trajectories), "--index", "0"])
    out = capsys.readouterr().out
    assert "Final Answer:" in out and "tokens per span" in out
    assert all(name in out for name in SPAN_NAMES)


def test_imported_file_renders_with_react_spans(tiny_tokenizer):
    tokens = load_tokens(FIREACT, index=2)
    assert {"reason", "action", "observation"} <= {t.span for t in tokens}
    html = to_html(tokens)
    assert html.count("<span title=") == len(tokens) and "&lt;|im_start|&gt;" in html
    assert f"observation ({sum(t.span == 'observation' for t in tokens)})" in html


def test_boundary_tokens_are_marked(tiny_tokenizer):
    """Segments that split the token ``Thought`` make it a boundary token, labelled by its first character."""
    content = "Thought: done"
    assert tiny_tokenizer.tokenize(content)[0] == "Thought"
    record = {
        "trajectory_id": "t",
        "steps": [{"segments": [[0, 3, "action"], [3, len(content), "reason"]]}],
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}],
    }
    tokens = render_tokens(tiny_tokenizer, record, StructuredSpans())
    assert [(t.text, t.span) for t in tokens if t.boundary] == [("Thought", "action")]
    assert "text-decoration:underline" in to_html(tokens)


@pytest.mark.e2e
def test_bad_index_fails_naming_file_and_index(trajectories):
    result = run_show(str(trajectories), "--index", "7", "--json")
    assert result.returncode != 0 and result.stdout == ""
    assert str(trajectories) in result.stderr and "index 7" in result.stderr


def test_missing_file_fails_naming_it(tmp_path):
    with pytest.raises(SystemExit, match="nope.jsonl: file not found"):
        main([str(tmp_path / "nope.jsonl")])
