"""Acceptance 4: a training run killed with SIGKILL and resumed from its last checkpoint
(``ckpt_path=last``) continues exactly like the run that was never interrupted — also with
dropout (a LoRA adapter's), whose masks come from the RNG states saved in the checkpoint."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from deepcoder.run.generate import generate
from deepcoder.run.train import train

from conftest import ROOT
from conftest import compose_config as config


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    out = tmp_path_factory.mktemp("generate")
    generate(config("generate", "problems.limit=4", f"output_dir={out}"))
    return out / "trajectories.jsonl"


DROPOUT = "model.lora={r:4,alpha:8,dropout:0.3}"


def overrides(trajectories: Path, out: Path, *extra: str) -> list[str]:
    # 4 examples in batches of 1: epochs of 4 steps, checkpoints every 2, so the first one is mid-epoch
    # and the resumed run crosses an epoch boundary.
    return [
        f"data.trajectories={trajectories}",
        "data.val_fraction=0",
        "data.batch_size=1",
        "data.max_length=256",
        "trainer.max_steps=6",
        "trainer.log_every_n_steps=1",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "scheduler.num_warmup_steps=2",
        f"output_dir={out}",
        *extra,
    ]


def train_losses(out: Path) -> dict[int, float]:
    """``train/loss`` per step from the newest CSV log of ``out`` (a resumed run writes a new version)."""
    newest = max((out / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    rows = csv.DictReader((newest / "metrics.csv").open())
    return {int(row["step"]): float(row["train/loss"]) for row in rows if row.get("train/loss")}


def kill_after_first_checkpoint(trajectories: Path, out: Path, *extra: str) -> None:
    """Start ``python train.py`` and SIGKILL it as soon as ``last.ckpt`` exists (written atomically)."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *overrides(trajectories, out, *extra)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended before its first checkpoint: {process.stderr.read()[-2000:]!r}")
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.e2e
@pytest.mark.parametrize("extra", [(), (DROPOUT,)], ids=["full", "lora_dropout"])
def test_killed_and_resumed_run_reproduces_the_uninterrupted_run(trajectories, tmp_path, extra):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    train(config("train", *overrides(trajectories, whole, *extra)))
    kill_after_first_checkpoint(trajectories, killed, *extra)
    assert not (killed / "metrics.json").exists()  # it really died before the end

    resumed = train(config("train", *overrides(trajectories, killed, *extra), "ckpt_path=last"))
    reference, continued = train_losses(whole), train_losses(killed)
    assert sorted(reference) == list(range(6)) and resumed["steps"] == 6
    assert min(continued) >= 2 and max(continued) == 5  # only the steps after the checkpoint ran again
    for step, loss in continued.items():
        assert loss == pytest.approx(reference[step], rel=1e-6, abs=1e-7), f"step {step}"
    expected = AutoModelForCausalLM.from_pretrained(whole / "student").state_dict()
    for name, value in AutoModelForCausalLM.from_pretrained(killed / "student").state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-6, atol=1e-7, msg=name)
