"""Reading run directories: training logs and evaluation outputs, in the layouts the README produces.

A run directory is one of: the demo's (``train/`` with Lightning CSV logs under
``train/csv/version_*/metrics.csv``, plus ``eval_train/``, ``eval_heldout/``); a ``train.py``
output_dir (``csv/version_*/metrics.csv``, ``metrics.json``, ``student/``) with any evaluations in
subdirectories (``evaluate.py … output_dir=RUN/eval``); or one ``evaluate.py`` output_dir
(``report.json`` + ``episodes.jsonl``). An evaluation that was stopped (a partial report, or
episodes without a report beside them) is refused, never compared as if it were complete.
Reasoning length is counted in words from the episodes, the one unit every policy has.
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
    if not (path / "report.json").exists():
        raise ValueError(
            f"{path}: episodes.jsonl without report.json: an evaluate.py run that was stopped; "
            f"rerun it with output_dir={path} to finish"
        )
    report = read_json(path / "report.json")
    if report.get("partial"):
        raise ValueError(
            f"{path / 'report.json'} is partial ({report.get('n_episodes')} of {report.get('n_episodes_expected')} "
            f"episodes): rerun evaluate.py with output_dir={path} to finish"
        )
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
    if "n_episodes" in report and len(records) != report["n_episodes"]:
        raise ValueError(
            f"{path}: report.json counts {report['n_episodes']} episodes but episodes.jsonl holds {len(records)}: "
            f"rerun evaluate.py with output_dir={path} to bring them together"
        )
    stats = [episode_stats(record) for record in records]  # reasoning in words for every row
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


def is_evaluation(path: Path) -> bool:
    return (path / "report.json").exists() or (path / "episodes.jsonl").exists()


def load_run(path: str | Path, name: str | None = None) -> Run:
    """A run directory (the demo's layout or a train.py output_dir with evaluations in subdirectories),
    or a single evaluation directory."""
    path = Path(path)
    name = name or path.name
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: run directory not found")
    if is_evaluation(path):
        return Run(name, path, evaluations=[load_evaluation(path, name, "eval")])
    logs = sorted(
        [*(path / "train" / "csv").glob("version_*/metrics.csv"), *(path / "csv").glob("version_*/metrics.csv")],
        key=lambda log: int(log.parent.name.split("_")[1]),
    )
    curves = read_curves(logs[-1]) if logs else {}
    splits = [split for split in EVAL_SPLITS if is_evaluation(path / split)]
    splits += sorted(
        sub.name for sub in path.iterdir() if sub.is_dir() and sub.name not in splits and is_evaluation(sub)
    )
    evaluations = [load_evaluation(path / split, name, split) for split in splits]
    if not curves and not evaluations:
        raise ValueError(
            f"{path}: not a run directory: no training log (csv/ or train/csv/version_*/metrics.csv), no evaluation "
            "(a subdirectory with report.json): pass a train.py or evaluate.py output_dir, or a run like "
            "outputs/demo/sad"
        )
    return Run(name, path, curves, evaluations)
