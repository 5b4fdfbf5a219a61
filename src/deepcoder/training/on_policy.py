"""``mode=on_policy``: the student plays episodes, the frozen teacher grades its tokens span by span.

GKD (Agarwal et al., 2024) for a tool-using agent. On an on-policy step the student plays
``mode.episodes`` episodes on training problems through the batched episode runner, at most
``mode.batch_size`` at a time (sampled at ``mode.temperature``, sandboxed, real observations,
graded), the episodes are rendered like teacher trajectories, and the live teacher
(``distill_teacher=``, same vocabulary) scores every token of the student's turns: the loss is the
``loss=`` option's span weights on ``mode.divergence`` (``reverse_kl`` = KL(student‖teacher) by
default, as GKD; ``forward_kl``, ``jsd`` with ``mode.beta``) at the loss's temperature, with no
cross-entropy (the labels are the student's own samples) and never on prompt or observation tokens.

``mode.lambda`` is GKD's λ: each optimiser step is on-policy with probability λ (a draw seeded by
``seed`` and the step, so the same on every rank and after a resume), otherwise it is exactly
``mode=off_policy``'s step on ``data.trajectories`` (λ = 0 is off-policy training bit for bit).
Logged per on-policy step under ``on_policy/``: ``loss``, ``kl_<span>`` (``jsd_<span>``),
``loss_<span>``/``acc_<span>`` (the student's CE/accuracy on its own tokens), ``pass_rate``,
``valid_actions`` and ``episode_steps``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from deepcoder.agent.factory import build_agent
from deepcoder.agent.loop import Agent
from deepcoder.core.names import SPAN_INDEX
from deepcoder.losses import DIVERGENCES, SpanLoss
from deepcoder.problems import Problem, load_problems
from deepcoder.spans.labels import SpanStrategy
from deepcoder.training.distill_teacher import FrozenTeacher, LiveTeacher
from deepcoder.training.rollouts import collect_rollouts, render_rollouts, rollout_batch, rollout_metrics

MODES = ("off_policy", "on_policy")
ON_POLICY_KEYS = frozenset(
    {"name", "lambda", "episodes", "batch_size", "temperature", "max_steps", "max_new_tokens", "divergence", "beta"}
    | {"isolation", "problems"}
)
PREFIX = "on_policy"


class TrainingModule(Protocol):
    """What an on-policy step needs of :class:`~deepcoder.training.module.DistillationModule` (named
    structurally: the module imports this one)."""

    model: PreTrainedModel
    history: list[dict[str, float]]

    @property
    def global_step(self) -> int: ...

    @property
    def global_rank(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def _step(self, batch: dict[str, torch.Tensor], stage: str, loss: SpanLoss | None = None) -> torch.Tensor: ...

    def log_dict(self, dictionary: Mapping[str, Any], *, batch_size: int | None = None) -> None: ...


class OnPolicy:
    """The on-policy half of training: when a step is on-policy, and what such a step computes."""

    def __init__(
        self,
        mix: float,
        problems: Sequence[Problem],
        agent: Agent,
        loss: SpanLoss,
        tokenizer: PreTrainedTokenizerBase,
        span: SpanStrategy,
        max_length: int,
        episodes: int = 4,
        temperature: float = 1.0,
        max_new_tokens: int = 256,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"mode.lambda={mix}: the share of on-policy steps must be in [0, 1]")
        if episodes < 1:
            raise ValueError(f"mode.episodes={episodes}: the student needs at least 1 episode per on-policy step")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"mode.batch_size={batch_size}: play at least 1 episode at a time (null = mode.episodes)")
        if temperature < 0:
            raise ValueError(f"mode.temperature={temperature}: use 0 (greedy) or a positive sampling temperature")
        if max_new_tokens < 1:
            raise ValueError(f"mode.max_new_tokens={max_new_tokens}: a turn needs at least 1 token")
        if not problems:
            raise ValueError("mode.problems selects no problem: the student has nothing to roll out on")
        self.mix, self.problems, self.agent, self.loss = mix, list(problems), agent, loss
        self.tokenizer, self.span, self.max_length = tokenizer, span, max_length
        self.episodes, self.temperature, self.max_new_tokens, self.seed = episodes, temperature, max_new_tokens, seed
        self.batch_size = episodes if batch_size is None else batch_size

    def is_on_policy(self, step: int) -> bool:
        """Whether optimiser step ``step`` trains on the student's episodes (probability λ, seeded)."""
        if self.mix in (0.0, 1.0):
            return self.mix == 1.0
        return random.Random(f"on_policy:{self.seed}:{step}").random() < self.mix

    def draw(self, step: int, micro_batch: int, rank: int = 0) -> tuple[list[Problem], int]:
        """This micro-batch's problems (without repeats while there are enough) and the seed its episodes
        derive theirs from (a function of ``seed``, step, micro-batch and rank: the same after a resume)."""
        rng = random.Random(f"rollouts:{self.seed}:{step}:{micro_batch}:{rank}")
        if self.episodes <= len(self.problems):
            chosen = rng.sample(self.problems, self.episodes)
        else:
            chosen = rng.choices(self.problems, k=self.episodes)
        return chosen, rng.randrange(2**63)

    def training_step(self, module: TrainingModule, batch_idx: int) -> torch.Tensor:
        """Roll out, render, score against the teacher, log; the loss of this micro-batch."""
        problems, seed = self.draw(module.global_step, batch_idx, module.global_rank)
        records = collect_rollouts(
            module.model,
            self.tokenizer,
            problems,
            agent=self.agent,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            seed=seed,
            batch_size=self.batch_size,
            name=f"student@{module.global_step}",
        )
        examples = render_rollouts(records, self.tokenizer, self.span, self.max_length)
        batch = rollout_batch(examples, self.tokenizer.pad_token_id, module.device)
        loss = module._step(batch, PREFIX, self.loss)
        metrics = {f"{PREFIX}/{key}": value for key, value in rollout_metrics(records).items()}
        module.log_dict(metrics, batch_size=len(records))
        module.history[-1].update(metrics)  # the row _step just added for this step
        return loss

    def close(self) -> None:
        """Stop the sandbox of the rollouts."""
        self.agent.executor.close()


def on_policy_loss(loss: SpanLoss, divergence: str = "reverse_kl", beta: float = 0.5) -> SpanLoss:
    """``loss``'s span weights (and step decay, normalisation, temperature) on the divergence to the
    teacher, with no cross-entropy and observations untrained: the loss of an on-policy batch."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"mode.divergence={divergence!r}: use one of {', '.join(DIVERGENCES)}")
    if divergence == "jsd" and not 0.0 < beta < 1.0:
        raise ValueError(f"mode.beta={beta}: jsd needs 0 < beta < 1")
    weight = {span: float(loss.weights[SPAN_INDEX[span]]) for span in ("reason", "action", "answer")}
    return SpanLoss(
        f"{loss.name}/{PREFIX}",
        **weight,
        observation=0.0,
        step_decay=loss.step_decay,
        normalize=loss.normalize,
        divergence=divergence,
        temperature=loss.temperature,
        beta=beta,
        ce_weight=0.0,
    )


def build_mode(
    mode: Mapping[str, Any] | None,
    *,
    loss: SpanLoss,
    tokenizer: PreTrainedTokenizerBase,
    span: SpanStrategy,
    max_length: int,
    seed: int,
) -> OnPolicy | None:
    """The ``mode=`` config group: None for ``off_policy`` (or no mode), an :class:`OnPolicy` otherwise."""
    if mode is None:
        return None
    name = mode.get("name", "off_policy")
    if name not in MODES:
        raise ValueError(f"mode.name={name!r}: use mode=off_policy or mode=on_policy")
    if name == "off_policy":
        return None
    unknown = sorted(set(mode) - ON_POLICY_KEYS)
    if unknown:
        raise ValueError(f"mode=on_policy: unknown key(s) {unknown}; known: {sorted(ON_POLICY_KEYS)}")
    try:
        problems = load_problems(**dict(mode.get("problems") or {}))
    except (ValueError, OSError) as exc:
        raise ValueError(f"mode.problems: {exc}") from exc
    return OnPolicy(
        float(mode.get("lambda", 1.0)),
        problems,
        build_agent(max_steps=int(mode.get("max_steps", 4)), isolation=mode.get("isolation")),
        on_policy_loss(loss, str(mode.get("divergence", "reverse_kl")), float(mode.get("beta", 0.5))),
        tokenizer,
        span,
        max_length,
        episodes=int(mode.get("episodes", 4)),
        temperature=float(mode.get("temperature", 1.0)),
        max_new_tokens=int(mode.get("max_new_tokens", 256)),
        seed=seed,
        batch_size=None if mode.get("batch_size") is None else int(mode["batch_size"]),
    )


def on_policy_teacher(
    live: LiveTeacher | None, student: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, student_name: str
) -> FrozenTeacher:
    """The live teacher that scores the student's episodes (and, for kd losses, the off-policy steps)."""
    if live is None or not live.configured:
        raise ValueError(
            "mode=on_policy needs a live teacher to score the student's own tokens: set "
            "distill_teacher.name_or_path=… (a local model with the student's tokenizer, e.g. "
            "Qwen/Qwen2.5-7B-Instruct or a trained student/ directory)"
        )
    return live.load(student, tokenizer, student_name)
