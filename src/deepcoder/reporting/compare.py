"""Side-by-side comparison of runs and the teacher: ``comparison.md``, ``comparison.json`` and PNG plots."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepcoder.reporting import plots
from deepcoder.reporting.runs import Run, load_run
from deepcoder.reporting.table import comparison_row, markdown_table
from deepcoder.utils.jsonl import write_json


def compare(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    teacher: str | Path | None = None,
    seed: int = 0,
    n_resamples: int = 2000,
    wandb_project: str | None = None,
    evaluations: dict[str, str | Path] | None = None,
) -> dict[str, Any]:
    """Load every run (and the teacher's dir as run ``teacher``, and each of ``evaluations``, an
    ``evaluate.py`` output_dir by row name), write the table and plots to ``out``.

    Also logged to W&B when a run is active in this process, or to a new run in ``wandb_project``.
    """
    if not run_dirs and teacher is None and not evaluations:
        raise ValueError("compare: give at least one RUN_DIR, --eval NAME=DIR or --teacher DIR")
    runs: list[Run] = [load_run(path) for path in run_dirs]
    runs += [load_run(path, name=name) for name, path in (evaluations or {}).items()]
    if teacher is not None:
        runs.append(load_run(teacher, name="teacher"))
    rows = [comparison_row(evaluation, seed, n_resamples) for run in runs for evaluation in run.evaluations]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows) if rows else "(no evaluations found)\n"
    note = (
        f"\n95% confidence intervals: percentile bootstrap over problems ({n_resamples} resamples, seed {seed}). "
        "TF = teacher-forced on held-out teacher trajectories.\n"
    )
    (out / "comparison.md").write_text(f"# Comparison\n\n{table}{note}", encoding="utf-8")
    figures = {"training_curves": plots.training_curves(runs, out / "training_curves.png")}
    if rows:
        figures["pass_at_k"] = plots.pass_at_k(rows, out / "pass_at_k.png")
        figures["failures"] = plots.failure_categories(rows, out / "failures.png")
    json_rows = [
        _strict_json({**row, "metrics": {k: dataclasses.asdict(v) for k, v in row["metrics"].items()}}) for row in rows
    ]
    figure_paths = {name: str(path) for name, path in figures.items() if path is not None}
    result = {"rows": json_rows, "figures": figure_paths, "seed": seed, "n_resamples": n_resamples}
    write_json(out / "comparison.json", result)
    log_to_wandb(json_rows, figure_paths, out, wandb_project)
    return {**result, "table": table}


def _strict_json(value: Any) -> Any:
    """``nan`` (an interval over fewer than two problems) as ``null``, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    return value


def log_to_wandb(rows: list[dict[str, Any]], figures: dict[str, str], out: Path, project: str | None) -> bool:
    """The table (value and CI bounds per metric) and the plots, to the active W&B run or a new one."""
    active = sys.modules.get("wandb") is not None and sys.modules["wandb"].run is not None
    if not active and not project:
        return False
    import wandb

    run = wandb.run if active else wandb.init(project=project, job_type="compare", dir=str(out))
    if run is None:
        raise RuntimeError("W&B gave no run to log the comparison to")
    metrics = sorted({key for row in rows for key in row["metrics"]})
    columns: list[str | int] = [
        "run",
        "n",
        "samples",
        *(f"{m}{part}" for m in metrics for part in ("", "_low", "_high")),
    ]
    data = [
        [
            row["label"],
            row["n"],
            row["samples"],
            *(row["metrics"].get(m, {}).get(field) for m in metrics for field in ("value", "low", "high")),
        ]
        for row in rows
    ]
    run.log(
        {
            "comparison": wandb.Table(columns=columns, data=data),
            **{f"comparison/{name}": wandb.Image(path) for name, path in figures.items()},
        }
    )
    if not active:
        run.finish()
    return True
