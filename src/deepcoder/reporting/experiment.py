"""The result of an arms × seeds experiment: held-out pass@1 per arm with CIs over problems and seeds.

Reads a sweep laid out as ``RUNS/<arm>/seed<N>/`` (``train.py -m … hydra.sweep.dir=RUNS`` with
``hydra.sweep.subdir=<arm>/seed<N>``), each job holding ``metrics.json``, ``snapshots/`` (students
part-way, :mod:`deepcoder.training.snapshots`) and evaluations ``eval_heldout/`` (the final student)
and ``eval_heldout_step_<N>/`` (snapshots). Writes ``results.md``, ``results.json`` and
``learning_curves.png`` (held-out pass@1 against supervised training tokens).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from deepcoder.reporting import plots
from deepcoder.reporting.bootstrap import Interval
from deepcoder.reporting.runs import load_evaluation
from deepcoder.reporting.seeds import paired_difference, seeds_problems_interval
from deepcoder.utils.jsonl import read_json, read_jsonl, write_json

SEED_DIR = re.compile(r"seed(\d+)$")
SNAPSHOT_EVAL = re.compile(r"eval_heldout_step_(\d+)$")
FINAL_EVAL = "eval_heldout"
SPANS = ("reason", "action", "answer")


def find_jobs(runs: Path) -> dict[str, dict[int, Path]]:
    """``{arm: {seed: job_dir}}`` of every ``RUNS/<arm>/seed<N>`` directory."""
    jobs: dict[str, dict[int, Path]] = {}
    for job in sorted(runs.glob("*/seed*")):
        match = SEED_DIR.match(job.name)
        if job.is_dir() and match:
            jobs.setdefault(job.parent.name, {})[int(match.group(1))] = job
    if not jobs:
        raise FileNotFoundError(f"{runs}: no <arm>/seed<N> job directories (run the sweep first)")
    return jobs


def problem_passes(path: Path) -> dict[str, float]:
    """Each problem's pass rate (its samples' mean) in one complete ``evaluate.py`` output."""
    load_evaluation(path, path.parent.name, path.name)  # refuses a stopped or inconsistent evaluation
    outcomes: dict[str, list[bool]] = {}
    for _, record in read_jsonl(path / "episodes.jsonl"):
        outcomes.setdefault(record["problem_id"], []).append(bool(record.get("passed")))
    return {problem: float(np.mean(passed)) for problem, passed in outcomes.items()}


def pass_matrix(evaluations: dict[int, Path]) -> tuple[np.ndarray, list[str]]:
    """``[seeds × problems]`` pass rates, seeds in order; every seed must cover the same problems."""
    by_seed = {seed: problem_passes(path) for seed, path in sorted(evaluations.items())}
    problems = sorted(next(iter(by_seed.values())))
    for seed, passes in by_seed.items():
        if sorted(passes) != problems:
            raise ValueError(
                f"{evaluations[seed]}: evaluated on other problems than seed {min(by_seed)}'s; every seed "
                "must be evaluated on the same held-out set (same problems.* settings)"
            )
    return np.array([[by_seed[seed][p] for p in problems] for seed in by_seed]), problems


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _arm_summary(arm: str, jobs: dict[int, Path], seed: int, n_resamples: int) -> dict[str, Any]:
    finals = {s: job / FINAL_EVAL for s, job in jobs.items() if _evaluated(job)}
    matrix, problems = pass_matrix(finals)
    metrics = {s: read_json(jobs[s] / "metrics.json") for s in finals}
    reports = {s: read_json(path / "report.json") for s, path in finals.items()}
    tokens = {s: read_json(jobs[s] / "snapshots" / "tokens.json") for s in finals if _has_tokens(jobs[s])}
    forced = [r["teacher_forced"]["spans"] for r in reports.values() if r.get("teacher_forced")]
    return {
        "arm": arm,
        "seeds": sorted(finals),
        "n_problems": len(problems),
        "problems": problems,
        "matrix": matrix,
        "pass_at_1": seeds_problems_interval(matrix, seed, n_resamples),
        "per_seed_pass_at_1": {s: float(row.mean()) for s, row in zip(sorted(finals), matrix)},
        "action_validity": _mean([r["action_validity"] for r in reports.values()]),
        "supervised_tokens": _mean([t["supervised_tokens"] for t in tokens.values()]),
        "steps": _mean([m["steps"] for m in metrics.values()]),
        "train_loss_end": {
            span: _mean([m["end"][f"train/loss_{span}"] for m in metrics.values() if f"train/loss_{span}" in m["end"]])
            for span in SPANS
        },
        "teacher_forced_accuracy": {span: _mean([f[span]["accuracy"] for f in forced if span in f]) for span in SPANS},
        "curve": _curve(jobs),
    }


def _evaluated(job: Path) -> bool:
    return (job / FINAL_EVAL / "report.json").exists()


def _paired(arm: dict[str, Any], base: dict[str, Any], seed: int, n_resamples: int) -> Interval:
    """The arm minus the baseline over the seeds both have (a stopped experiment may lack some)."""
    shared = [s for s in arm["seeds"] if s in base["seeds"]]
    rows = [[arm["seeds"].index(s) for s in shared], [base["seeds"].index(s) for s in shared]]
    return paired_difference(arm["matrix"][rows[0]], base["matrix"][rows[1]], seed, n_resamples)


def _has_tokens(job: Path) -> bool:
    return (job / "snapshots" / "tokens.json").exists()


def _curve(jobs: dict[int, Path]) -> list[dict[str, Any]]:
    """Held-out pass@1 against supervised tokens: snapshots and final students, averaged over the seeds
    evaluated at each step (``n_seeds`` says how many)."""
    points: dict[int, list[tuple[float, float]]] = {}
    for job in jobs.values():
        evaluated = [
            (int(m.group(1)), d) for d in job.glob("eval_heldout_step_*") if (m := SNAPSHOT_EVAL.match(d.name))
        ]
        for step, path in evaluated:
            if not (path / "report.json").exists():
                continue
            tokens = read_json(job / "snapshots" / f"step_{step}" / "snapshot.json")["supervised_tokens"]
            points.setdefault(step, []).append((tokens, read_json(path / "report.json")["pass_at_1"]))
        if (job / FINAL_EVAL / "report.json").exists() and _has_tokens(job):
            final = read_json(job / "snapshots" / "tokens.json")
            points.setdefault(final["step"], []).append(
                (final["supervised_tokens"], read_json(job / FINAL_EVAL / "report.json")["pass_at_1"])
            )
    return [
        {
            "step": step,
            "supervised_tokens": float(np.mean([t for t, _ in values])),
            "pass_at_1": float(np.mean([p for _, p in values])),
            "n_seeds": len(values),
        }
        for step, values in sorted(points.items())
    ]


def summarize_experiment(
    runs: Path, out: Path, baseline: str = "sft", seed: int = 0, n_resamples: int = 2000
) -> dict[str, Any]:
    """Every evaluated arm's summary and its paired difference to ``baseline`` (over the seeds both
    have); files in ``out``. Jobs not yet evaluated are left out, so a stopped experiment can be read."""
    jobs = find_jobs(runs)
    evaluated = {arm: by_seed for arm, by_seed in jobs.items() if any(_evaluated(job) for job in by_seed.values())}
    if not evaluated:
        raise FileNotFoundError(f"{runs}: no job has {FINAL_EVAL}/report.json yet (evaluate the students first)")
    arms = {arm: _arm_summary(arm, by_seed, seed, n_resamples) for arm, by_seed in evaluated.items()}
    if baseline in arms:
        base = arms[baseline]
        for arm in arms.values():
            if arm["arm"] != baseline and arm["problems"] == base["problems"]:
                arm["vs_baseline"] = _paired(arm, base, seed, n_resamples)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(arms, baseline, n_resamples, seed)
    (out / "results.md").write_text(table, encoding="utf-8")
    figure = plots.learning_curves({name: arm["curve"] for name, arm in arms.items()}, out / "learning_curves.png")
    result = {
        "baseline": baseline,
        "seed": seed,
        "n_resamples": n_resamples,
        "arms": {name: _jsonable(arm) for name, arm in arms.items()},
        "figures": {"learning_curves": str(figure)} if figure else {},
    }
    write_json(out / "results.json", result)
    return {**result, "table": table}


def _jsonable(arm: dict[str, Any]) -> dict[str, Any]:
    return {
        key: dataclasses.asdict(value) if isinstance(value, Interval) else value
        for key, value in arm.items()
        if key != "matrix"
    }


def _ci(interval: Interval, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{interval.value:{sign}.3f} [{interval.low:{sign}.3f}, {interval.high:{sign}.3f}]"


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(arms: dict[str, dict[str, Any]], baseline: str, n_resamples: int, seed: int) -> str:
    """One row per arm: pass@1 (CI), the paired difference to the baseline, per-span numbers."""
    header = (
        "| arm | seeds | held-out pass@1 [95% CI] | vs " + baseline + " [95% CI] | per seed | action validity "
        "| supervised tokens | train loss end reason / action / answer | TF accuracy reason / action / answer |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, arm in arms.items():
        difference = arm.get("vs_baseline")
        rows.append(
            "| "
            + " | ".join(
                [
                    name,
                    str(len(arm["seeds"])),
                    _ci(arm["pass_at_1"]),
                    _ci(difference, signed=True) if difference else "–",
                    " ".join(f"{p:.2f}" for p in arm["per_seed_pass_at_1"].values()),
                    _number(arm["action_validity"], 2),
                    _number(arm["supervised_tokens"], 0),
                    " / ".join(_number(arm["train_loss_end"][s]) for s in SPANS),
                    " / ".join(_number(arm["teacher_forced_accuracy"][s]) for s in SPANS),
                ]
            )
            + " |"
        )
    n_problems = next(iter(arms.values()))["n_problems"]
    note = (
        f"\n{n_problems} held-out problems per seed. 95% CIs: percentile bootstrap resampling seeds and problems "
        f"({n_resamples} resamples, seed {seed}); the difference to {baseline} resamples the same seeds and "
        "problems for both arms (paired). TF = teacher-forced token accuracy on the teacher's held-out episodes.\n"
    )
    return header + "\n".join(rows) + "\n" + note
