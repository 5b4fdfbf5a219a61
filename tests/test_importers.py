"""FireAct transcripts import into our schema, validate, and label every line with its span."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deepcoder.core.names import SCHEMA_VERSION, SPAN_INDEX
from deepcoder.records.schema import validate_file
from deepcoder.spans.importers import import_file, main
from deepcoder.spans.render import render_trajectory
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.spans.text_spans import ReactSpans

SHARED = Path("/work/shared/data/fireact")
DATA = SHARED if (SHARED / "hotpotqa_alpaca.json").exists() else Path(__file__).parent / "fixtures" / "fireact"
ALPACA, CHAT = DATA / "hotpotqa_alpaca.json", DATA / "hotpotqa_gpt.jsonl"
LINE_SPAN = {"Thought:": "reason", "Action:": "action", "Observation:": "observation"}


def source_transcripts() -> list[str]:
    """The transcripts as FireAct wrote them (read without the importer): one per chat record."""
    return [
        "\n".join(m["content"] for m in json.loads(line)["messages"][1:])
        for line in CHAT.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


@pytest.fixture(scope="module")
def imported() -> dict[str, list[dict]]:
    return {"alpaca": import_file(ALPACA), "chat": import_file(CHAT)}


def test_whole_sample_imports_and_validates(imported, tmp_path):
    n_source = len(json.loads(ALPACA.read_text(encoding="utf-8")))
    for path in (ALPACA, CHAT):
        out = tmp_path / f"{path.stem}.jsonl"
        main([str(path), str(out)])
        report = validate_file(out)
        assert report.errors == [] and report.n_records == report.n_valid == n_source
        assert report.n_usable == sum(r["passed"] is True for r in import_file(path))
    assert len(imported["chat"]) == n_source


def test_both_formats_give_the_same_trajectories(imported):
    for alpaca, chat in zip(imported["alpaca"], imported["chat"]):
        assert alpaca["messages"][0]["content"] == chat["messages"][0]["content"].strip()
        assert alpaca["messages"][1:] == chat["messages"][1:] and alpaca["steps"] == chat["steps"]
        assert alpaca["final_answer"] == chat["final_answer"] and alpaca["passed"] == chat["passed"]


def test_fields_follow_the_transcript(imported):
    records = imported["chat"]
    assert len({r["trajectory_id"] for r in records}) == len(records)
    assert [r["trajectory_id"] for r in import_file(CHAT)] == [r["trajectory_id"] for r in records]
    for record, transcript in zip(records, source_transcripts()):
        assert record["schema_version"] == SCHEMA_VERSION
        assert record["teacher"] == {"provider": "imported", "model": CHAT.stem, "fingerprint": None}
        finish = re.findall(r"^Action: finish\[(.*)\]$", transcript, re.MULTILINE)
        assert record["final_answer"] == finish[-1]
        assert record["passed"] is ("reward = True" in transcript.splitlines()[-1])
        assert [s["action"]["tool"] for s in record["steps"]] == re.findall(r"^Action: (\w+)\[", transcript, re.M)
        assert [s["observation"] for s in record["steps"]] == re.findall(
            r"^Observation: (.*)$", transcript, re.MULTILINE
        )


def test_every_line_lands_in_its_span(imported, tiny_tokenizer):
    """Decoded span texts contain each source line of their kind, and no line of another kind."""
    for record, transcript in zip(imported["chat"], source_transcripts()):
        example = render_trajectory(tiny_tokenizer, record, ReactSpans())
        text = {
            span: tiny_tokenizer.decode(
                [t for t, s in zip(example.input_ids, example.span_ids) if s == SPAN_INDEX[span]]
            )
            for span in LINE_SPAN.values()
        }
        for line in transcript.splitlines():
            span = next(LINE_SPAN[key] for key in LINE_SPAN if line.startswith(key))
            assert line in text[span], (record["problem_id"], span, line)
            assert all(line not in text[other] for other in text if other != span), (record["problem_id"], line)


def test_structured_spans_reuse_the_recorded_segments(imported, tiny_tokenizer):
    for record in imported["alpaca"][:20]:
        react = render_trajectory(tiny_tokenizer, record, ReactSpans())
        assert render_trajectory(tiny_tokenizer, record, StructuredSpans()).span_ids == react.span_ids


@pytest.mark.parametrize(
    "name,content,message",
    [
        (
            "bad.json",
            [{"instruction": "q", "output": "Thought: t\nAction: finish[a]"}, {"instruction": "q", "output": 3}],
            r"bad\.json\[1\]: field 'output'",
        ),
        ("bad.json", [{"instruction": "q", "output": "no keywords here"}], r"bad\.json\[0\]: field 'output'"),
        (
            "bad.jsonl",
            [
                {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]},
                {"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "x"}]},
            ],
            r"bad\.jsonl:2: field 'messages\[1\]\.role'",
        ),
        ("bad.jsonl", [{"question": "q"}], r"bad\.jsonl:1: expected the fields"),
    ],
)
def test_errors_name_file_position_and_field(tmp_path, name, content, message):
    path = tmp_path / name
    text = json.dumps(content) if name.endswith(".json") else "".join(json.dumps(r) + "\n" for r in content)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        import_file(path)


def test_cli_reports_a_missing_file(tmp_path):
    with pytest.raises(SystemExit, match="nope.json: file not found"):
        main([str(tmp_path / "nope.json"), str(tmp_path / "out.jsonl")])


def test_validate_file_names_bad_records_by_line_and_field(imported, tmp_path):
    good = imported["chat"][0]
    bad_passed = {**good, "passed": "True"}
    bad_segments = {**good, "steps": [{**good["steps"][0], "segments": [[0, 5, "reason"]]}, *good["steps"][1:]]}
    missing = {k: v for k, v in good.items() if k != "teacher"}
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (good, bad_passed, bad_segments, missing)) + "{oops\n")
    report = validate_file(path)
    assert (report.n_records, report.n_valid, report.n_usable) == (5, 1, 1)
    assert [e.split(": field")[0].split(": invalid")[0] for e in report.errors] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "'passed'" in report.errors[0] and "'steps'" in report.errors[1] and "'teacher'" in report.errors[2]
