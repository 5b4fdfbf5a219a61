"""The student's own episodes for on-policy distillation: played, rendered into a batch, summarised.

:func:`collect_rollouts` is the one place that plays episodes (today one at a time through the
agent loop, :class:`~deepcoder.agent.loop.Agent`, with the student as an
:class:`~deepcoder.policies.hf.HFPolicy`: real sandboxed observations, graded answers); a batched
episode runner can replace its body without changing its callers. The episodes are records of the
same schema as the teacher's trajectories, so :func:`rollout_batch` renders them with the same
renderer (:func:`~deepcoder.spans.render.render_trajectory`): the student's turns get their
reason/action/answer labels from the parser's segments, prompts and observations none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from deepcoder.agent.loop import Agent
from deepcoder.data.datamodule import collate
from deepcoder.policies.hf import HFPolicy
from deepcoder.problems import Problem
from deepcoder.records.metrics import aggregate, episode_stats
from deepcoder.records.schema import TrajectoryRecord
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
    seeds: Sequence[int],
    name: str = "student",
) -> list[TrajectoryRecord]:
    """One episode of ``student`` per problem (``seeds[i]`` seeds episode i's sampling), as records.

    The student is switched to eval mode for generation and back to its previous mode after.
    """
    if len(seeds) != len(problems):
        raise ValueError(f"collect_rollouts: {len(problems)} problems but {len(seeds)} seeds")
    training = student.training
    try:
        records = []
        for index, (problem, seed) in enumerate(zip(problems, seeds)):
            policy = HFPolicy.from_model(
                student, tokenizer, name, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed
            )
            records.append(agent.run(policy, problem, sample=index))
        return records
    finally:
        student.train(training)


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
