"""A run with the *default* config survives the kills a cluster deals out: SIGKILL (OOM killer,
node failure) after a periodic ``last.ckpt``, and SIGTERM / Ctrl-C (a SLURM time limit, ``scancel``),
which checkpoint the step in progress and exit non-zero with one line. ``ckpt_path=last`` then
continues from where the run stopped, not from step 0; Hydra's files stay inside ``output_dir``."""

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

from deepcoder.run.generate import generate
from deepcoder.run.train import train

from conftest import ROOT
from conftest import compose_config as config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    out = tmp_path_factory.mktemp("generate")
    generate(config("generate", "problems.limit=2", f"output_dir={out}"))
    return out / "trajectories.jsonl"


def small(trajectories: Path, out: Path, max_steps: int) -> list[str]:
    """The default config (callbacks, trainer) on a small, fast problem."""
    return [
        f"data.trajectories={trajectories}",
        "data.val_fraction=0",
        "data.batch_size=1",
        "data.max_length=256",
        "trainer.log_every_n_steps=1",
        f"trainer.max_steps={max_steps}",
        f"output_dir={out}",
    ]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def resumed_steps(out: Path) -> list[int]:
    """The steps the newest CSV log (the resumed run's) holds a training loss for."""
    newest = max((out / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return [int(r["step"]) for r in csv.DictReader((newest / "metrics.csv").open()) if r.get("train/loss")]


def test_default_config_resumes_after_sigkill(trajectories, tmp_path):
    out = tmp_path / "run"
    process = start(small(trajectories, out, max_steps=60))
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no periodic checkpoint within 600 s"
        time.sleep(0.05)
    time.sleep(0.5)  # let the save finish: it is written in place
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert checkpoint_step(last) == 50  # every_n_train_steps of callbacks/default.yaml
    assert (out / ".hydra" / "config.yaml").exists() and (out / "train.log").exists()
    metrics = train(config("train", *small(trajectories, out, max_steps=60), "ckpt_path=last"))
    assert metrics["steps"] == 60
    assert resumed_steps(out)[0] >= 50  # continued (steps count from 0 in the log), not restarted


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_checkpoints_the_current_step_and_exits_non_zero(trajectories, tmp_path, signum, status):
    out = tmp_path / "run"
    process = start(small(trajectories, out, max_steps=10_000))
    for line in process.stdout:
        if "train: starting at step 0" in line:
            break
    else:
        raise AssertionError(process.communicate()[1][-2000:])
    time.sleep(3)  # a few steps in
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == status, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith(f"stopped by {signal.Signals(signum).name}")
    assert "Traceback" not in stderr
    step = checkpoint_step(out / "checkpoints" / "last.ckpt")
    assert 0 < step < 10_000
    metrics = train(config("train", *small(trajectories, out, max_steps=step + 2), "ckpt_path=last"))
    assert metrics["steps"] == step + 2
    assert resumed_steps(out)[0] == step
