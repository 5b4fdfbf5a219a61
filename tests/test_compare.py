"""experiments/compare.py over a small demo layout: table, plots, CIs that agree with the reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import matplotlib.image
import pytest

from deepcoder.records.metrics import aggregate, episode_stats
from deepcoder.reporting.bootstrap import bootstrap_metrics
from deepcoder.reporting.compare import compare
from deepcoder.utils.jsonl import read_jsonl

from conftest import ROOT

STUDENT_REPORT_KEYS = {
    "n",
    "n_episodes",
    "samples_per_problem",
    "n_passed",
    "n_solved",
    "pass_at_1",
    "pass_at_k",
    "action_validity",
    "mean_steps",
    "mean_reasoning_tokens",
    "mean_reasoning_tokens_per_step",
    "final_answer_rate",
    "answered_without_action",
    "failures",
    "tokens",
    "policy",
    "by_category",
    "by_difficulty",
    "problems",
    "config",
    "seconds",
    "teacher_forced",
}


def test_the_demo_student_gets_a_full_report(demo_layout):
    report = json.loads((demo_layout / "sad" / "eval_heldout" / "report.json").read_text())
    assert report.keys() >= STUDENT_REPORT_KEYS
    assert set(report["teacher_forced"]["spans"]) == {"reason", "action", "answer", "all"}
    assert all(report["teacher_forced"]["spans"][s]["perplexity"] > 1 for s in ("reason", "action", "answer"))
    assert {"first_tool_agreement", "first_action_agreement", "first_turn_parsed"} <= report["teacher_forced"].keys()
    assert sum(report["failures"].values()) == report["n_episodes"] == 4


@pytest.mark.e2e
def test_compare_cli_writes_the_table_and_plots(demo_layout, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "compare.py"),
            str(demo_layout / "sad"),
            str(demo_layout / "sft"),
            "--teacher",
            str(demo_layout / "teacher"),
            "--out",
            str(tmp_path),
            "--resamples",
            "500",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "comparison.md").read_text()
    for label in (
        "sad / eval_train",
        "sad / eval_heldout",
        "sft / eval_train",
        "sft / eval_heldout",
        "teacher / eval_heldout",
    ):
        assert f"| {label} |" in table
    assert "pass@2" in table and "TF ppl reason" in table
    for name in ("training_curves", "pass_at_k", "failures"):
        image = matplotlib.image.imread(tmp_path / f"{name}.png")
        assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0  # drawn, not blank


def test_bootstrap_points_are_the_reported_metrics_and_reproduce(demo_layout, tmp_path):
    first = compare(
        [demo_layout / "sad", demo_layout / "sft"], tmp_path / "a", teacher=demo_layout / "teacher", n_resamples=300
    )
    again = compare(
        [demo_layout / "sad", demo_layout / "sft"], tmp_path / "b", teacher=demo_layout / "teacher", n_resamples=300
    )
    assert first["rows"] == again["rows"]
    for row in first["rows"]:
        report = json.loads((ROOT / row["path"] / "report.json").read_text())
        metrics = row["metrics"]
        episodes = [record for _, record in read_jsonl(ROOT / row["path"] / "episodes.jsonl")]
        words = sum(episode_stats(record)["reasoning"] for record in episodes) / len(episodes)
        assert metrics["pass_at_1"]["value"] == pytest.approx(report["pass_at_1"])
        assert metrics["action_validity"]["value"] == pytest.approx(report["action_validity"])
        assert metrics["mean_steps"]["value"] == pytest.approx(report["mean_steps"])
        assert row["reasoning_unit"] == "words" and metrics["mean_reasoning"]["value"] == pytest.approx(words)
        for interval in metrics.values():
            assert interval["low"] <= interval["value"] <= interval["high"]
    teacher = next(row for row in first["rows"] if row["label"] == "teacher / eval_heldout")
    assert teacher["metrics"]["pass_at_1"]["value"] == 1.0


def _episode(passed: bool, steps: int = 2) -> dict:
    return {
        "passed": passed,
        "steps": steps,
        "valid_turns": steps,
        "reasoning": 10,
        "answered": True,
        "answered_without_action": False,
        "category": "passed" if passed else "wrong_answer",
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }


def test_bootstrap_interval_matches_aggregate_and_narrows_with_more_problems():
    few = [[_episode(i % 2 == 0), _episode(i % 3 == 0)] for i in range(10)]
    many = few * 10
    for groups in (few, many):
        intervals = bootstrap_metrics(groups, ks=(1, 2), seed=3, n_resamples=1000)
        expected = aggregate(groups, ks=(1, 2))
        assert intervals["pass_at_1"].value == pytest.approx(expected["pass_at_1"])
        assert intervals["pass_at_2"].value == pytest.approx(expected["pass_at_k"]["2"])
        assert intervals["pass_at_1"].low < intervals["pass_at_1"].value < intervals["pass_at_1"].high
    width = [bootstrap_metrics(g, seed=3)["pass_at_1"] for g in (few, many)]
    assert width[1].high - width[1].low < (width[0].high - width[0].low) / 2


@pytest.mark.e2e
def test_compare_accepts_a_train_only_run_and_names_a_bad_directory(demo_layout, tmp_path):
    (tmp_path / "run" / "train").mkdir(parents=True)
    (tmp_path / "run" / "train" / "csv").symlink_to(demo_layout / "sad" / "train" / "csv")
    result = compare([tmp_path / "run"], tmp_path / "out")
    assert result["rows"] == [] and (tmp_path / "out" / "training_curves.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    cli = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "compare.py"), str(empty), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert cli.returncode == 2 and str(empty) in cli.stderr and "run directory" in cli.stderr


def test_a_corrupt_report_is_named_with_its_line(demo_layout, tmp_path):
    run = tmp_path / "broken" / "eval_heldout"
    run.mkdir(parents=True)
    (run / "report.json").write_text('{\n  "pass_at_1": 0.5,\n  oops\n}')
    (run / "episodes.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"report\.json:3: invalid JSON"):
        compare([tmp_path / "broken"], tmp_path / "out")


@pytest.mark.e2e
def test_compare_logs_table_and_plots_to_an_offline_wandb_run(demo_layout, tmp_path):
    pytest.importorskip("wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "compare.py"),
            str(demo_layout / "sad"),
            "--teacher",
            str(demo_layout / "teacher"),
            "--out",
            str(tmp_path),
            "--resamples",
            "200",
            "--wandb-project",
            "deepcoder-test",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    images = {path.name.split("_0_")[0] for path in (run / "files" / "media" / "images" / "comparison").glob("*.png")}
    assert images == {"training_curves", "pass_at_k", "failures"}
    (table,) = (run / "files" / "media" / "table").glob("comparison_*.table.json")
    data = json.loads(table.read_text())
    assert [row[0] for row in data["data"]] == ["sad / eval_train", "sad / eval_heldout", "teacher / eval_heldout"]


def test_one_problem_gives_no_interval_and_strict_json(demo_layout, tmp_path):
    single = tmp_path / "single"
    shutil.copytree(demo_layout / "teacher" / "eval_heldout", single)
    episodes = single / "episodes.jsonl"
    episodes.write_text(episodes.read_text().splitlines(keepends=True)[0])
    report = json.loads((single / "report.json").read_text())
    (single / "report.json").write_text(json.dumps({**report, "n": 1, "n_episodes": 1}))  # as evaluate.py writes it
    result = compare([single], tmp_path / "out")
    assert result["rows"][0]["metrics"]["pass_at_1"] == {"value": 1.0, "low": None, "high": None}

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    json.loads((tmp_path / "out" / "comparison.json").read_text(), parse_constant=refuse)
    assert "| single / eval | 1 × 1 | 1.00 |" in result["table"]
