"""95% confidence intervals by bootstrap over problems (``scipy.stats.bootstrap``, percentile, seeded).

Every reported metric is a ratio of per-problem sums, ``Σ_p num_p / Σ_p den_p`` (pass@k: the
per-problem estimate over 1; action validity: valid turns over turns; per-episode means:
totals over episodes), so resampling problems with replacement and recomputing the ratio
gives exactly the estimator of ``report.json`` on each resample (tested against
:func:`deepcoder.records.metrics.aggregate`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from deepcoder.records.pass_at_k import pass_at_k

PerProblem = Sequence[Sequence[dict[str, Any]]]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (``nan`` bounds with fewer than two problems)."""

    value: float
    low: float
    high: float


def ratio_parts(groups: PerProblem, ks: Sequence[int] = (1,)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{metric: (numerators, denominators)}``, one entry per problem, for every bootstrapped metric."""
    episodes = np.array([len(group) for group in groups], dtype=float)

    def total(key: str) -> np.ndarray:
        return np.array([sum(float(s[key]) for s in group) for group in groups])

    parts = {
        f"pass_at_{k}": (
            np.array([pass_at_k(len(g), sum(s["passed"] for s in g), k) for g in groups]),
            np.ones(len(groups)),
        )
        for k in ks
    }
    parts["action_validity"] = (total("valid_turns"), total("steps"))
    for key, source in (
        ("mean_steps", "steps"),
        ("mean_reasoning", "reasoning"),
        ("answered_without_action", "answered_without_action"),
        ("final_answer_rate", "answered"),
    ):
        parts[key] = (total(source), episodes)
    return parts


def _ratio(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
    den_sum = den.sum(axis=axis)
    return np.divide(num.sum(axis=axis), den_sum, out=np.zeros_like(den_sum, dtype=float), where=den_sum > 0)


def bootstrap_ratio(
    num: np.ndarray, den: np.ndarray, seed: int = 0, n_resamples: int = 2000, level: float = 0.95
) -> Interval:
    """``Σnum/Σden`` with a percentile bootstrap CI, resampling (num, den) pairs (problems) together."""
    value = float(_ratio(num, den))
    if len(num) < 2:
        return Interval(value, math.nan, math.nan)
    if np.all(num == num[0]) and np.all(den == den[0]):  # every resample is the same: no spread
        return Interval(value, value, value)
    result = bootstrap(
        (num, den),
        _ratio,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(value, float(result.confidence_interval.low), float(result.confidence_interval.high))


def bootstrap_metrics(
    groups: PerProblem, ks: Sequence[int] = (1,), seed: int = 0, n_resamples: int = 2000
) -> dict[str, Interval]:
    """Every metric of :func:`ratio_parts` with its CI; one seed, so a table is reproducible."""
    return {key: bootstrap_ratio(num, den, seed, n_resamples) for key, (num, den) in ratio_parts(groups, ks).items()}
