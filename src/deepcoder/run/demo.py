"""``make demo``: the whole pipeline offline — generate → train → evaluate → compare.

``make demo`` trains the ``sad`` student (about 6 minutes on 2 CPU cores); ``make demo-compare``
(``--losses sad sft``) also trains the ``sft`` baseline on the same data, for the side-by-side
comparison (about 11 minutes). Each stage runs as the command a user would type, so the demo
exercises exactly the documented entry points. Layout under ``outputs/demo/``: ``generate/``;
per loss ``<loss>/train``,
``<loss>/eval_train`` (the problems it trained on), ``<loss>/eval_heldout`` (held-out HumanEval);
``teacher/eval_heldout`` (the reference teacher through the same loop and scorer); ``compare/``
(experiments/compare.py's table and plots); ``summary.json``. Prints one table at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepcoder.utils.jsonl import read_json, write_json

ROOT = Path(__file__).resolve().parents[3]  # the repository: src/deepcoder/run/demo.py
LOSSES = ("sad", "sft")
HEADLINE = "sad"  # always trained: its numbers fill the contract keys of summary.json
console = Console()


def stage(script: str, *overrides: str) -> None:
    command = [sys.executable, str(ROOT / script), *overrides]
    console.rule(f"[bold]{script} {' '.join(overrides)}")
    subprocess.run(command, cwd=ROOT, check=True)


def main(
    out: Path = ROOT / "outputs" / "demo",
    losses: Sequence[str] = (HEADLINE,),
    heldout_limit: int = 5,
    problem_limit: int | None = None,
    train_overrides: Sequence[str] = (),
    eval_overrides: Sequence[str] = (),
) -> dict:
    """Run the demo into ``out`` with one student per loss; ``problem_limit`` and the overrides
    shrink it for tests."""
    if HEADLINE not in losses or not set(losses) <= set(LOSSES):
        raise ValueError(f"losses must include {HEADLINE!r} and be among {LOSSES}, got {list(losses)}")
    started = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    limit = [f"problems.limit={problem_limit}"] if problem_limit else []
    heldout = ["problems=humaneval", f"problems.limit={heldout_limit}"]
    stage("generate.py", "teacher=reference", "problems=sample", *limit, f"output_dir={out / 'generate'}")
    for loss in losses:
        stage(
            "train.py",
            "experiment=demo",
            "model=tiny",
            f"loss={loss}",
            f"data.trajectories={out / 'generate' / 'trajectories.jsonl'}",
            f"output_dir={out / loss / 'train'}",
            *train_overrides,
        )
    # The teacher first: its held-out episodes are the teacher-forced set of the students' runs, and
    # its reasoning is counted in the students' tokens.
    teacher_episodes = out / "teacher" / "eval_heldout" / "episodes.jsonl"
    stage(
        "evaluate.py",
        "policy=reference",
        *heldout,
        f"output_dir={teacher_episodes.parent}",
        f"reasoning_tokenizer={out / HEADLINE / 'train' / 'student'}",
    )
    for loss in losses:
        student = out / loss / "train" / "student"
        stage(
            "evaluate.py",
            f"student={student}",
            "problems=sample",
            *limit,
            f"output_dir={out / loss / 'eval_train'}",
            *eval_overrides,
        )
        stage(
            "evaluate.py",
            f"student={student}",
            *heldout,
            f"output_dir={out / loss / 'eval_heldout'}",
            f"teacher_forced.path={teacher_episodes}",
            *eval_overrides,
        )
    compared = _compare(out, losses)
    generated = read_json(out / "generate" / "report.json")
    runs = {loss: _run_summary(out / loss) for loss in losses}
    teacher = read_json(out / "teacher" / "eval_heldout" / "report.json")
    summary = {
        "n_trajectories": generated["n_trajectories"],
        "n_passed": generated["n_passed"],
        **{
            key: runs[HEADLINE][key]
            for key in (
                "train_pass_at_1",
                "heldout_pass_at_1",
                "train_action_validity",
                "heldout_action_validity",
                "loss_start",
                "loss_end",
                "train_steps",
            )
        },
        "runs": runs,
        "teacher_heldout_pass_at_1": teacher["pass_at_1"],
        "compare": compared,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "summary.json", summary)
    console.print(_table(summary, runs[HEADLINE]["n_train"], teacher["n"]))
    return summary


def _compare(out: Path, losses: Sequence[str]) -> str | None:
    """experiments/compare.py over the runs and the teacher, when the script is present."""
    script = ROOT / "experiments" / "compare.py"
    if not script.exists():
        return None
    target = out / "compare"
    stage(
        "experiments/compare.py",
        *(str(out / loss) for loss in losses),
        "--teacher",
        str(out / "teacher"),
        "--out",
        str(target),
    )
    return str(target)


def _run_summary(run: Path) -> dict:
    trained = read_json(run / "train" / "metrics.json")
    on_train = read_json(run / "eval_train" / "report.json")
    heldout = read_json(run / "eval_heldout" / "report.json")
    return {
        "train_pass_at_1": on_train["pass_at_1"],
        "heldout_pass_at_1": heldout["pass_at_1"],
        "train_action_validity": on_train["action_validity"],
        "heldout_action_validity": heldout["action_validity"],
        "loss_start": trained["start"],
        "loss_end": trained["end"],
        "train_steps": trained["steps"],
        "n_train": on_train["n"],
        "heldout_teacher_forced": heldout.get("teacher_forced"),
    }


def _table(summary: dict, n_train: int, n_heldout: int) -> Table:
    runs = summary["runs"]
    losses = list(runs)
    table = Table(title="DeepCoder demo (teacher=reference, model=tiny)")
    table.add_column("what")
    for loss in losses:
        table.add_column(f"loss={loss}", justify="right")
    table.add_row(
        "trajectories generated / passed", *[f"{summary['n_trajectories']} / {summary['n_passed']}"] * len(losses)
    )
    for span in ("loss", "loss_reason", "loss_action", "loss_answer"):
        key = f"train/{span}"
        if all(key in runs[loss]["loss_start"] for loss in losses):
            table.add_row(
                f"training {span}, start → end",
                *[f"{runs[loss]['loss_start'][key]:.3f} → {runs[loss]['loss_end'][key]:.3f}" for loss in losses],
            )
    table.add_row("training steps", *[str(runs[loss]["train_steps"]) for loss in losses])
    table.add_row(
        f"student pass@1, trained problems (n={n_train})", *[f"{runs[loss]['train_pass_at_1']:.2f}" for loss in losses]
    )
    table.add_row(
        f"student pass@1, held-out HumanEval (n={n_heldout})",
        *[f"{runs[loss]['heldout_pass_at_1']:.2f}" for loss in losses],
    )
    table.add_row(
        "student action validity, trained / held-out",
        *[
            f"{runs[loss]['train_action_validity']:.2f} / {runs[loss]['heldout_action_validity']:.2f}"
            for loss in losses
        ],
    )
    forced = [runs[loss]["heldout_teacher_forced"] for loss in losses]
    if all(forced):
        table.add_row(
            "teacher-forced accuracy on held-out teacher turns, reason / action",
            *[f"{f['spans']['reason']['accuracy']:.2f} / {f['spans']['action']['accuracy']:.2f}" for f in forced],
        )
    table.add_row(
        f"reference teacher pass@1, held-out (n={n_heldout})",
        *[f"{summary['teacher_heldout_pass_at_1']:.2f}"] * len(losses),
    )
    table.add_row("seconds (whole demo)", *[f"{summary['seconds']}"] * len(losses))
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--losses",
        nargs="+",
        default=[HEADLINE],
        choices=LOSSES,
        help="one student per loss (sad is always one of them)",
    )
    main(losses=parser.parse_args().losses)
