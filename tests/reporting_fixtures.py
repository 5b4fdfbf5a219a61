"""A small copy of the demo's output layout, built through the real stage functions (model=tiny).

``DIR/generate/``, ``DIR/{sad,sft}/{train,eval_train,eval_heldout}/`` and
``DIR/teacher/eval_heldout/``: what ``make demo`` writes, at a few problems and training steps,
so ``experiments/compare.py`` and the notebooks can be tested on it. ``conftest.py`` registers
this module as a plugin, so every test can ask for the ``demo_layout`` fixture.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from deepcoder.run.evaluate import evaluate
from deepcoder.run.generate import generate
from deepcoder.run.train import train

from conftest import compose_config as config

LOSSES = ("sad", "sft")
EPISODE = ("policy.max_new_tokens=8", "agent.max_steps=1", "policy.temperature=1.0", "samples=2", "k=[1,2]")


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the tiny model on ``n`` intra-op threads: on a small shared CPU, two threads that
    contend with other processes were 4× slower than one (measured: layout build 101 s vs 24 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_demo_layout(out: Path) -> Path:
    """Generate on 4 sample problems, train sad and sft for 3 steps, evaluate each and the teacher."""
    generate(config("generate", "problems.limit=4", f"output_dir={out / 'generate'}"))
    for loss in LOSSES:
        train(
            config(
                "train",
                f"loss={loss}",
                f"data.trajectories={out / 'generate' / 'trajectories.jsonl'}",
                "data.val_fraction=0",
                "data.batch_size=2",
                "trainer.max_steps=3",
                "trainer.log_every_n_steps=1",
                "callbacks=none",
                f"output_dir={out / loss / 'train'}",
            )
        )
    heldout_teacher = out / "teacher" / "eval_heldout"  # first: its episodes are the held-out teacher trajectories
    evaluate(
        config(
            "evaluate",
            "policy=reference",
            "problems=humaneval",
            "problems.limit=2",
            f"reasoning_tokenizer={out / LOSSES[0] / 'train' / 'student'}",
            f"output_dir={heldout_teacher}",
        )
    )
    for loss in LOSSES:
        run = out / loss
        student = f"student={run / 'train' / 'student'}"
        evaluate(config("evaluate", student, "problems.limit=2", *EPISODE, f"output_dir={run / 'eval_train'}"))
        evaluate(
            config(
                "evaluate",
                student,
                "problems=humaneval",
                "problems.limit=2",
                *EPISODE,
                f"teacher_forced.path={heldout_teacher / 'episodes.jsonl'}",
                f"output_dir={run / 'eval_heldout'}",
            )
        )
    return out


@pytest.fixture(scope="session")
def demo_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per session even when several test modules import this fixture (a marker file
    in the session's base temp dir, since each importing module registers its own fixture)."""
    out = tmp_path_factory.getbasetemp() / "demo_layout"
    if not (out / ".complete").exists():
        shutil.rmtree(out, ignore_errors=True)  # a build that failed half way starts over
        with torch_threads(1):
            build_demo_layout(out)
        (out / ".complete").touch()
    return out
