"""Reading a run directory in the demo's layout: training logs and evaluation outputs.

A run directory holds any subset of ``train/`` (``metrics.json``, Lightning CSV logs under
``train/csv/version_*/metrics.csv``), ``eval_train/`` and ``eval_heldout/`` (each with
``report.json`` and ``episodes.jsonl``). A directory that itself holds ``report.json`` is one
evaluation (any ``evaluate.py`` output).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepcoder.records.metrics import episode_stats, group_by_problem
from deepcoder.utils.jsonl import read_json, read_jsonl

EVAL_SPLITS = ("eval_train", "eval_heldout")


@dataclass(frozen=True)
class Evaluation:
    """One ``evaluate.py`` output: its report and each problem's episode stats (for the bootstrap)."""

    run: str
    split: str
    path: Path
    report: dict[str, Any]
    groups: list[list[dict[str, Any]]]

    @property
    def label(self) -> str:
        return f"{self.run} / {self.split}"


@dataclass(frozen=True)
class Run:
    """A run directory: its training curves (if trained here) and its evaluations."""

    name: str
    path: Path
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    evaluations: list[Evaluation] = field(default_factory=list)


def load_evaluation(path: str | Path, run: str, split: str) -> Evaluation:
    """``report.json`` + ``episodes.jsonl`` of one evaluation; episodes without stored stats are scored here."""
    path = Path(path)
    report = read_json(path / "report.json")
    for key in ("pass_at_1", "action_validity", "mean_steps", "n"):
        if key not in report:
            raise ValueError(f"{path / 'report.json'}: missing field {key!r} (not an evaluate.py report?)")
    episodes = path / "episodes.jsonl"
    if not episodes.exists():
        raise FileNotFoundError(f"{episodes}: not found; the bootstrap over problems needs the episodes")
    records = [record for _, record in read_jsonl(episodes)]
    for number, record in enumerate(records, start=1):
        if "problem_id" not in record:
            raise ValueError(f"{episodes}:{number}: missing field 'problem_id'")
    stats = [record.get("metrics") or episode_stats(record) for record in records]
    return Evaluation(run, split, path, report, group_by_problem(records, stats))


def read_curves(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), …]}`` from a Lightning ``CSVLogger`` ``metrics.csv`` (empty cells skipped)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            step = int(row["step"])
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    curves.setdefault(key, []).append((step, float(value)))
    return curves


def load_run(path: str | Path, name: str | None = None) -> Run:
    """A run directory in the demo layout, or a single evaluation directory."""
    path = Path(path)
    name = name or path.name
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: run directory not found")
    if (path / "report.json").exists():
        return Run(name, path, evaluations=[load_evaluation(path, name, "eval")])
    logs = sorted((path / "train" / "csv").glob("version_*/metrics.csv"))
    curves = read_curves(logs[-1]) if logs else {}
    evaluations = [
        load_evaluation(path / split, name, split) for split in EVAL_SPLITS if (path / split / "report.json").exists()
    ]
    if not curves and not evaluations:
        raise ValueError(
            f"{path}: neither train/csv/version_*/metrics.csv nor {'/'.join(EVAL_SPLITS)}/report.json "
            "found (expected a run directory like outputs/demo/sad)"
        )
    return Run(name, path, curves, evaluations)
