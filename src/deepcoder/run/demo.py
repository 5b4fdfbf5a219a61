"""``make demo``: the whole pipeline offline — generate → train → evaluate → compare.

The reference teacher solves synthetic training problems (``problems=synthetic``); the tiny student
is trained on its trajectories and run as the agent on problems it trained on, on synthetic problems
whose combination of parts it never saw (``problems.split=heldout``: the generalisation number) and
on a few HumanEval problems (far outside what a 4 M model trained on one problem family can do).
``make demo-compare`` (``--losses sad sft``) also trains the ``sft`` baseline on the same data. Each
stage runs as the command a user would type, so the demo exercises exactly the documented entry
points. Layout under ``outputs/demo/``: ``generate/``; per loss ``<loss>/train``, ``<loss>/eval_train``,
``<loss>/eval_heldout`` (synthetic held-out), ``<loss>/eval_humaneval``; ``teacher/eval_heldout`` (the
reference teacher through the same loop and scorer; its episodes are the teacher-forced set);
``compare/`` (experiments/compare.py's table and plots); ``summary.json``. Prints one table at the end.
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
N_TRAIN, N_HELDOUT, N_TRAIN_EVAL = 1000, 40, 20  # synthetic problems: trained on, held out, re-run from training
console = Console()


def stage(script: str, *overrides: str) -> None:
    command = [sys.executable, str(ROOT / script), *overrides]
    console.rule(f"[bold]{script} {' '.join(overrides)}")
    subprocess.run(command, cwd=ROOT, check=True)


def main(
    out: Path = ROOT / "outputs" / "demo",
    losses: Sequence[str] = (HEADLINE,),
    n_train: int = N_TRAIN,
    n_heldout: int = N_HELDOUT,
    n_train_eval: int = N_TRAIN_EVAL,
    humaneval_limit: int = 5,
    train_overrides: Sequence[str] = (),
    eval_overrides: Sequence[str] = (),
) -> dict:
    """Run the demo into ``out`` with one student per loss; the sizes and overrides shrink it for tests."""
    if HEADLINE not in losses or not set(losses) <= set(LOSSES):
        raise ValueError(f"losses must include {HEADLINE!r} and be among {LOSSES}, got {list(losses)}")
    started = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    trained = ["problems=synthetic", f"problems.n={n_train}"]
    heldout = ["problems=synthetic", "problems.split=heldout", f"problems.n={n_heldout}"]
    humaneval = ["problems=humaneval", f"problems.limit={humaneval_limit}"]
    stage("generate.py", "teacher=reference", *trained, f"output_dir={out / 'generate'}")
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
        student = f"student={out / loss / 'train' / 'student'}"
        on_train = [*trained, f"problems.limit={n_train_eval}"]
        stage("evaluate.py", student, *on_train, f"output_dir={out / loss / 'eval_train'}", *eval_overrides)
        stage(
            "evaluate.py",
            student,
            *heldout,
            f"output_dir={out / loss / 'eval_heldout'}",
            f"teacher_forced.path={teacher_episodes}",
            *eval_overrides,
        )
        stage("evaluate.py", student, *humaneval, f"output_dir={out / loss / 'eval_humaneval'}", *eval_overrides)
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
                "n_heldout",
                "humaneval_pass_at_1",
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
    console.print(_table(summary))
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
    humaneval = read_json(run / "eval_humaneval" / "report.json")
    return {
        "train_pass_at_1": on_train["pass_at_1"],
        "heldout_pass_at_1": heldout["pass_at_1"],
        "n_heldout": heldout["n"],
        "humaneval_pass_at_1": humaneval["pass_at_1"],
        "n_humaneval": humaneval["n"],
        "train_action_validity": on_train["action_validity"],
        "heldout_action_validity": heldout["action_validity"],
        "loss_start": trained["start"],
        "loss_end": trained["end"],
        "train_steps": trained["steps"],
        "n_train": on_train["n"],
        "heldout_teacher_forced": heldout.get("teacher_forced"),
    }


def _table(summary: dict) -> Table:
    runs = summary["runs"]
    losses = list(runs)
    first = runs[losses[0]]
    table = Table(title="DeepCoder demo (teacher=reference, problems=synthetic, model=tiny)")
    table.add_column("what")
    for loss in losses:
        table.add_column(f"loss={loss}", justify="right")

    def row(what: str, cell) -> None:
        table.add_row(what, *[cell(runs[loss]) for loss in losses])

    row("trajectories generated / passed", lambda _: f"{summary['n_trajectories']} / {summary['n_passed']}")
    for span in ("loss", "loss_reason", "loss_action", "loss_answer"):
        key = f"train/{span}"
        if all(key in runs[loss]["loss_start"] for loss in losses):
            row(f"training {span}, start → end", lambda r, k=key: f"{r['loss_start'][k]:.3f} → {r['loss_end'][k]:.3f}")
    row("training steps", lambda r: str(r["train_steps"]))
    row(f"student pass@1, trained problems (n={first['n_train']})", lambda r: f"{r['train_pass_at_1']:.2f}")
    row(
        f"student pass@1, held-out combinations (n={first['n_heldout']})",
        lambda r: f"[bold]{r['heldout_pass_at_1']:.2f}[/bold]",
    )
    row(
        "student action validity, trained / held-out",
        lambda r: f"{r['train_action_validity']:.2f} / {r['heldout_action_validity']:.2f}",
    )
    if all(runs[loss]["heldout_teacher_forced"] for loss in losses):
        spans = ("reason", "action", "answer")
        row(
            "teacher-forced token accuracy, held-out: " + " / ".join(spans),
            lambda r: " / ".join(f"{r['heldout_teacher_forced']['spans'][s]['accuracy']:.2f}" for s in spans),
        )
    row(
        f"student pass@1, HumanEval (n={first['n_humaneval']}; ~0: never seen code like it)",
        lambda r: f"{r['humaneval_pass_at_1']:.2f}",
    )
    row(
        f"reference teacher pass@1, held-out (n={first['n_heldout']})",
        lambda _: f"{summary['teacher_heldout_pass_at_1']:.2f}",
    )
    row("seconds (whole demo)", lambda _: f"{summary['seconds']}")
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
