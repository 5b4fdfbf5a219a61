"""Reproducible sampled episodes: a seed per (run seed, problem, sample, turn), and first turns drawn together.

Seeds come from a hash of their parts (:func:`deepcoder.agent.seeds.derive_seed`), so sample 3 of a
problem gets the same seed whatever the order, the number of workers or the other problems in the run.
With ``batch_size=1`` only the first turn of the ``n`` samples of a problem shares a prompt, so only it
is drawn as one batch (:meth:`deepcoder.policies.hf.HFPolicy.complete_batch`), seeded by (seed,
problem); ``batch_size`` > 1 plays whole episodes in batches (:mod:`deepcoder.agent.batch_loop`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deepcoder.agent.seeds import derive_seed
from deepcoder.policies.base import Completion, Message

if TYPE_CHECKING:
    from deepcoder.problems import Problem


class EpisodePolicy:
    """One sampled episode of ``policy``: turn ``t`` is seeded with ``derive_seed(seed, t)``; an
    already drawn first turn (from a batch) is returned instead of asking again."""

    def __init__(self, policy: Any, seed: int, first: Completion | None = None) -> None:
        self.policy, self.seed, self._first = policy, seed, first
        self.provider, self.model = policy.provider, policy.model
        self.fingerprint = getattr(policy, "fingerprint", None)

    def complete(self, messages: Sequence[Message], *, problem: Problem) -> Completion:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn == 0 and self._first is not None:
            return self._first
        if getattr(self.policy, "sampling", False):
            return self.policy.complete(messages, problem=problem, seed=derive_seed(self.seed, turn))
        return self.policy.complete(messages, problem=problem)
