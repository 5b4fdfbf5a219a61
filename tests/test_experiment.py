"""The arms × seeds experiment (issue #15): two-way bootstrap, snapshots, arms, and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoModelForCausalLM

from deepcoder.reporting.experiment import pass_matrix, summarize_experiment
from deepcoder.reporting.seeds import paired_difference, seeds_problems_interval
from deepcoder.run.generate import generate
from deepcoder.run.train import train
from deepcoder.utils.jsonl import write_json

from conftest import compose_config


def naive_two_way(matrix: np.ndarray, seed: int, n_resamples: int) -> np.ndarray:
    """The bootstrap written out loop by loop, drawing in the same order as the vectorised one."""
    rng = np.random.default_rng(seed)
    n_seeds, n_problems = matrix.shape
    seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    problems = rng.integers(0, n_problems, size=(n_resamples, n_problems))
    return np.array([matrix[np.ix_(s, p)].mean() for s, p in zip(seeds, problems)])


def test_two_way_bootstrap_resamples_seeds_and_problems_together():
    rng = np.random.default_rng(1)
    matrix = (rng.random((3, 25)) < np.array([[0.3], [0.5], [0.8]])).astype(float)  # seeds differ a lot
    interval = seeds_problems_interval(matrix, seed=4, n_resamples=500)
    expected = np.percentile(naive_two_way(matrix, 4, 500), [2.5, 97.5])
    assert interval.value == pytest.approx(matrix.mean())
    assert (interval.low, interval.high) == pytest.approx(tuple(expected))
    # Seed-to-seed spread widens the interval beyond what one seed's problems alone give.
    one_seed = seeds_problems_interval(np.tile(matrix.mean(axis=0), (3, 1)), seed=4, n_resamples=500)
    assert interval.high - interval.low > one_seed.high - one_seed.low


def test_paired_difference_cancels_shared_noise_and_checks_shapes():
    rng = np.random.default_rng(2)
    base = (rng.random((3, 30)) < 0.5).astype(float)
    same = paired_difference(base, base, n_resamples=300)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    better = base.copy()
    better[:, :6] = 1.0
    difference = paired_difference(better, base, n_resamples=300)
    assert difference.value == pytest.approx(better.mean() - base.mean())
    assert difference.low >= 0.0
    with pytest.raises(ValueError, match="share seeds and problems"):
        paired_difference(base[:2], base)


def fake_evaluation(path: Path, passed: dict[str, bool], tokens: int | None = None) -> None:
    path.mkdir(parents=True)
    records = [{"problem_id": p, "passed": ok, "steps": []} for p, ok in passed.items()]
    (path / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rate = sum(passed.values()) / len(passed)
    write_json(path / "report.json", {"pass_at_1": rate, "action_validity": 1.0, "mean_steps": 0, "n": len(passed)})


def fake_job(job: Path, passed: dict[str, bool], snapshot: dict[str, bool] | None = None) -> None:
    loss_end = {f"train/loss_{s}": 0.1 for s in ("reason", "action", "answer")}
    write_json(job / "metrics.json", {"steps": 4, "end": loss_end})
    fake_evaluation(job / "eval_heldout", passed)
    write_json(job / "snapshots" / "tokens.json", {"step": 4, "supervised_tokens": 400, "input_tokens": 900})
    if snapshot is not None:
        write_json(job / "snapshots" / "step_2" / "snapshot.json", {"step": 2, "supervised_tokens": 200})
        fake_evaluation(job / "eval_heldout_step_2", snapshot)


def test_summary_pairs_arms_by_seed_and_draws_curves(tmp_path):
    runs = tmp_path / "runs"
    problems = [f"p{i}" for i in range(6)]
    for seed in range(2):
        fake_job(
            runs / "sft" / f"seed{seed}",
            {p: i < 2 for i, p in enumerate(problems)},
            snapshot=dict.fromkeys(problems, False),
        )
        fake_job(runs / "sad" / f"seed{seed}", {p: i < 4 for i, p in enumerate(problems)})
    fake_job(runs / "sad_curriculum" / "seed1", {p: i < 5 for i, p in enumerate(problems)})
    (runs / "sad_curriculum" / "seed0").mkdir(parents=True)  # still training: left out, paired over seed 1
    (runs / "sad_reason025" / "seed0").mkdir(parents=True)  # nothing evaluated: the arm is left out
    result = summarize_experiment(runs, tmp_path / "results", n_resamples=200)
    assert sorted(result["arms"]) == ["sad", "sad_curriculum", "sft"]
    assert result["arms"]["sad_curriculum"]["seeds"] == [1]
    assert result["arms"]["sad_curriculum"]["vs_baseline"]["value"] == pytest.approx(3 / 6)
    sad = result["arms"]["sad"]
    assert sad["pass_at_1"]["value"] == pytest.approx(4 / 6)
    assert sad["vs_baseline"]["value"] == pytest.approx(2 / 6)
    assert "vs_baseline" not in result["arms"]["sft"]
    curve = result["arms"]["sft"]["curve"]
    assert [(p["step"], p["supervised_tokens"], p["pass_at_1"], p["n_seeds"]) for p in curve] == [
        (2, 200, 0.0, 2),
        (4, 400, pytest.approx(2 / 6), 2),
    ]
    assert (tmp_path / "results" / "learning_curves.png").exists()
    assert "| sad | 2 | 0.667" in (tmp_path / "results" / "results.md").read_text()


def test_seeds_evaluated_on_other_problems_are_refused(tmp_path):
    fake_evaluation(tmp_path / "a", {"p1": True, "p2": False})
    fake_evaluation(tmp_path / "b", {"p1": True, "p3": False})
    with pytest.raises(ValueError, match="same held-out set"):
        pass_matrix({0: tmp_path / "a", 1: tmp_path / "b"})


@pytest.mark.parametrize(
    "arm,loss,reason,pacing",
    [
        ("sft", "sft", 1.0, "none"),
        ("sad", "sad", 0.5, "none"),
        ("sad_reason025", "sad", 0.25, "none"),
        ("sad_curriculum", "sad", 0.5, "root"),
    ],
)
def test_arms_differ_only_in_loss_and_curriculum(arm, loss, reason, pacing):
    cfg = compose_config("train", "experiment=sad_vs_sft_synthetic", f"arm={arm}", "data.trajectories=x.jsonl")
    assert (cfg.loss.name, cfg.loss.reason, cfg.data.curriculum.pacing) == (loss, reason, pacing)
    baseline = compose_config("train", "experiment=demo", "data.trajectories=x.jsonl")
    for key in ("trainer", "optimizer", "scheduler"):  # the demo's budget, the same in every arm
        assert cfg[key] == baseline[key]
    assert (cfg.data.batch_size, cfg.data.max_length) == (baseline.data.batch_size, baseline.data.max_length)


def test_snapshots_are_loadable_students_with_token_counts(tmp_path):
    generate(compose_config("generate", "problems.limit=4", f"output_dir={tmp_path / 'gen'}"))
    train(
        compose_config(
            "train",
            f"data.trajectories={tmp_path / 'gen' / 'trajectories.jsonl'}",
            "debug=fast",
            "data.val_fraction=0",
            "data.batch_size=2",
            "data.max_length=256",
            "trainer.max_steps=4",
            "+callbacks.student_snapshots._target_=deepcoder.training.snapshots.StudentSnapshots",
            f"+callbacks.student_snapshots.dirpath={tmp_path / 'run' / 'snapshots'}",
            "+callbacks.student_snapshots.at_steps=[2]",
            f"output_dir={tmp_path / 'run'}",
        )
    )
    snapshots = tmp_path / "run" / "snapshots"
    at_two = json.loads((snapshots / "step_2" / "snapshot.json").read_text())
    final = json.loads((snapshots / "tokens.json").read_text())
    assert at_two["step"] == 2 and final["step"] == 4
    assert 0 < at_two["supervised_tokens"] < final["supervised_tokens"] <= final["input_tokens"]
    AutoModelForCausalLM.from_pretrained(snapshots / "step_2")
    config = json.loads((snapshots / "step_2" / "generation_config.json").read_text())
    assert config.get("do_sample") in (None, False)  # the evaluation's greedy decoding, as in student/


def test_unknown_arm_is_one_line_error(tmp_path):
    from deepcoder.run.experiment import main

    with pytest.raises(ValueError, match=r"--arms nope: no such conf/arm/<name>.yaml; choose among \['sft'"):
        main(tmp_path, arms=["nope"])
    assert not (tmp_path / "generate").exists()  # refused before any stage ran


@pytest.mark.e2e
def test_experiment_driver_runs_every_stage_and_resumes(tmp_path):
    from deepcoder.run import experiment

    out = tmp_path / "exp"
    shrunk = {
        "arms": ["sft", "sad"],
        "seeds": [0],
        "curve_seeds": [0],
        "n_train": 2,
        "n_heldout": 2,
        "jobs": 2,
        "train_overrides": ["trainer.max_steps=2", "logger=none", "callbacks.student_snapshots.at_steps=[1]"],
        "eval_overrides": ["policy.max_new_tokens=16", "agent.max_steps=1"],
    }
    summary = experiment.main(out, **shrunk)
    assert sorted(summary["arms"]) == ["sad", "sft"]
    assert summary["arms"]["sad"]["vs_baseline"]["value"] is not None
    job = out / "runs" / "sad" / "seed0"
    assert (job / "eval_heldout_step_1" / "report.json").exists()
    assert [point["step"] for point in summary["arms"]["sad"]["curve"]] == [1, 2]
    assert (out / "teacher" / "eval_heldout" / "report.json").exists()
    trained = (job / "metrics.json").stat().st_mtime_ns
    experiment.main(out, **shrunk)  # a rerun resumes: nothing trained or evaluated again
    assert (job / "metrics.json").stat().st_mtime_ns == trained
