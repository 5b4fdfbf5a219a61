"""The span-aware loss family: one reference implementation, configured per ``loss=`` option.

``span_loss`` is the reference form of every loss (DESIGN.md): per-token cross-entropy to the
labels, or a divergence to a teacher's distribution, weighted by the token's span and divided
by the number of supervised tokens. With every weight 1 and no teacher it is exactly the
``sft`` loss, so ``sad`` is a strict generalisation of the baseline. Computation is in fp32.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

from deepcoder.data.spans import SPAN_INDEX, SPAN_NAMES, TRAINED_SPANS

IGNORE_INDEX = -100
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def per_token_loss(student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None,
                   divergence: str = "forward_kl", temperature: float = 1.0, beta: float = 0.5) -> torch.Tensor:
    """Unweighted loss of every position ``[B, T]``; positions with label ``-100`` are 0."""
    mask = labels != IGNORE_INDEX
    logits = student_logits.float()
    if teacher_logits is None:
        flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="none")
        return flat.view(labels.shape)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                         f"{tuple(student_logits.shape)} differ: the vocabularies must match")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    log_s = F.log_softmax(logits / temperature, dim=-1)
    # Unsupervised positions may hold anything (padding, NaN): zero them so no NaN reaches a gradient.
    teacher = torch.where(mask.unsqueeze(-1), teacher_logits.float(), torch.zeros((), device=logits.device))
    log_t = F.log_softmax(teacher / temperature, dim=-1)
    if divergence == "forward_kl":
        token = _kl(log_t, log_s)
    elif divergence == "reverse_kl":
        token = _kl(log_s, log_t)
    else:
        if not 0.0 < beta < 1.0:
            raise ValueError(f"jsd needs 0 < beta < 1, got {beta}")
        mixture = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log(1 - beta)]), dim=0)
        token = beta * _kl(log_t, mixture) + (1 - beta) * _kl(log_s, mixture)
    return torch.where(mask, token, torch.zeros_like(token))  # NaN/inf at unsupervised positions cannot leak


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) over the last dimension; exact 0 for identical inputs, and 0·log 0 = 0 for entries
    masked to ``-inf`` (e.g. padded vocabulary rows)."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(-1)


def span_loss(student_logits: torch.Tensor, labels: torch.Tensor, span_ids: torch.Tensor, weights: torch.Tensor,
              teacher_logits: torch.Tensor | None = None, divergence: str = "forward_kl",
              temperature: float = 1.0, beta: float = 0.5, num_tokens: int | torch.Tensor | None = None
              ) -> torch.Tensor:
    """``Σ_t w[span_t]·ℓ_t / N`` with ``N`` the supervised-token count (or the global ``num_tokens``).

    An all-masked batch gives 0 with a gradient. Passing the global token count of an
    accumulated batch as ``num_tokens`` makes gradient accumulation exact.
    """
    token = per_token_loss(student_logits, labels, teacher_logits, divergence, temperature, beta)
    return reduce_token_loss(token, labels, span_ids, weights, num_tokens)


def reduce_token_loss(token: torch.Tensor, labels: torch.Tensor, span_ids: torch.Tensor, weights: torch.Tensor,
                      num_tokens: int | torch.Tensor | None = None) -> torch.Tensor:
    """The weighting and normalisation of :func:`span_loss`, applied to per-token losses."""
    mask = labels != IGNORE_INDEX
    weight = weights.to(device=token.device, dtype=token.dtype)[span_ids] * mask
    count = mask.sum() if num_tokens is None else torch.as_tensor(num_tokens, device=token.device)
    return (weight * token).sum() / count.clamp(min=1)


class SpanLoss:
    """A configured member of the family (``sft``, ``sad``): span weights and divergence settings.

    ``answer`` defaults to the action weight: a final answer is an action on the environment.
    """

    def __init__(self, name: str = "sad", reason: float = 1.0, action: float = 1.0, answer: float | None = None,
                 divergence: str = "forward_kl", temperature: float = 1.0, beta: float = 0.5) -> None:
        self.name = name
        span_weights: Mapping[str, float] = {"reason": reason, "action": action,
                                             "answer": action if answer is None else answer}
        if any(w < 0 for w in span_weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {dict(span_weights)}")
        self.weights = torch.zeros(len(SPAN_NAMES))
        for span in TRAINED_SPANS:
            self.weights[SPAN_INDEX[span]] = span_weights[span]
        self.divergence, self.temperature, self.beta = divergence, temperature, beta

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, span_ids: torch.Tensor,
                 teacher_logits: torch.Tensor | None = None, num_tokens: int | None = None) -> torch.Tensor:
        return span_loss(logits, labels, span_ids, self.weights, teacher_logits, self.divergence,
                         self.temperature, self.beta, num_tokens)

    def __repr__(self) -> str:
        weights = {name: float(self.weights[SPAN_INDEX[name]]) for name in sorted(TRAINED_SPANS)}
        return f"SpanLoss(name={self.name!r}, weights={weights})"
