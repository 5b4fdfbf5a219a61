"""``make experiment``: SAD against SFT on synthetic problems, arms × seeds, with CIs over both.

One command runs the whole comparison of issue #15 offline on a CPU: the reference teacher solves
the demo's 1,000 synthetic training problems once; every arm (``conf/arm/``: sft, sad, sad_reason025,
sad_curriculum) is trained for every seed on those trajectories with the demo's student and budget
(``experiment=sad_vs_sft_synthetic``); each student is evaluated as the agent on the same held-out
problems (new combinations of parts), students saved part-way (``callbacks.student_snapshots``) on the
curve seeds; ``experiments/compare.py --experiment`` writes the table with two-way bootstrap CIs.

Jobs run seed-major (every arm's seed 0 before any seed 1), each evaluated right after it trains,
and a stage whose output is complete is skipped: a stopped experiment, run again, resumes where it
stopped (a job's training resumes from its ``last.ckpt``). Layout under ``outputs/sad_vs_sft_synthetic``:
``generate/``, ``teacher/eval_heldout/``, ``runs/<arm>/seed<N>/`` (``train.py`` output_dir with
``eval_heldout/``, ``eval_heldout_step_<N>/``), ``results/`` (``results.md``, ``results.json``,
``learning_curves.png``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from deepcoder.run.demo import ROOT, console, stage
from deepcoder.utils.jsonl import read_json

ARMS = ("sft", "sad", "sad_reason025", "sad_curriculum")
SEEDS = (0, 1, 2)
N_TRAIN, N_HELDOUT = 1000, 40


def complete(evaluation: Path) -> bool:
    """An ``evaluate.py`` output with a final (not partial) report."""
    report = evaluation / "report.json"
    return report.exists() and not read_json(report).get("partial")


def main(
    out: Path = ROOT / "outputs" / "sad_vs_sft_synthetic",
    arms: Sequence[str] = ARMS,
    seeds: Sequence[int] = SEEDS,
    curve_seeds: Sequence[int] = (0,),
    n_train: int = N_TRAIN,
    n_heldout: int = N_HELDOUT,
    train_overrides: Sequence[str] = (),
    eval_overrides: Sequence[str] = (),
) -> dict:
    """Run (or resume) the experiment into ``out``; the sizes and overrides shrink it for tests."""
    started = time.perf_counter()
    unknown = sorted(set(arms) - {path.stem for path in (ROOT / "conf" / "arm").glob("*.yaml")})
    if unknown:
        raise ValueError(f"--arms {' '.join(unknown)}: no such conf/arm/<name>.yaml; choose among {list(ARMS)}")
    generated = out / "generate"
    if not (generated / "report.json").exists():
        stage(
            "generate.py", "teacher=reference", "problems=synthetic", f"problems.n={n_train}", f"output_dir={generated}"
        )
    heldout = ["problems=synthetic", "problems.split=heldout", f"problems.n={n_heldout}"]
    teacher = out / "teacher" / "eval_heldout"
    for seed in seeds:
        for arm in arms:
            job = out / "runs" / arm / f"seed{seed}"
            if not (job / "metrics.json").exists():
                stage(
                    "train.py",
                    "experiment=sad_vs_sft_synthetic",
                    f"arm={arm}",
                    f"seed={seed}",
                    f"data.trajectories={generated / 'trajectories.jsonl'}",
                    f"output_dir={job}",
                    "ckpt_path=last",
                    *train_overrides,
                )
            if not complete(teacher):  # its episodes are the teacher-forced set; reasoning in student tokens
                stage(
                    "evaluate.py",
                    "policy=reference",
                    *heldout,
                    f"output_dir={teacher}",
                    f"reasoning_tokenizer={job / 'student'}",
                )
            students = {"eval_heldout": job / "student"}
            if seed in curve_seeds:
                students |= {f"eval_heldout_{d.name}": d for d in sorted((job / "snapshots").glob("step_*"))}
            for name, student in students.items():
                if student.exists() and not complete(job / name):
                    stage(
                        "evaluate.py",
                        f"student={student}",
                        *heldout,
                        f"output_dir={job / name}",
                        f"teacher_forced.path={teacher / 'episodes.jsonl'}",
                        *eval_overrides,
                    )
    results = out / "results"
    stage("experiments/compare.py", "--experiment", str(out / "runs"), "--out", str(results))
    summary = read_json(results / "results.json")
    console.print(
        f"experiment: {len(arms)} arms × {len(seeds)} seeds in {time.perf_counter() - started:.0f} s → {results}"
    )
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "sad_vs_sft_synthetic")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), help=f"conf/arm/ names (default: {' '.join(ARMS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument(
        "--curve-seeds", nargs="*", type=int, default=[0], help="seeds whose part-way students are evaluated"
    )
    args = parser.parse_args()
    try:
        main(args.out, args.arms, args.seeds, args.curve_seeds)
    except ValueError as exc:
        parser.exit(2, f"experiment: error: {exc}\n")
