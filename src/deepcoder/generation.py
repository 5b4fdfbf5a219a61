"""Trajectory generation: every problem ends as exactly one record, appended durably; reruns resume."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from deepcoder.evaluation import summarize, summarize_by
from deepcoder.utils.jsonl import JsonlAppender, read_jsonl, repair_torn_tail, write_json

if TYPE_CHECKING:
    from deepcoder.agent import Agent
    from deepcoder.problems import Problem
    from deepcoder.teachers.base import Policy

log = logging.getLogger(__name__)


def latest_records(path: Path) -> dict[str, dict[str, Any]]:
    """The last record of each problem in ``path`` (a rerun's retry supersedes an error record)."""
    if not path.exists():
        return {}
    repair_torn_tail(path)
    latest: dict[str, dict[str, Any]] = {}
    for number, record in read_jsonl(path):
        if not isinstance(record.get("problem_id"), str):
            raise ValueError(f"{path}:{number}: field 'problem_id': missing or not a string")
        latest[record["problem_id"]] = record
    return latest


def check_same_teacher(path: Path, records: dict[str, dict[str, Any]], teacher: "Policy") -> None:
    """Refuse to mix teachers in one output directory on resume."""
    for record in records.values():
        written = record.get("teacher") or {}
        if (written.get("provider"), written.get("model")) != (teacher.provider, teacher.model):
            raise ValueError(f"{path}: holds trajectories of {written.get('provider')}/{written.get('model')}, "
                             f"not of {teacher.provider}/{teacher.model}; use another output_dir")


def generate_trajectories(problems: Sequence["Problem"], teacher: "Policy", agent: "Agent", output_dir: str | Path,
                          num_workers: int = 1) -> dict[str, Any]:
    """Run the agent with ``teacher`` on every problem not yet in ``output_dir/trajectories.jsonl``.

    Writes ``report.json`` over the whole file (resumed and new records) and returns it.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    output_dir = Path(output_dir)
    path = output_dir / "trajectories.jsonl"
    existing = latest_records(path)
    check_same_teacher(path, existing, teacher)
    done = {pid for pid, record in existing.items() if record.get("error") is None}
    todo = [p for p in problems if p.id not in done]
    log.info("%d problems: %d already done, %d to run", len(problems), len(problems) - len(todo), len(todo))
    started = time.perf_counter()
    columns = (TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(),
               TextColumn("passed {task.fields[passed]} failed {task.fields[failed]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with JsonlAppender(path) as out, Progress(*columns, transient=True) as progress, \
            ThreadPoolExecutor(max_workers=num_workers) as pool:
        task = progress.add_task("generate", total=len(todo), passed=0, failed=0)
        futures = [pool.submit(agent.run, teacher, problem) for problem in todo]
        passed = failed = 0
        try:
            for future in as_completed(futures):
                record = future.result()
                out.append(record)
                passed += bool(record["passed"])
                failed += not record["passed"]
                progress.update(task, advance=1, passed=passed, failed=failed)
        except BaseException:  # Ctrl-C or a bug: stop queued episodes; what is written stays
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    seconds = time.perf_counter() - started
    latest = latest_records(path)
    records = [latest[p.id] for p in problems if p.id in latest]
    report = {
        "n_problems": len(problems),
        "n_resumed": len(problems) - len(todo),
        "n_retried": sum(1 for p in todo if p.id in existing),
        "n_new": len(todo),
        "n_trajectories": len(records),
        "n_passed": sum(1 for r in records if r.get("passed")),
        "n_errors": sum(1 for r in records if r.get("error")),
        "pass_rate": sum(1 for r in records if r.get("passed")) / len(records) if records else 0.0,
        "teacher": {"provider": teacher.provider, "model": teacher.model},
        "seconds": round(seconds, 3),
        "trajectories_per_min": round(60 * len(todo) / seconds, 2) if seconds > 0 and todo else None,
        "summary": summarize(records),
        "by_category": summarize_by(records, "category"),
        "by_difficulty": summarize_by(records, "difficulty"),
    }
    write_json(output_dir / "report.json", report)
    return report
