"""compare.py takes the layouts the README's commands produce — a train.py output_dir with its
evaluation in a subdirectory, evaluate.py output_dirs by flag — refuses an evaluation that was
stopped instead of reporting it as complete, and counts reasoning in one unit per column."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from deepcoder.reporting.compare import compare

from conftest import ROOT


@pytest.fixture()
def readme_layout(demo_layout, tmp_path):
    """``train.py … output_dir=RUN`` then ``evaluate.py … output_dir=RUN/eval``; the teacher's elsewhere."""
    run = tmp_path / "qwen15-sad"
    shutil.copytree(demo_layout / "sad" / "train", run)
    shutil.copytree(demo_layout / "sad" / "eval_heldout", run / "eval")
    shutil.copytree(demo_layout / "teacher" / "eval_heldout", tmp_path / "teacher-eval")
    shutil.copytree(demo_layout / "sft" / "eval_heldout", tmp_path / "sft-eval")
    return tmp_path


def test_a_train_output_dir_and_evaluate_dirs_by_flag_are_compared(readme_layout):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "compare.py"),
            str(readme_layout / "qwen15-sad"),
            "--eval",
            f"sft={readme_layout / 'sft-eval'}",
            "--teacher",
            str(readme_layout / "teacher-eval"),
            "--out",
            str(readme_layout / "compare"),
            "--resamples",
            "200",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((readme_layout / "compare" / "comparison.json").read_text())["rows"]
    assert [row["label"] for row in rows] == ["qwen15-sad / eval", "sft / eval", "teacher / eval"]
    assert (readme_layout / "compare" / "training_curves.png").exists()  # curves from RUN/csv


def test_reasoning_is_one_unit_per_column(readme_layout):
    # the student's report counts reasoning in tokens, a reference teacher's (no tokenizer) in words
    teacher = readme_layout / "teacher-eval" / "report.json"
    report = json.loads(teacher.read_text())
    report["mean_reasoning_words"] = report.pop("mean_reasoning_tokens")
    teacher.write_text(json.dumps(report))
    result = compare([readme_layout / "qwen15-sad"], readme_layout / "out", teacher=teacher.parent, n_resamples=50)
    assert {row["reasoning_unit"] for row in result["rows"]} == {"words"}
    assert "reasoning words / episode" in result["table"] and " tokens" not in result["table"]


def test_a_stopped_evaluation_is_refused_not_reported(readme_layout):
    evaluation = readme_layout / "qwen15-sad" / "eval"
    report = json.loads((evaluation / "report.json").read_text())
    (evaluation / "report.json").write_text(json.dumps({**report, "partial": True, "n_episodes_expected": 99}))
    with pytest.raises(ValueError, match=r"is partial .*rerun evaluate.py with output_dir="):
        compare([readme_layout / "qwen15-sad"], readme_layout / "out")
    (evaluation / "report.json").write_text(json.dumps(report))
    episodes = (evaluation / "episodes.jsonl").read_text().splitlines()
    (evaluation / "episodes.jsonl").write_text("\n".join(episodes[:-1]) + "\n")  # an old report beside fewer episodes
    with pytest.raises(ValueError, match=r"report.json counts \d+ episodes but episodes.jsonl holds"):
        compare([readme_layout / "qwen15-sad"], readme_layout / "out")
    (evaluation / "report.json").unlink()
    with pytest.raises(ValueError, match="episodes.jsonl without report.json"):
        compare([readme_layout / "qwen15-sad"], readme_layout / "out")
