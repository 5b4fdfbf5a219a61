"""Runs read well in a cluster log (stdout not a terminal): plain progress lines, none of the
libraries' noise, metrics.csv for a short run, full metric names, Hydra's files inside
output_dir and nowhere else, and W&B offline (with one line saying so) when no key is set."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from deepcoder.run.generate import generate
from deepcoder.testing.chat_server import ChatServer

from conftest import ROOT
from conftest import compose_config as config

NOISE = (
    "💡 Tip",
    "Total length of",
    "LeafSpec",
    "/-2",
    "smaller than the logging interval",
    "HTTP Request:",
    "anonymous setting",
)


def run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for noise in NOISE:
        assert noise not in result.stdout + result.stderr, noise
    return result


@pytest.mark.e2e
@pytest.mark.slow
def test_a_short_training_run_logs_plainly_with_wandb_offline(tmp_path):
    data = tmp_path / "gen"
    generate(config("generate", "problems.limit=2", f"output_dir={data}"))
    out, home = tmp_path / "train", tmp_path / "home"
    env = {"HOME": str(home), "WANDB_CONFIG_DIR": str(home), "WANDB_CACHE_DIR": str(home), "WANDB_SILENT": "true"}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}, **env}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            f"data.trajectories={data / 'trajectories.jsonl'}",
            "data.max_length=256",
            "data.val_fraction=0",
            "trainer.max_steps=3",
            "logger=[csv,wandb]",
            f"output_dir={out}",
            f"paths.output_root={tmp_path / 'root'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    for noise in NOISE:
        assert noise not in log, noise
    assert "train: step 3/3" in log  # the plain progress line at the last step
    assert "W&B: no API key" in log and list((out / "wandb").glob("offline-run-*"))
    assert "start/train/loss_reason" in result.stdout  # full metric names in the table
    rows = list(csv.DictReader(next((out / "csv").glob("version_*/metrics.csv")).open()))
    assert any(row.get("train/loss") for row in rows)  # a run shorter than log_every_n_steps still logs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["start"] != metrics["end"]
    assert (out / ".hydra" / "config.yaml").exists() and (out / "train.log").exists()
    assert not (tmp_path / "root").exists()  # no stray outputs/<stage>/<time>/ folder


@pytest.mark.e2e
def test_evaluate_and_api_generation_log_progress_not_requests(tmp_path):
    evaluation = run("evaluate.py", "policy=reference", "problems.limit=2", f"output_dir={tmp_path / 'e'}")
    assert "evaluate: 2/2 episodes, 2 passed (100.0%)" in evaluation.stdout
    with ChatServer() as server:
        generation = run(
            "generate.py",
            "teacher=openai",
            f"teacher.base_url={server.openai_url}",
            "teacher.model=test-model",
            "problems.limit=2",
            f"output_dir={tmp_path / 'g'}",
            env={"OPENAI_API_KEY": "sk-test"},
        )
    assert "generate: 2/2 done" in generation.stdout


def test_the_terminal_bar_says_epoch_n_not_n_of_minus_two():
    from types import SimpleNamespace

    from deepcoder.training.progress import StepBar

    bar = StepBar()
    bar._trainer = SimpleNamespace(max_epochs=-1)
    assert bar._get_train_description(19) == "Epoch 19"
    bar._trainer = SimpleNamespace(max_epochs=3)
    assert bar._get_train_description(1).strip() == "Epoch 1/2"
