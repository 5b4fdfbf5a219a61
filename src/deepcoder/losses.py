"""The span-aware loss family: one reference implementation, configured per ``loss=`` option.

``span_loss`` is the reference form of every loss (the README's contract): per-token cross-entropy to the
labels, or a divergence to a teacher's distribution, weighted by the token's span (and, with
``step_decay``, its agent step) and divided by the number of supervised tokens (or, with
``normalize="weights"``, by the sum of their weights). With every weight 1 and no teacher it is
exactly the ``sft`` loss, so ``sad`` is a strict generalisation of the baseline. Observation
tokens, when supervised (``loss.observation``), always take CE. Computation is in fp32 (or float64).

Conventions (P = teacher, S = student, both softened by the temperature τ, no τ² factor, as
in TRL's GKD trainer): ``forward_kl`` = KL(P‖S); ``reverse_kl`` = KL(S‖P); ``jsd`` is the
generalised Jensen–Shannon divergence of GKD (Agarwal et al., 2024),
``β·KL(P‖M) + (1−β)·KL(S‖M)`` with ``M = β·P + (1−β)·S`` (β = 0.5: the symmetric JSD).
With ``ce_weight`` α the per-token loss is ``α·CE + (1−α)·D`` (CE at τ = 1).

A sparse teacher (:class:`TopKLogprobs`: its k most likely ids and their log-probabilities,
as an OpenAI-compatible server returns them) is compared over k + 1 outcomes: the k tokens and
"any other token": for the teacher the mass its top-k leave over (1 − Σ top-k; below
``TAIL_ROUNDING`` it is rounding and taken as 0), for the student its mass on all other tokens.
That is the exact divergence of the two distributions coarsened to those outcomes (a lower bound
of the full one), needs no guess about how the teacher spreads its tail, and still makes the
student pay for mass outside the teacher's top-k. A position where nothing was returned (all k
logprobs ``-inf``: a token the stored logprobs do not cover, such as an inlined reasoning
channel) has no teacher distribution; there the divergence is replaced by the cross-entropy to
the label, the teacher's own sampled token (forward KL to that one-hot is exactly CE), so every
supervised token still trains and no made-up distribution enters the loss. Confident tokens
(top-k mass ≥ 1 − 1e-6, the normal case for code with top-20) stay finite: ``forward_kl`` and
``jsd`` are finite by construction (the student's mass is never 0; JSD compares with the
mixture), and ``reverse_kl`` = KL(S‖P), which would be infinite where the teacher's rest rounds
to 0 and the student's does not, takes the teacher's rest as at least ``TAIL_ROUNDING``
(renormalised): a large, finite penalty for student mass outside the teacher's top-k.
A dense teacher with exact zeros (masked vocabulary rows) still gives ``reverse_kl`` = ∞ there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX, SPAN_NAMES, TRAINED_SPANS

log = logging.getLogger(__name__)

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")
NORMALIZATIONS = ("tokens", "weights")  # loss.normalize: N = supervised tokens, or the sum of their weights
OBSERVATION = SPAN_INDEX["observation"]  # supervised only by CE: no teacher produced these tokens
TAIL_ROUNDING = 1e-6  # a top-k teacher's leftover mass below this is the rounding of its logprobs: 0


@dataclass(frozen=True)
class Divergence:
    """How a distillation loss compares student and teacher, checked once here.

    ``kind``: ``forward_kl`` | ``reverse_kl`` | ``jsd``; ``temperature`` τ > 0 softens both
    distributions; ``beta`` is JSD's β in (0, 1) (unused otherwise); ``ce_weight`` α in [0, 1]
    makes the per-token loss ``α·CE + (1−α)·D``. The loss functions and the chunked path take it
    whole, so the four options are declared and validated in one place.
    """

    kind: str = "forward_kl"
    temperature: float = 1.0
    beta: float = 0.5
    ce_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {self.kind!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.kind == "jsd" and not 0.0 < self.beta < 1.0:
            raise ValueError(f"jsd needs 0 < beta < 1, got {self.beta}")
        if not 0.0 <= self.ce_weight <= 1.0:
            raise ValueError(f"ce_weight must be in [0, 1], got {self.ce_weight}")


FORWARD_KL = Divergence()  # the default settings: KL(teacher ‖ student), τ = 1, no CE mixed in


class TopKLogprobs(NamedTuple):
    """A teacher's top-k per position: ``ids`` and ``logprobs`` ``[..., k]``, aligned with the labels.

    Entries a server did not return (fewer than k) carry ``logprob = -inf`` and are ignored; a
    position with all k at ``-inf`` has no teacher (the loss takes CE there).
    """

    ids: torch.Tensor
    logprobs: torch.Tensor


def token_losses(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    teacher_topk: TopKLogprobs | None = None,
    divergence: Divergence = FORWARD_KL,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cross-entropy to ``labels`` and divergence to the teacher (None without one), per position.

    Not masked: the caller keeps supervised positions only. Shared by :func:`span_loss` and the
    chunked training path, so both compute the same numbers.
    """
    log_p = F.log_softmax(upcast(student_logits), dim=-1)
    ce = -log_p.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    temperature, kind, beta = divergence.temperature, divergence.kind, divergence.beta
    if teacher_topk is not None:
        if temperature != 1.0:
            raise ValueError(
                f"temperature {temperature}: top-k teacher logprobs only support temperature 1 "
                "(softening needs the teacher's whole distribution)"
            )
        log_t, log_s = _coarsened(log_p, teacher_topk, floor_tail=kind == "reverse_kl")
        present = teacher_present(teacher_topk)
        # Where no teacher is present compare the student with itself (exactly 0, finite, no gradient),
        # then take CE instead: neither an inf nor a NaN can reach the gradient through torch.where.
        log_t = torch.where(present.unsqueeze(-1), log_t, log_s.detach())
        return ce, torch.where(present, divergence_between(log_t, log_s, kind, beta), ce)
    if teacher_logits is None:
        return ce, None
    log_s = log_p if temperature == 1.0 else F.log_softmax(upcast(student_logits) / temperature, dim=-1)
    log_t = F.log_softmax(upcast(teacher_logits) / temperature, dim=-1)
    return ce, divergence_between(log_t, log_s, kind, beta)


def teacher_present(topk: TopKLogprobs) -> torch.Tensor:
    """Positions where a top-k teacher returned anything (at least one finite logprob)."""
    return (topk.logprobs > float("-inf")).any(-1)


def upcast(x: torch.Tensor) -> torch.Tensor:
    """At least fp32: bf16/fp16 logits are upcast, float64 stays float64 (for exact checks)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def divergence_between(log_t: torch.Tensor, log_s: torch.Tensor, divergence: str, beta: float) -> torch.Tensor:
    """The named divergence between teacher and student log-distributions over the last dimension."""
    if divergence == "forward_kl":
        return _kl(log_t, log_s)
    if divergence == "reverse_kl":
        return _kl(log_s, log_t)
    return jsd_and_mixture(log_t, log_s, beta)[0]


def jsd_and_mixture(log_t: torch.Tensor, log_s: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """JSD_β = β·KL(P‖M) + (1−β)·KL(S‖M), and log M (the closed-form gradient needs it too)."""
    mixture = _log_mixture(log_t, log_s, beta)
    return beta * _kl(log_t, mixture) + (1 - beta) * _kl(log_s, mixture), mixture


def _log_mixture(log_t: torch.Tensor, log_s: torch.Tensor, beta: float) -> torch.Tensor:
    """log(β·P + (1−β)·S), written around the larger of the two so that it is exactly ``log_s`` where
    ``log_t == log_s`` (identical distributions give a JSD of exactly 0) and never overflows."""
    empty = (log_t == float("-inf")) & (log_s == float("-inf"))
    d = torch.where(empty, torch.zeros_like(log_t), log_t - log_s)
    below = log_s + torch.log1p(beta * torch.expm1(d.clamp(max=0)))  # right where P ≤ S
    above = log_t + torch.log1p((1 - beta) * torch.expm1((-d).clamp(max=0)))  # right where P > S
    mixture = torch.where(d <= 0, below, above)
    return torch.where(empty, torch.full_like(mixture, float("-inf")), mixture)


def _coarsened(
    log_s_full: torch.Tensor, topk: TopKLogprobs, floor_tail: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher and student log-probabilities over the k top-k tokens plus the rest, ``[..., k+1]``.

    ``floor_tail`` (reverse KL): the teacher's rest is at least ``TAIL_ROUNDING``, the mass its
    rounded logprobs can hide, and its k + 1 outcomes are renormalised (a rounding sum above 1 too).
    KL(S‖P) is then finite where a confident teacher's top-k round to all its mass, and still
    charges the student ``log(s_rest / 1e-6)`` per unit of mass it puts outside them.
    """
    ids, log_t = topk.ids, topk.logprobs.to(log_s_full.dtype)
    if ids.shape != log_t.shape or ids.shape[:-1] != log_s_full.shape[:-1]:
        raise ValueError(
            f"top-k ids {tuple(ids.shape)} and logprobs {tuple(log_t.shape)} must both be "
            f"positions {tuple(log_s_full.shape[:-1])} × k"
        )
    vocab = log_s_full.shape[-1]
    returned = log_t > float("-inf")
    if ((ids < 0) | (ids >= vocab))[returned].any():
        raise ValueError(f"top-k ids must lie in the student's vocabulary [0, {vocab})")
    ids = ids.clamp(0, vocab - 1).long()
    log_s = torch.where(returned, log_s_full.gather(-1, ids), float("-inf"))
    # The student's rest is summed over the other tokens (no 1 − Σ cancellation, never rounds to 0).
    in_top_k = torch.zeros_like(log_s_full).scatter_add_(-1, ids, returned.to(log_s_full.dtype)) > 0
    student_rest = torch.logsumexp(log_s_full.masked_fill(in_top_k, float("-inf")), dim=-1, keepdim=True)
    # The teacher's rest is all that is known of it: 1 − Σ top-k, with rounding noise counted as 0.
    teacher_mass = torch.logsumexp(log_t, dim=-1, keepdim=True)
    if floor_tail:
        teacher_rest = _log1mexp(teacher_mass).clamp(min=math.log(TAIL_ROUNDING))
        teacher = torch.cat([log_t, teacher_rest], -1)
        return teacher - torch.logsumexp(teacher, dim=-1, keepdim=True), torch.cat([log_s, student_rest], -1)
    teacher_rest = torch.where(
        teacher_mass < math.log1p(-TAIL_ROUNDING), _log1mexp(teacher_mass), torch.full_like(teacher_mass, float("-inf"))
    )
    return torch.cat([log_t, teacher_rest], -1), torch.cat([log_s, student_rest], -1)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x ≤ 0, stable, and -inf (with a zero, not NaN, gradient) where x ≥ 0."""
    inside = x < 0
    safe = torch.where(inside, x, torch.full_like(x, -1.0))
    value = torch.where(safe > -math.log(2), torch.log(-torch.expm1(safe)), torch.log1p(-torch.exp(safe)))
    return torch.where(inside, value, torch.full_like(x, float("-inf")))


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) over the last dimension; exact 0 for identical inputs, and 0·log 0 = 0 for entries
    masked to ``-inf`` (e.g. padded vocabulary rows)."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(-1)


def mix(ce: torch.Tensor, divergence: torch.Tensor | None, ce_weight: float) -> torch.Tensor:
    """The per-token training loss: CE alone, or ``α·CE + (1−α)·D`` with a teacher."""
    if divergence is None:
        return ce
    return divergence if ce_weight == 0 else ce_weight * ce + (1 - ce_weight) * divergence


def per_token_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    teacher_topk: TopKLogprobs | None = None,
    divergence: Divergence = FORWARD_KL,
    ce_only: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unweighted loss of every position ``[B, T]``; positions with label ``-100`` are 0, and
    positions in ``ce_only`` (observations) take CE even with a teacher."""
    mask = labels != IGNORE_INDEX
    if teacher_logits is not None and teacher_topk is not None:
        raise ValueError("give the teacher as full logits or as top-k logprobs, not both")
    if teacher_logits is not None:
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(
                f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                f"{tuple(student_logits.shape)} differ: the vocabularies must match"
            )
        # Unsupervised positions may hold anything (padding, NaN): zero them so no NaN reaches a gradient.
        teacher_logits = torch.where(
            mask.unsqueeze(-1), upcast(teacher_logits), torch.zeros((), device=teacher_logits.device)
        )
    if teacher_topk is not None:
        unsupervised = ~mask.unsqueeze(-1)
        teacher_topk = TopKLogprobs(
            teacher_topk.ids.masked_fill(unsupervised, 0),
            teacher_topk.logprobs.masked_fill(unsupervised, float("-inf")),
        )
    ce, div = token_losses(student_logits, labels, teacher_logits, teacher_topk, divergence)
    token = mix(ce, div, divergence.ce_weight)
    if ce_only is not None and div is not None:
        token = torch.where(ce_only, ce, token)
    return torch.where(mask, token, torch.zeros_like(token))  # NaN/inf at unsupervised positions cannot leak


def span_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    span_ids: torch.Tensor,
    weights: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    num_tokens: int | torch.Tensor | None = None,
    teacher_topk: TopKLogprobs | None = None,
    ce_weight: float = 0.0,
    *,
    step_ids: torch.Tensor | None = None,
    step_decay: float = 1.0,
    normalize: str = "tokens",
) -> torch.Tensor:
    """``Σ_t w_t·ℓ_t / N`` with ``w_t = weights[span_t]·step_decay^step_t`` (``step_ids``: each token's
    agent step, see :func:`token_weights`) and ``N`` the supervised-token count (``normalize="tokens"``)
    or ``Σ_t w_t`` (``"weights"``), or the global ``num_tokens`` given for either.

    An all-masked batch gives 0 with a gradient. Passing the global normaliser of an accumulated
    batch as ``num_tokens`` makes gradient accumulation exact. Observation tokens (weighted by
    ``loss.observation``) always take CE: a teacher never produced them.
    """
    settings = Divergence(divergence, temperature, beta, ce_weight)
    token = per_token_loss(student_logits, labels, teacher_logits, teacher_topk, settings, span_ids == OBSERVATION)
    return reduce_token_loss(
        token, labels, span_ids, weights, num_tokens, step_ids=step_ids, step_decay=step_decay, normalize=normalize
    )


def reduce_token_loss(
    token: torch.Tensor,
    labels: torch.Tensor,
    span_ids: torch.Tensor,
    weights: torch.Tensor,
    num_tokens: int | float | torch.Tensor | None = None,
    *,
    step_ids: torch.Tensor | None = None,
    step_decay: float = 1.0,
    normalize: str = "tokens",
) -> torch.Tensor:
    """The weighting and normalisation of :func:`span_loss`, applied to per-token losses."""
    weight = token_weights(labels, span_ids, weights, step_ids, step_decay).to(token.dtype)
    if num_tokens is None:
        norm = local_normalizer(labels, weight, normalize)
    else:
        norm = torch.as_tensor(num_tokens, device=token.device)
    return (weight * token).sum() / normalizer_or_one(norm)


def token_weights(
    labels: torch.Tensor,
    span_ids: torch.Tensor,
    weights: torch.Tensor,
    step_ids: torch.Tensor | None = None,
    step_decay: float = 1.0,
) -> torch.Tensor:
    """Each position's loss weight: ``weights[span]·step_decay^step`` where supervised, else 0.

    ``step_ids`` is each token's agent step (``-1`` outside any step: weighted as step 0);
    ``step_decay`` γ < 1 weights a trajectory's first steps most, γ > 1 its last ones.
    """
    if step_ids is None and step_decay != 1.0:
        raise ValueError(
            f"loss.step_decay={step_decay} needs each token's step_ids (the data module's batches have them)"
        )
    dtype = torch.promote_types(weights.dtype, torch.float32)
    weight = weights.to(device=labels.device, dtype=dtype)[span_ids] * (labels != IGNORE_INDEX)
    if step_ids is not None and step_decay != 1.0:
        weight = weight * torch.full_like(weight, step_decay) ** step_ids.clamp(min=0).to(dtype)
    return weight


def local_normalizer(labels: torch.Tensor, weight: torch.Tensor, normalize: str) -> torch.Tensor:
    """``N`` of these positions alone: their supervised-token count, or the sum of their weights."""
    check_normalize(normalize)
    return (labels != IGNORE_INDEX).sum() if normalize == "tokens" else weight.sum()


def normalizer_or_one(norm: torch.Tensor) -> torch.Tensor:
    """``N``, or 1 where it is 0 (an all-masked batch: loss 0, with a gradient)."""
    return torch.where(norm > 0, norm, torch.ones_like(norm))


def check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"loss.normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


class SpanLoss:
    """A configured member of the family: span weights, and for ``kd``/``sad_kd`` the divergence.

    ``divergence=None`` is cross-entropy to the labels (``sft``, ``sad``); a divergence name makes
    it a distillation loss that needs the teacher's distribution: a live local teacher (the
    ``distill_teacher=`` group) or top-k logprobs in the batches.
    ``answer`` defaults to the action weight: a final answer is an action on the environment.
    ``observation`` > 0 supervises the environment's observation tokens with CE at that weight
    (ActObs-style; never a divergence: no teacher produced them). ``step_decay`` γ weights agent
    step s by γ^s. ``normalize``: ``tokens`` divides by the supervised-token count (Σw·ℓ/N),
    ``weights`` by the sum of their weights (Σw·ℓ/Σw: every loss trains at the same effective rate).
    """

    def __init__(
        self,
        name: str = "sad",
        reason: float = 1.0,
        action: float = 1.0,
        answer: float | None = None,
        observation: float = 0.0,
        step_decay: float = 1.0,
        normalize: str = "tokens",
        divergence: str | None = None,
        temperature: float = 1.0,
        beta: float = 0.5,
        ce_weight: float = 0.0,
    ) -> None:
        self.name = name
        span_weights: Mapping[str, float] = {
            "reason": reason,
            "action": action,
            "answer": action if answer is None else answer,
            "observation": observation,
        }
        if any(w < 0 for w in span_weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {dict(span_weights)}")
        if not step_decay > 0:
            raise ValueError(f"loss.step_decay must be > 0 (1 = every step alike), got {step_decay}")
        check_normalize(normalize)
        self.weights = torch.zeros(len(SPAN_NAMES))
        for span, weight in span_weights.items():
            self.weights[SPAN_INDEX[span]] = weight
        self.step_decay, self.normalize = step_decay, normalize
        # observation tokens get labels only when they are trained: at 0 the loss is exactly the old one
        self.supervised_spans = TRAINED_SPANS | ({"observation"} if observation > 0 else set())
        # the flat keys are the config schema (loss.divergence, loss.temperature, …); one object inside
        self.distillation = None if divergence is None else Divergence(divergence, temperature, beta, ce_weight)
        if self.distillation is not None and observation > 0:
            log.info(
                "loss=%s: observation tokens (loss.observation=%s) train on cross-entropy, not %s: "
                "no teacher produced them",
                name,
                observation,
                divergence,
            )

    @property
    def distills(self) -> bool:
        """Whether the loss compares the student to a teacher's distribution (``kd``, ``sad_kd``)."""
        return self.distillation is not None

    @property
    def divergence(self) -> str | None:
        """The divergence's name, None for a cross-entropy loss."""
        return None if self.distillation is None else self.distillation.kind

    @property
    def temperature(self) -> float:
        return 1.0 if self.distillation is None else self.distillation.temperature

    def __call__(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        span_ids: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        num_tokens: int | float | None = None,
        teacher_topk: TopKLogprobs | None = None,
        step_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.distills and teacher_logits is None and teacher_topk is None:
            raise ValueError(f"loss {self.name!r} ({self.divergence}) needs teacher logits or top-k logprobs")
        if not self.distills and (teacher_logits is not None or teacher_topk is not None):
            raise ValueError(f"loss {self.name!r} is cross-entropy: it takes no teacher")
        divergence = self.distillation or FORWARD_KL
        token = per_token_loss(logits, labels, teacher_logits, teacher_topk, divergence, span_ids == OBSERVATION)
        return reduce_token_loss(
            token,
            labels,
            span_ids,
            self.weights,
            num_tokens,
            step_ids=step_ids,
            step_decay=self.step_decay,
            normalize=self.normalize,
        )

    def __repr__(self) -> str:
        weights = {name: float(self.weights[SPAN_INDEX[name]]) for name in sorted(self.supervised_spans)}
        extra = f", divergence={self.divergence!r}" if self.distills else ""
        return f"SpanLoss(name={self.name!r}, weights={weights}{extra})"
