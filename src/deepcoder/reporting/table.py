"""The comparison table: one row per evaluation (runs and teacher), metrics with bootstrap CIs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from deepcoder.reporting.bootstrap import Interval, bootstrap_metrics
from deepcoder.reporting.runs import Evaluation

TF_SPANS = ("reason", "action", "answer")


def pass_ks(evaluation: Evaluation) -> list[int]:
    """The k of every pass@k in the report (always including 1)."""
    return sorted({1, *(int(k) for k in evaluation.report.get("pass_at_k", {}))})


def comparison_row(evaluation: Evaluation, seed: int = 0, n_resamples: int = 2000) -> dict[str, Any]:
    """Everything one table row shows, as plain data (also written to ``comparison.json``)."""
    report = evaluation.report
    teacher_forced = report.get("teacher_forced") or {}
    return {
        "label": evaluation.label,
        "path": str(evaluation.path),
        "n": len(evaluation.groups),  # the problems the intervals are over
        "samples": report.get("samples_per_problem", 1),
        "reasoning_unit": "words",  # counted from the episodes, the same way for every row
        "metrics": bootstrap_metrics(evaluation.groups, pass_ks(evaluation), seed, n_resamples),
        "failures": report.get("failures", {}),
        "teacher_forced": {
            **{f"ppl_{span}": teacher_forced.get("spans", {}).get(span, {}).get("perplexity") for span in TF_SPANS},
            "first_action_agreement": teacher_forced.get("first_action_agreement"),
        }
        if teacher_forced
        else {},
    }


def _cell(interval: Interval, digits: int = 2) -> str:
    if math.isnan(interval.low):
        return f"{interval.value:.{digits}f}"
    return f"{interval.value:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def _number(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table; CIs are 95% percentile bootstrap intervals over problems."""
    ks = sorted({int(key.rsplit("_", 1)[1]) for row in rows for key in row["metrics"] if key.startswith("pass_at_")})
    columns = [
        "run",
        "n × samples",
        *(f"pass@{k}" for k in ks),
        "action validity",
        "steps / episode",
        "reasoning words / episode",
        "answered w/o action",
        *(f"TF ppl {span}" for span in TF_SPANS),
        "first-action agreement",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        metrics, tf = row["metrics"], row["teacher_forced"]
        cells = [
            row["label"],
            f"{row['n']} × {row['samples']}",
            *(_cell(metrics[f"pass_at_{k}"]) if f"pass_at_{k}" in metrics else "–" for k in ks),
            _cell(metrics["action_validity"]),
            _cell(metrics["mean_steps"], 1),
            _cell(metrics["mean_reasoning"], 1),
            _cell(metrics["answered_without_action"]),
            *(_number(tf.get(f"ppl_{span}")) for span in TF_SPANS),
            _number(tf.get("first_action_agreement")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
