"""Summary counts of a problem set, and their table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from deepcoder.problems.problem import Problem


def stats(problems: Sequence[Problem]) -> dict[str, Any]:
    """Summary counts of a problem list."""
    n = len(problems)
    return {
        "count": n,
        "by_category": dict(sorted(Counter(p.category for p in problems).items())),
        "by_difficulty": dict(sorted(Counter(p.difficulty for p in problems).items())),
        "by_source": dict(sorted(Counter(p.source for p in problems).items())),
        "mean_prompt_chars": (sum(len(p.prompt) for p in problems) / n) if n else 0.0,
        "with_reference": sum(1 for p in problems if p.reference_solution is not None),
    }


def format_stats(st: dict[str, Any], title: str = "Problems"):
    """A ``rich.table.Table`` rendering of :func:`stats` output."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("group")
    table.add_column("value")
    table.add_column("count", justify="right")
    table.add_row("total", "", str(st["count"]))
    table.add_row("with reference", "", str(st["with_reference"]))
    table.add_row("mean prompt chars", "", f"{st['mean_prompt_chars']:.1f}")
    for key, label in (("by_category", "category"), ("by_difficulty", "difficulty"), ("by_source", "source")):
        for value, count in st[key].items():
            table.add_row(label, value, str(count))
    return table
