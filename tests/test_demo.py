"""make demo's driver, shrunk: every stage runs through the real CLIs and summary.json keeps its contract."""

from __future__ import annotations

import json

import pytest

from deepcoder.run import demo

CONTRACT_KEYS = {"n_trajectories", "n_passed", "train_pass_at_1", "heldout_pass_at_1", "n_heldout", "seconds"}


@pytest.mark.e2e
def test_demo_runs_every_stage_and_writes_the_summary(tmp_path):
    out = tmp_path / "demo"
    summary = demo.main(
        out,
        losses=demo.LOSSES,
        n_train=2,
        n_heldout=2,
        n_train_eval=1,
        humaneval_limit=1,
        train_overrides=["trainer.max_steps=2", "logger=none", "callbacks=none"],
        eval_overrides=["policy.max_new_tokens=16", "agent.max_steps=1"],
    )
    written = json.loads((out / "summary.json").read_text())
    assert set(written) >= CONTRACT_KEYS
    assert written == json.loads(json.dumps(summary))
    assert written["n_trajectories"] == 2 and set(written["runs"]) == set(demo.LOSSES)
    assert written["n_heldout"] == 2 and written["runs"]["sad"]["n_train"] == 1
    assert written["teacher_heldout_pass_at_1"] == 1.0  # the reference teacher is measured, not copied
    for loss in demo.LOSSES:
        for stage in (
            "train/metrics.json",
            "eval_train/report.json",
            "eval_heldout/report.json",
            "eval_humaneval/report.json",
        ):
            assert (out / loss / stage).exists()
        assert written["runs"][loss]["train_steps"] == 2
