"""PNG plots of a comparison with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from deepcoder.records.metrics import FAILURES  # noqa: E402
from deepcoder.reporting.runs import Run  # noqa: E402

CURVE_SPANS = ("loss", "loss_reason", "loss_action", "loss_answer")


def training_curves(runs: Sequence[Run], path: Path) -> Path | None:
    """Per-span training loss against step, one line per run (``None`` when no run has logs)."""
    trained = [run for run in runs if run.curves]
    if not trained:
        return None
    figure, axes = plt.subplots(1, len(CURVE_SPANS), figsize=(4 * len(CURVE_SPANS), 3.2), squeeze=False)
    for axis, span in zip(axes[0], CURVE_SPANS):
        for run in trained:
            points = run.curves.get(f"train/{span}", [])
            if points:
                axis.plot(*zip(*points), label=run.name)
        axis.set_title(f"train/{span}")
        axis.set_xlabel("step")
    axes[0][0].set_ylabel("nats/token (train/loss: span-weighted)")
    axes[0][-1].legend()
    return _save(figure, path)


def pass_at_k(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """pass@k against k with 95% bootstrap intervals, one line per evaluation."""
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for row in rows:
        points = sorted(
            (int(key.rsplit("_", 1)[1]), interval)
            for key, interval in row["metrics"].items()
            if key.startswith("pass_at_")
        )
        ks = [k for k, _ in points]
        values = [i.value for _, i in points]
        errors = [
            [max(i.value - i.low, 0.0) if i.low == i.low else 0.0 for _, i in points],
            [max(i.high - i.value, 0.0) if i.high == i.high else 0.0 for _, i in points],
        ]
        axis.errorbar(ks, values, yerr=errors, marker="o", capsize=3, label=row["label"])
    axis.set_xlabel("k")
    axis.set_ylabel("pass@k")
    axis.set_ylim(-0.05, 1.05)
    axis.legend(fontsize="small")
    return _save(figure, path)


def failure_categories(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Share of episodes per outcome (passed and each failure category), one bar per evaluation."""
    figure, axis = plt.subplots(figsize=(max(5.5, 1.6 * len(rows)), 3.8))
    labels = [row["label"] for row in rows]
    bottom = [0.0] * len(rows)
    for category in FAILURES:
        shares = [row["failures"].get(category, 0) / max(sum(row["failures"].values()), 1) for row in rows]
        axis.bar(labels, shares, bottom=bottom, label=category)
        bottom = [b + s for b, s in zip(bottom, shares)]
    axis.set_ylabel("share of episodes")
    axis.tick_params(axis="x", labelrotation=20)
    axis.legend(fontsize="small", bbox_to_anchor=(1.0, 1.0), loc="upper left")
    return _save(figure, path)


def learning_curves(curves: dict[str, Sequence[dict[str, Any]]], path: Path) -> Path | None:
    """Held-out pass@1 against supervised training tokens, one line per arm (``None`` without points)."""
    drawn = {name: points for name, points in curves.items() if points}
    if not drawn:
        return None
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for name, points in drawn.items():
        axis.plot([p["supervised_tokens"] for p in points], [p["pass_at_1"] for p in points], marker="o", label=name)
    axis.set_xlabel("supervised training tokens")
    axis.set_ylabel("held-out pass@1")
    axis.set_ylim(-0.05, 1.05)
    axis.legend(fontsize="small")
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
