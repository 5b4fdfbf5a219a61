"""Acceptance 3: a 2-trial Optuna search over span weights and learning rate; the comparison overlay."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml

from deepcoder.run.generate import generate

from conftest import ROOT
from conftest import compose_config as config

SEARCHED = {"loss.reason": (0.05, 1.0), "loss.action": (0.5, 2.0), "optimizer.lr": (1e-4, 1e-2)}


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    out = tmp_path_factory.mktemp("generate")
    generate(config("generate", "problems.limit=4", f"output_dir={out}"))
    return out / "trajectories.jsonl"


def searched_value(job_config: dict, key: str) -> float:
    node = job_config
    for part in key.split("."):
        node = node[part]
    return float(node)


@pytest.mark.e2e
def test_two_trial_optuna_search_minimises_the_validation_loss(trajectories, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "debug=fast",
            "data.val_fraction=0.5",
            "data.batch_size=2",
            "data.max_length=256",
            f"data.trajectories={trajectories}",
            f"paths.output_root={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(tmp_path.glob("multirun/train/*/*/metrics.json"))
    assert len(jobs) == 2
    trials = []
    for metrics_path in jobs:
        job_config = yaml.safe_load((metrics_path.parent / "config.yaml").read_text())
        params = {key: searched_value(job_config, key) for key in SEARCHED}
        assert all(low <= params[key] <= high for key, (low, high) in SEARCHED.items()), params
        val_loss = json.loads(metrics_path.read_text())["final"]["val/loss"]
        trials.append((val_loss, params))
    assert trials[0][1] != trials[1][1]  # the sampler proposed two different points
    results = yaml.safe_load(next(tmp_path.glob("multirun/train/*/optimization_results.yaml")).read_text())
    best_loss, best_params = min(trials, key=lambda trial: trial[0])
    assert math.isclose(results["best_value"], best_loss, rel_tol=1e-6)
    assert {key: float(value) for key, value in results["best_params"].items()} == pytest.approx(best_params)


def test_kd_search_adds_the_temperature_and_uses_sad_kd():
    cfg = config("train", "hparams_search=optuna_kd", "data.trajectories=x.jsonl", hydra=True)
    assert cfg.loss.name == "sad_kd" and cfg.optimized_metric == "val/loss"
    assert set(cfg.hydra.sweeper.params) == {*SEARCHED, "loss.temperature"}
    assert cfg.hydra.sweeper.storage is None and cfg.hydra.sweeper.direction == "minimize"


def test_comparison_overlay_sweeps_the_three_losses_on_one_setup():
    cfg = config("train", "experiment=sad_vs_sft", "data.trajectories=x.jsonl", hydra=True)
    losses = cfg.hydra.sweeper.params.loss.split(",")
    assert losses == ["sft", "sad", "sad_kd"]
    for loss in losses:  # every compared loss exists and composes with the overlay
        assert config("train", "experiment=sad_vs_sft", f"loss={loss}", "data.trajectories=x.jsonl").loss.name == loss
