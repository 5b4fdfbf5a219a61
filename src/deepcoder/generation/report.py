"""``report.json`` of a trajectory set, its error breakdown, and its console tables.

The agent loop records a failed call as ``f"{type(exc).__name__}: {exc}"``; :func:`error_kind`
sorts that text into a few kinds that tell a user what to change (quota, timeouts, request
size, a broken server or response): by the exception's name first (the SDKs' ``RateLimitError``,
``APITimeoutError`` …, our teachers' ``RateLimitRetriesExhausted``, ``RequestTooLarge``,
``EmptyCompletion``, ``MalformedCompletion``), then by the HTTP status its message carries.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from deepcoder.generation.quality import quality, quality_by
from deepcoder.records.metrics import summarize, summarize_by
from deepcoder.records.schema import TrajectoryRecord
from deepcoder.utils.console import console, print_metrics

# First match wins: a timeout is also a connection error in the SDKs, a 413 is also a status error.
_PATTERNS = (
    ("rate_limit", r"RateLimit|\b429\b|rate.?limit|quota"),
    ("too_large", r"\b413\b|TooLarge|too large|context.length"),
    ("timeout", r"Timeout|timed out"),
    (
        "malformed",
        (
            r"Malformed|Empty|JSONDecodeError|ResponseValidation|empty (?:completion|content|response)"
            r"|truncated|Expecting value|Unterminated"
        ),
    ),
    ("server_error", r"InternalServerError|ServiceUnavailable|\b5\d\d\b"),
    ("connection", r"Connection"),
    ("auth", r"Authentication|PermissionDenied|\b40[13]\b"),
    ("not_found", r"NotFound|\b404\b"),
)
ERROR_KINDS = tuple((kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in _PATTERNS)
ERROR_KIND_NAMES = tuple(kind for kind, _ in ERROR_KINDS) + ("other",)


def error_kind(error: str) -> str:
    """The kind of a record's ``error`` text: by the exception's name, else by its message, else ``other``."""
    name = error.split(":", 1)[0]
    for text in (name, error):
        kind = next((kind for kind, pattern in ERROR_KINDS if pattern.search(text)), None)
        if kind is not None:
            return kind
    return "other"


def errors_by_kind(records: Sequence[TrajectoryRecord]) -> dict[str, int]:
    counts = Counter(error_kind(error) for r in records if (error := r.get("error")))
    return {kind: counts.get(kind, 0) for kind in ERROR_KIND_NAMES}


def dataset_report(records: Sequence[TrajectoryRecord]) -> dict[str, Any]:
    """Counts, pass rate, errors, tokens and quality of a whole trajectory set (one record a problem)."""
    n = len(records)
    n_passed = sum(1 for r in records if r.get("passed"))
    return {
        "n_trajectories": n,
        "n_passed": n_passed,
        "n_errors": sum(1 for r in records if r.get("error")),
        "pass_rate": n_passed / n if n else 0.0,
        "errors_by_kind": errors_by_kind(records),
        "tokens": {
            key: sum(int((r.get("usage") or {}).get(key, 0)) for r in records)
            for key in ("prompt_tokens", "completion_tokens")
        },
        "summary": summarize(records),
        "by_category": summarize_by(records, "category"),
        "by_difficulty": summarize_by(records, "difficulty"),
        "quality": {
            "overall": quality(records),
            "by_category": quality_by(records, "category"),
            "by_difficulty": quality_by(records, "difficulty"),
        },
    }


HEADLINE = (
    "n_problems",
    "n_resumed",
    "n_new",
    "n_trajectories",
    "n_passed",
    "n_errors",
    "pass_rate",
    "seconds",
    "trajectories_per_min",
    "tokens_per_s",
)
QUALITY_COLUMNS = {
    "n": "n",
    "n_errors": "err",
    "pass_rate": "pass",
    "with_reasoning": "reason",
    "with_think": "think",
    "with_code_action": "code",
    "with_explanation": "explain",
    "mean_steps": "steps",
    "mean_tokens": "tokens",
}


def print_report(title: str, report: dict[str, Any]) -> None:
    """The headline numbers, the errors by kind, and the quality per category and difficulty."""
    headline = {key: report[key] for key in HEADLINE if report.get(key) is not None}
    headline["tokens"] = report["tokens"]
    headline["errors"] = {kind: count for kind, count in report["errors_by_kind"].items() if count}
    print_metrics(title, headline)
    groups = report["quality"]
    table = Table(title="quality (shares and means over records without error)", header_style="bold")
    table.add_column("group", no_wrap=True)
    for header in QUALITY_COLUMNS.values():
        table.add_column(header, justify="right")
    sections = [{"all": groups["overall"]}, groups["by_category"], groups["by_difficulty"]]
    for section in sections:
        for name, row in section.items():
            table.add_row(name, *(_cell(column, row[column]) for column in QUALITY_COLUMNS))
        table.add_section()
    console.print(table)


def _cell(column: str, value: Any) -> str:
    if column == "mean_tokens":
        return f"{value:.0f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)
