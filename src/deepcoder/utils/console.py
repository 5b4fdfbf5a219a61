"""Console tables shared by the entry points."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def print_metrics(title: str, metrics: Mapping[str, Any]) -> None:
    """A two-column table of scalar metrics (nested dicts are flattened with ``/``)."""
    table = Table(title=title, show_header=True, header_style="bold")
    flat = _flatten(metrics)
    table.add_column("metric", no_wrap=True, min_width=max(map(len, flat), default=6))  # full names, never cut
    table.add_column("value", justify="right")
    for key, value in flat.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat
