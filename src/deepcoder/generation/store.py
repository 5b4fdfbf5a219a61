"""The output directory of a generation run: its lock, its records, its manifest.

``trajectories.jsonl`` only ever grows by whole, flushed lines (``JsonlAppender``), or is
replaced whole by an atomic rename (:func:`compact`), so a process killed at any moment leaves
complete records plus at most one torn last line, which the next run cuts off. One run at a
time writes a directory: an exclusive ``flock`` on ``.generate.lock``, which the kernel releases
when its holder dies, even by SIGKILL, so a stale lock can never block a restart.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from deepcoder.core.errors import UserError
from deepcoder.records.schema import TrajectoryRecord, as_record
from deepcoder.utils.jsonl import read_json, read_jsonl, repair_torn_tail, write_json, write_jsonl

TRAJECTORIES = "trajectories.jsonl"
REPORT = "report.json"
MANIFEST = "manifest.json"
LOCK = ".generate.lock"


class OutputLock:
    """Holds ``output_dir/.generate.lock`` exclusively, or fails at once naming the holder."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / LOCK
        self._handle: IO[str] | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(
                f"{self.path.parent}: another generation run (pid {holder}) is writing here; "
                "wait for it to finish or use another output_dir"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def latest_records(path: str | Path) -> dict[str, TrajectoryRecord]:
    """The last record of each problem in ``path`` (a later record supersedes an earlier one).

    A torn last line left by a killed writer is cut off first.
    """
    path = Path(path)
    if not path.exists():
        return {}
    repair_torn_tail(path)
    latest: dict[str, TrajectoryRecord] = {}
    for number, record in read_jsonl(path):
        if not isinstance(record.get("problem_id"), str):
            raise ValueError(f"{path}:{number}: field 'problem_id': missing or not a string")
        latest.pop(record["problem_id"], None)  # keep file order of the surviving records
        latest[record["problem_id"]] = as_record(record)
    return latest


def check_same_teacher(path: str | Path, records: Iterable[TrajectoryRecord], provider: str, model: str) -> None:
    """Refuse to mix teachers in one trajectory file."""
    for record in records:
        written = record.get("teacher") or {}
        if (written.get("provider"), written.get("model")) != (provider, model):
            raise ValueError(
                f"{path}: holds trajectories of {written.get('provider')}/{written.get('model')}, "
                f"not of {provider}/{model}; use another output_dir"
            )


def compact(path: str | Path, latest: dict[str, TrajectoryRecord], drop: set[str]) -> bool:
    """Rewrite ``path`` atomically as one record per problem, without the problems in ``drop``.

    Used before retrying error records, so a retried problem is never in the file twice.
    Returns whether the file changed (nothing is written when it would not).
    """
    path = Path(path)
    if not path.exists():
        return False
    with path.open(encoding="utf-8") as handle:
        n_lines = sum(1 for line in handle if line.strip())
    keep = [record for problem_id, record in latest.items() if problem_id not in drop]
    if len(keep) == n_lines:
        return False
    write_jsonl(keep, path)
    return True


def check_manifest(output_dir: str | Path, shard: int, num_shards: int) -> None:
    """Refuse to write a second shard, or another split, into a directory that holds one already."""
    path = Path(output_dir) / MANIFEST
    if not path.exists():
        return
    manifest = read_json(path)
    if (manifest.get("shard"), manifest.get("num_shards")) != (shard, num_shards):
        raise ValueError(
            f"{path.parent}: holds shard {manifest.get('shard')} of {manifest.get('num_shards')}, "
            f"not shard {shard} of {num_shards}; give each shard its own output_dir "
            "(e.g. output_dir='outputs/gen/shard_${shard}')"
        )


def write_manifest(
    output_dir: str | Path, *, provider: str, model: str, shard: int, num_shards: int, problem_ids: list[str]
) -> None:
    """What this directory is meant to hold, written before the first episode (merge checks it)."""
    write_json(
        Path(output_dir) / MANIFEST,
        {
            "teacher": {"provider": provider, "model": model},
            "shard": shard,
            "num_shards": num_shards,
            "problem_ids": problem_ids,
        },
    )
