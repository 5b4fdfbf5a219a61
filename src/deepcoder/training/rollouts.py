"""The student's own episodes for on-policy distillation: played, rendered into a batch, summarised.

:func:`collect_rollouts` is the one place that plays episodes: the batched episode runner of
evaluation (:func:`~deepcoder.agent.batch_loop.run_episodes`) with the student as an
:class:`~deepcoder.policies.hf.HFPolicy` advances all live episodes one turn per batched
``generate`` (per-row seeded sampling), with real sandboxed observations and graded answers. The
episodes are records of the same schema as the teacher's trajectories, so :func:`rollout_batch`
renders them with the same renderer (:func:`~deepcoder.spans.render.render_trajectory`): the student's turns get their
reason/action/answer labels from the parser's segments, prompts and observations none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from deepcoder.agent.batch_loop import run_episodes
from deepcoder.agent.loop import Agent
from deepcoder.data.datamodule import collate
from deepcoder.policies.hf import HFPolicy
from deepcoder.problems import Problem
from deepcoder.records.metrics import aggregate, episode_stats
from deepcoder.records.schema import TrajectoryRecord, as_record
from deepcoder.spans.labels import SpanStrategy
from deepcoder.spans.render import RenderedExample, render_trajectory


def collect_rollouts(
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    *,
    agent: Agent,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int | None = None,
    name: str = "student",
) -> list[TrajectoryRecord]:
    """One episode of ``student`` per problem (a problem may repeat), as records in ``problems``' order.

        Played by the batched runner, at most ``batch_size`` live at once (default: all). The k-th
        occurrence of a problem is its sample k, seeded ``derive_seed(seed, problem.id, k)`` as in
        evaluation: the episodes depend on ``seed`` only, not on the batch size (up to float rounding of
    padded batched matmuls). The student
        is switched to eval mode for generation and back to its previous mode after.
    """
    occurrences: dict[str, int] = {}
    keys = []  # (problem id, sample) of each position of ``problems``
    for problem in problems:
        keys.append((problem.id, occurrences.get(problem.id, 0)))
        occurrences[problem.id] = keys[-1][1] + 1
    distinct = list({problem.id: problem for problem in problems}.values())
    training = student.training
    try:
        policy = HFPolicy.from_model(student, tokenizer, name, temperature=temperature, max_new_tokens=max_new_tokens)
        records = run_episodes(
            policy,
            distinct,
            agent=agent,
            batch_size=max(len(keys), 1) if batch_size is None else batch_size,
            samples=max(occurrences.values(), default=1),
            seed=seed,
            only=set(keys),
        )
    finally:
        student.train(training)
    played = {(record["problem_id"], record["sample"]): record for record in records}
    return [as_record(played[key]) for key in keys]


def render_rollouts(
    records: Sequence[TrajectoryRecord], tokenizer: PreTrainedTokenizerBase, span: SpanStrategy, max_length: int
) -> list[RenderedExample]:
    """The episodes as labelled tokens, exactly as teacher trajectories are rendered for training."""
    return [render_trajectory(tokenizer, record, span, max_length=max_length) for record in records]


def rollout_batch(examples: Sequence[RenderedExample], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A right-padded training batch of rendered episodes, on ``device`` (the data module's collation)."""
    return {key: value.to(device) for key, value in collate(list(examples), pad_id).items()}


def rollout_metrics(records: Sequence[Any]) -> dict[str, float]:
    """The student's pass rate on its episodes, its share of valid turns (parsed, and the tool ran or
    it was the final answer) and its mean turns per episode."""
    summary = aggregate([[episode_stats(record)] for record in records])
    return {
        "pass_rate": summary["pass_at_1"],
        "valid_actions": summary["action_validity"],
        "episode_steps": summary["mean_steps"],
    }
