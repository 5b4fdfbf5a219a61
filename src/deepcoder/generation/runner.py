"""Trajectory generation: every problem ends as exactly one record, appended durably; reruns resume.

``num_workers`` episodes run at once in threads (each episode is sequential inside: ask, act,
observe); a local model (a policy with ``complete_many``) plays them through the batched runner
instead, ``num_workers`` live episodes decoded together (:mod:`deepcoder.agent.batch_loop`). The
main thread alone appends finished records, each as one flushed and fsynced line. A rerun with the
same ``output_dir`` skips the problems that have a record without ``error``, retries those with one
(dropping the old error record first, atomically), and refuses a different teacher, so a run killed
at any moment — even with SIGKILL — resumes into the same set of records an uninterrupted run writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from deepcoder.agent.batch_loop import run_episodes
from deepcoder.agent.seeds import trajectory_id
from deepcoder.core.names import SCHEMA_VERSION
from deepcoder.generation.progress import GenerationProgress
from deepcoder.generation.report import dataset_report
from deepcoder.generation.shards import select_shard
from deepcoder.generation.store import (
    REPORT,
    TRAJECTORIES,
    OutputLock,
    check_manifest,
    check_same_teacher,
    compact,
    latest_records,
    write_manifest,
)
from deepcoder.records.schema import TrajectoryRecord
from deepcoder.utils.jsonl import JsonlAppender, write_json

if TYPE_CHECKING:
    from deepcoder.agent.loop import Agent
    from deepcoder.policies.base import Policy
    from deepcoder.problems import Problem

log = logging.getLogger(__name__)


def generate_trajectories(
    problems: Sequence[Problem],
    teacher: Policy,
    agent: Agent,
    output_dir: str | Path,
    num_workers: int = 1,
    *,
    shard: int = 0,
    num_shards: int = 1,
) -> dict[str, Any]:
    """Run the agent with ``teacher`` on this shard's problems not yet done in ``output_dir``.

    Writes ``manifest.json`` (what the directory is meant to hold) before the first episode and
    ``report.json`` over the whole trajectory file (resumed and new records) at the end, and
    returns the report.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    problems = select_shard(problems, shard, num_shards)
    output_dir = Path(output_dir)
    path = output_dir / TRAJECTORIES
    with OutputLock(output_dir):
        check_manifest(output_dir, shard, num_shards)
        existing = latest_records(path)
        check_same_teacher(path, existing.values(), teacher.provider, teacher.model)
        todo = [p for p in problems if p.id not in existing or existing[p.id].get("error")]
        retried = {p.id for p in todo if p.id in existing}
        if compact(path, existing, drop=retried):
            log.info("%s: rewritten with one record per problem, %d error records dropped to retry", path, len(retried))
        write_manifest(
            output_dir,
            provider=teacher.provider,
            model=teacher.model,
            shard=shard,
            num_shards=num_shards,
            problem_ids=[p.id for p in problems],
        )
        log.info(
            "%d problems%s: %d already done, %d to run with %d workers",
            len(problems),
            f" (shard {shard} of {num_shards})" if num_shards > 1 else "",
            len(problems) - len(todo),
            len(todo),
            num_workers,
        )
        started = time.perf_counter()
        with GenerationProgress(len(todo)) as progress:
            _run_episodes(todo, teacher, agent, path, num_workers, progress)
        seconds = time.perf_counter() - started
        report = {
            "n_problems": len(problems),
            "n_resumed": len(problems) - len(todo),
            "n_retried": len(retried),
            "n_new": len(todo),
            **dataset_report(list(latest_records(path).values())),
            "teacher": {"provider": teacher.provider, "model": teacher.model},
            "shard": {"index": shard, "num_shards": num_shards},
            "num_workers": num_workers,
            "seconds": round(seconds, 3),
            "trajectories_per_min": round(60 * len(todo) / seconds, 2) if seconds > 0 and todo else None,
            "tokens_per_s": round(progress.stats.tokens_per_s(progress.clock()), 1) if todo else None,
        }
        write_json(output_dir / REPORT, report)
    return report


def _run_episodes(
    todo: Sequence[Problem], teacher: Policy, agent: Agent, path: Path, num_workers: int, progress: GenerationProgress
) -> None:
    """All episodes, each finished record appended the moment it is done: batched for a local model,
    else through a thread pool."""
    if hasattr(teacher, "complete_many"):
        _run_batched(todo, teacher, agent, path, num_workers, progress)
    else:
        _run_threaded(todo, teacher, agent, path, num_workers, progress)


def _run_batched(
    todo: Sequence[Problem], teacher: Policy, agent: Agent, path: Path, batch_size: int, progress: GenerationProgress
) -> None:
    """A local model's episodes, ``batch_size`` decoded together. Ctrl-C stops at once: the records
    already appended stay, the episodes in flight are dropped (nothing was paid for) and a rerun
    plays them again."""

    def keep(played: dict[str, Any]) -> None:
        record = cast(TrajectoryRecord, {key: value for key, value in played.items() if key != "sample"})  # 0 here
        out.append(record)
        progress.add(record)

    with JsonlAppender(path) as out:
        run_episodes(teacher, todo, agent=agent, batch_size=batch_size, on_episode=keep)


def _run_threaded(
    todo: Sequence[Problem], teacher: Policy, agent: Agent, path: Path, num_workers: int, progress: GenerationProgress
) -> None:
    """All episodes through a thread pool; each finished record is appended the moment it is done.

    On Ctrl-C the queued episodes are dropped and the ones in flight are finished and kept (their
    API calls are paid for already); a second Ctrl-C abandons them too.
    """
    with JsonlAppender(path) as out, ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="episode") as pool:
        futures: dict[Future, Problem] = {pool.submit(agent.run, teacher, problem): problem for problem in todo}
        pending = set(futures)

        def keep(future: Future) -> None:
            try:
                record = future.result()
            except Exception as exc:  # a crashed episode is still one record, never a lost problem
                log.exception("episode of %s crashed", futures[future].id)
                record = crashed_episode(agent, teacher, futures[future], exc)
            out.append(record)
            progress.add(record)
            pending.discard(future)

        try:
            for future in as_completed(futures):
                keep(future)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            in_flight = [f for f in pending if not f.cancelled()]
            log.warning(
                "interrupted: finishing the %d episodes in flight (Ctrl-C again to abandon them)", len(in_flight)
            )
            for future in as_completed(in_flight):
                if future.exception() is None or isinstance(future.exception(), Exception):
                    keep(future)
            raise
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def crashed_episode(agent: Agent, teacher: Policy, problem: Problem, exc: Exception) -> TrajectoryRecord:
    """The error record of an episode that raised (the loop itself turns policy failures into records)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "trajectory_id": trajectory_id(problem.id, teacher.provider, teacher.model, 0),
        "problem_id": problem.id,
        "category": problem.category,
        "difficulty": problem.difficulty,
        "teacher": {
            "provider": teacher.provider,
            "model": teacher.model,
            "fingerprint": getattr(teacher, "fingerprint", None),
        },
        "messages": agent.initial_messages(problem),
        "steps": [],
        "final_answer": None,
        "passed": False,
        "test_error": None,
        "stop_reason": "error",
        "error": f"{type(exc).__name__}: {exc}",
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
        "latency_s": 0.0,
    }
