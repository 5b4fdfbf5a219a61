"""Confidence intervals over problems *and* seeds: a two-way bootstrap of a pass matrix.

An arm of an experiment is a ``[seeds × problems]`` matrix of per-problem pass rates (every seed
evaluated on the same held-out problems). Its pass@1 is the matrix mean. The uncertainty has two
sources — which problems were drawn, and which training seeds — so each resample draws seeds and
problems with replacement, independently, and takes the mean of the selected rows and columns
(the standard two-way, "crossed random effects" bootstrap). A difference between two arms resamples
the *same* seeds and problems for both (seed s of one arm is paired with seed s of the other: same
initialisation and data order), so the shared noise cancels.
"""

from __future__ import annotations

import math

import numpy as np

from deepcoder.reporting.bootstrap import Interval


def _check(matrix: np.ndarray, name: str) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(f"{name}: expected a non-empty [seeds x problems] matrix, got shape {matrix.shape}")
    return matrix


def _resampled_means(matrices: list[np.ndarray], seed: int, n_resamples: int) -> np.ndarray:
    """``[matrix, resample]`` means, every matrix resampled with the same seed and problem draws."""
    n_seeds, n_problems = matrices[0].shape
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    problem_draws = rng.integers(0, n_problems, size=(n_resamples, n_problems))
    # mean over (chosen seeds) x (chosen problems) = mean over chosen seeds of each seed's mean over chosen problems
    return np.stack(
        [
            np.take_along_axis(matrix[:, problem_draws].mean(axis=2).T, seed_draws, axis=1).mean(axis=1)
            for matrix in matrices
        ]
    )


def _interval(value: float, samples: np.ndarray, level: float) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(value, float(low), float(high))


def seeds_problems_interval(
    matrix: np.ndarray, seed: int = 0, n_resamples: int = 2000, level: float = 0.95
) -> Interval:
    """The mean of a ``[seeds × problems]`` matrix with a percentile CI over seeds and problems."""
    matrix = _check(matrix, "seeds_problems_interval")
    value = float(matrix.mean())
    if matrix.size < 2:
        return Interval(value, math.nan, math.nan)
    return _interval(value, _resampled_means([matrix], seed, n_resamples)[0], level)


def paired_difference(
    matrix: np.ndarray, baseline: np.ndarray, seed: int = 0, n_resamples: int = 2000, level: float = 0.95
) -> Interval:
    """``mean(matrix) − mean(baseline)`` with a paired CI (the same seeds and problems drawn for both)."""
    matrix, baseline = _check(matrix, "paired_difference"), _check(baseline, "paired_difference baseline")
    if matrix.shape != baseline.shape:
        raise ValueError(
            f"paired_difference: arms must share seeds and problems, got shapes {matrix.shape} and {baseline.shape}"
        )
    value = float(matrix.mean() - baseline.mean())
    if matrix.size < 2:
        return Interval(value, math.nan, math.nan)
    means = _resampled_means([matrix, baseline], seed, n_resamples)
    return _interval(value, means[0] - means[1], level)
