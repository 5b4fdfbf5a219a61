"""The output directory of an evaluation run: episodes kept as they finish, reruns resume.

``episodes.jsonl`` only grows by whole, fsynced lines, so a run killed at any moment keeps every
finished episode; a rerun with the same ``output_dir`` runs only the (problem, sample) pairs
without a finished episode (an episode whose policy raised is run again) and refuses a different
policy or sampling setup, which would mix two evaluations in one report. ``report.json`` is
removed before the first new episode and written atomically at the end (``partial: true`` when
the run was stopped), so it never describes a different set of episodes than the file beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepcoder.utils.jsonl import read_json, read_jsonl, repair_torn_tail, write_json, write_jsonl

EPISODES = "episodes.jsonl"
REPORT = "report.json"
SETUP = "evaluate_setup.json"


class EpisodeStore:
    """Finished episodes of ``output_dir`` by ``(problem_id, sample)``."""

    def __init__(self, output_dir: str | Path, setup: dict[str, Any]) -> None:
        self.dir = Path(output_dir)
        self.path = self.dir / EPISODES
        self._check_setup(setup)
        repair_torn_tail(self.path)
        self.done: dict[tuple[str, int], dict[str, Any]] = {}
        stale = 0
        if self.path.exists():
            for _, record in read_jsonl(self.path):
                key = (record["problem_id"], int(record.get("sample", 0)))
                stale += key in self.done
                self.done[key] = record
        errors = [key for key, record in self.done.items() if record.get("error")]
        for key in errors:  # retried by this run
            del self.done[key]
        if errors or stale:
            write_jsonl(list(self.done.values()), self.path)

    def _check_setup(self, setup: dict[str, Any]) -> None:
        """The episodes already here were made by the same policy and sampling setup."""
        path = self.dir / SETUP
        if self.path.exists() and path.exists():
            before = read_json(path)
            changed = {k: (before.get(k), setup.get(k)) for k in {**before, **setup} if before.get(k) != setup.get(k)}
            if changed:
                what = ", ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in changed.items())
                raise ValueError(
                    f"output_dir={self.dir} holds episodes of another evaluation ({what}): "
                    f"use another output_dir, or delete {self.path} to start over"
                )
        write_json(path, setup)

    def todo(self, keys: list[tuple[str, int]]) -> list[tuple[str, int]]:
        return [key for key in keys if key not in self.done]

    def start(self) -> None:
        """Before the first new episode: the old report no longer describes the file."""
        (self.dir / REPORT).unlink(missing_ok=True)


def complete_problems(records: list[dict[str, Any]], samples: int) -> list[dict[str, Any]]:
    """The episodes of the problems that have all ``samples`` of theirs (a stopped run's report)."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record["problem_id"]] = counts.get(record["problem_id"], 0) + 1
    return [record for record in records if counts[record["problem_id"]] == samples]
