"""Acceptance 3: ``logger=wandb`` with ``WANDB_MODE=offline`` writes one W&B run per multirun job,
all jobs of the sweep in one group, and a Table of sample trajectories coloured by span."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from deepcoder.run.generate import generate
from deepcoder.spans.view import COLOURS
from deepcoder.training.callbacks import previous_wandb_run, wandb_logger

from conftest import ROOT


@pytest.mark.e2e
def test_each_multirun_job_is_its_own_offline_run_in_one_group(tmp_path):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        generate(compose("generate", ["problems.limit=3", f"output_dir={tmp_path / 'gen'}"]))
    wandb_home = tmp_path / "wandb-home"  # W&B's own config, cache and artifact staging stay in the test
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(wandb_home),
        "WANDB_CACHE_DIR": str(wandb_home),
        "WANDB_DATA_DIR": str(wandb_home),
    }
    env.pop("WANDB_API_KEY", None)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            "loss=sft,sad",
            "logger=wandb",
            "debug=fast",
            "callbacks=default",
            "trainer.max_steps=2",
            "data.batch_size=2",
            "data.max_length=256",
            "data.val_fraction=0",
            f"data.trajectories={tmp_path / 'gen' / 'trajectories.jsonl'}",
            f"paths.output_root={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = next((tmp_path / "out" / "multirun" / "train").iterdir())
    group = f"train:{sweep}".encode()
    for job, loss in (("0", "sft"), ("1", "sad")):
        runs = list((sweep / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs  # one run per job, never a reused one
        record = next(runs[0].glob("run-*.wandb")).read_bytes()
        assert group in record and f"loss={loss}".encode() in record  # shared group, the job's own name
        table = json.loads(next((runs[0] / "files" / "media" / "table").rglob("*.table.json")).read_text())
        assert table["columns"][:2] == ["trajectory_id", "problem_id"] and table["columns"][-1] == "spans"
        assert len(table["data"]) == 3 and all(row[1].startswith("sample/") for row in table["data"])
        pages = [p.read_text() for p in (runs[0] / "files" / "media" / "html").rglob("*.html")]
        assert len(pages) == 3 and all(COLOURS["action"] in page and COLOURS["reason"] in page for page in pages)


def test_a_resumed_run_continues_its_wandb_run(tmp_path, monkeypatch):
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    options = {"project": "deepcoder", "save_dir": str(tmp_path / "run"), "offline": True}
    assert previous_wandb_run(tmp_path / "run") is None
    first = wandb_logger(**options, resume_from=None).experiment
    run_id = first.id
    first.finish()
    assert previous_wandb_run(tmp_path / "run") == run_id
    resumed = wandb_logger(**options, resume_from="last").experiment
    assert resumed.id == run_id
    resumed.finish()
    fresh = wandb_logger(**options, resume_from=None).experiment
    assert fresh.id != run_id
    fresh.finish()
