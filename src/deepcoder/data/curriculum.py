"""Easy-to-hard training: a complexity score per trajectory and a pacing schedule.

Score: ``reason·(reasoning tokens) + action·(action and answer tokens) + steps·(agent steps)``.
At optimizer step ``s`` batches are drawn only from the easiest fraction ``f(s)`` of the
examples, with ``f(0) = start_fraction`` and ``f(s) = 1`` from ``full_at_step`` on:

- ``linear``: ``f = f0 + (1 - f0)·x`` with ``x = min(1, s / full_at_step)``;
- ``root``:   ``f = sqrt(f0² + (1 - f0²)·x)`` (Platanios et al., 2019: fast at first);
- ``step``:   ``f0`` raised in ``stages`` equal steps, ``f = f0 + (1 - f0)·floor(stages·x) / stages``.

``pacing="none"`` turns the curriculum off (uniform shuffling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deepcoder.core.names import SPAN_INDEX

PACINGS = ("none", "linear", "root", "step")


@dataclass(frozen=True)
class Curriculum:
    """Curriculum settings (``data.curriculum``): pacing, its schedule and the score's weights."""

    pacing: str = "none"
    start_fraction: float = 0.25
    full_at_step: int = 100
    stages: int = 4
    reason: float = 1.0
    action: float = 1.0
    steps: float = 0.0

    def __post_init__(self) -> None:
        if self.pacing not in PACINGS:
            raise ValueError(f"data.curriculum.pacing must be one of {PACINGS}, got {self.pacing!r}")
        if not 0.0 < self.start_fraction <= 1.0:
            raise ValueError(f"data.curriculum.start_fraction must be in (0, 1], got {self.start_fraction}")
        if self.full_at_step < 1 or self.stages < 1:
            raise ValueError(
                f"data.curriculum.full_at_step and stages must be >= 1, got {self.full_at_step} and {self.stages}"
            )

    @property
    def active(self) -> bool:
        return self.pacing != "none"

    def scores(self, span_counts: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """The complexity of trajectories from their tokens per span kind ``[n, spans]`` and agent steps ``[n]``:
        weighted reasoning tokens, action tokens and steps."""
        return (
            self.reason * span_counts[:, SPAN_INDEX["reason"]]
            + self.action * (span_counts[:, SPAN_INDEX["action"]] + span_counts[:, SPAN_INDEX["answer"]])
            + self.steps * steps
        )

    def fraction(self, step: int) -> float:
        """The share of examples (easiest first) that batches are drawn from at optimizer ``step``."""
        x = min(1.0, max(0, step) / self.full_at_step)
        f0 = self.start_fraction
        if self.pacing == "none" or x >= 1.0:
            return 1.0
        if self.pacing == "linear":
            return f0 + (1 - f0) * x
        if self.pacing == "root":
            return math.sqrt(f0 * f0 + (1 - f0 * f0) * x)
        return f0 + (1 - f0) * math.floor(self.stages * x) / self.stages
