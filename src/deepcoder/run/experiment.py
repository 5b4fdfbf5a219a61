"""``make experiment``: SAD against SFT on synthetic problems, arms × seeds, with CIs over both.

One command runs the whole comparison of issue #15 offline on a CPU: the reference teacher solves
the demo's 1,000 synthetic training problems once; every arm (``conf/arm/``: sft, sad, sad_reason025,
sad_curriculum) is trained for every seed on those trajectories with the demo's student and budget
(``experiment=sad_vs_sft_synthetic``); each student is evaluated as the agent on the same held-out
problems (new combinations of parts), students saved part-way (``callbacks.student_snapshots``) on the
curve seeds; ``experiments/compare.py --experiment`` writes the table with two-way bootstrap CIs.

Jobs run seed-major (every arm's seed 0 before any seed 1), each evaluated right after it trains,
``--jobs 2`` at a time with ``--threads 1`` CPU thread each (OMP_NUM_THREADS): on a 2-core machine
two single-threaded tiny-model jobs do more work than one job on two threads, and a fixed thread
count keeps bf16 CPU kernels, and so the numbers, the same on every machine. Each job's stage
output goes to ``runs/<arm>/seed<N>/experiment.log``. A stage whose output is complete is
skipped: a stopped experiment, run again, resumes where it stopped (a job's training resumes from
its ``last.ckpt``). Layout under ``outputs/sad_vs_sft_synthetic``: ``generate/``,
``teacher/eval_heldout/``, ``runs/<arm>/seed<N>/`` (``train.py`` output_dir with ``eval_heldout/``,
``eval_heldout_step_<N>/``), ``results/`` (``results.md``, ``results.json``, ``learning_curves.png``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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


def run_logged(log: Path, script: str, *overrides: str, threads: int) -> None:
    """One stage as its CLI, ``threads`` CPU threads, its output appended to ``log`` (jobs run side by side)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"{time.strftime('%H:%M:%S')} {script} {' '.join(overrides)}  (log: {log})")
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n$ {script} {' '.join(overrides)}\n")
        handle.flush()
        done = subprocess.run(
            [sys.executable, str(ROOT / script), *overrides], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {done.returncode}); its output is in {log}")


def main(
    out: Path = ROOT / "outputs" / "sad_vs_sft_synthetic",
    arms: Sequence[str] = ARMS,
    seeds: Sequence[int] = SEEDS,
    curve_seeds: Sequence[int] = (0,),
    n_train: int = N_TRAIN,
    n_heldout: int = N_HELDOUT,
    jobs: int = 2,
    threads: int = 1,
    train_overrides: Sequence[str] = (),
    eval_overrides: Sequence[str] = (),
) -> dict:
    """Run (or resume) the experiment into ``out``, ``jobs`` (arm, seed) jobs at a time with ``threads``
    CPU threads each; the sizes and overrides shrink it for tests."""
    started = time.perf_counter()
    unknown = sorted(set(arms) - {path.stem for path in (ROOT / "conf" / "arm").glob("*.yaml")})
    if unknown:
        raise ValueError(f"--arms {' '.join(unknown)}: no such conf/arm/<name>.yaml; choose among {list(ARMS)}")
    if jobs < 1 or threads < 1:
        raise ValueError(f"--jobs and --threads must be >= 1, got {jobs} and {threads}")
    generated = out / "generate"
    if not (generated / "report.json").exists():
        stage(
            "generate.py", "teacher=reference", "problems=synthetic", f"problems.n={n_train}", f"output_dir={generated}"
        )
    heldout = ["problems=synthetic", "problems.split=heldout", f"problems.n={n_heldout}"]
    teacher = out / "teacher" / "eval_heldout"
    teacher_lock = threading.Lock()

    def run_job(arm: str, seed: int) -> None:
        job = out / "runs" / arm / f"seed{seed}"
        log = job / "experiment.log"
        if not (job / "metrics.json").exists():
            run_logged(
                log,
                "train.py",
                "experiment=sad_vs_sft_synthetic",
                f"arm={arm}",
                f"seed={seed}",
                f"data.trajectories={generated / 'trajectories.jsonl'}",
                f"output_dir={job}",
                "ckpt_path=last",
                *train_overrides,
                threads=threads,
            )
        with teacher_lock:  # its episodes are the teacher-forced set; its reasoning counted in student tokens
            if not complete(teacher):
                tokenizer = f"reasoning_tokenizer={job / 'student'}"
                run_logged(
                    teacher / "experiment.log",
                    "evaluate.py",
                    "policy=reference",
                    *heldout,
                    f"output_dir={teacher}",
                    tokenizer,
                    threads=threads,
                )
        students = {"eval_heldout": job / "student"}
        if seed in curve_seeds:
            students |= {f"eval_heldout_{d.name}": d for d in sorted((job / "snapshots").glob("step_*"))}
        for name, student in students.items():
            if student.exists() and not complete(job / name):
                run_logged(
                    log,
                    "evaluate.py",
                    f"student={student}",
                    *heldout,
                    f"output_dir={job / name}",
                    f"teacher_forced.path={teacher / 'episodes.jsonl'}",
                    *eval_overrides,
                    threads=threads,
                )

    with ThreadPoolExecutor(max_workers=jobs) as pool:  # seed-major: every arm's seed 0 first
        futures = [pool.submit(run_job, arm, seed) for seed in seeds for arm in arms]
        for future in futures:
            future.result()
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
    parser.add_argument("--jobs", type=int, default=2, help="(arm, seed) jobs run side by side (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per job (default 1)")
    parser.add_argument(
        "--curve-seeds", nargs="*", type=int, default=[0], help="seeds whose part-way students are evaluated"
    )
    args = parser.parse_args()
    try:
        main(args.out, args.arms, args.seeds, args.curve_seeds, jobs=args.jobs, threads=args.threads)
    except (ValueError, RuntimeError) as exc:
        parser.exit(2, f"experiment: error: {exc}\n")
