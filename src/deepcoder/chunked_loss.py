"""The memory-efficient form of ``span_loss`` (cross-entropy), computed from hidden states.

Unsupervised positions are dropped *before* the output projection, and the projection and
loss run over chunks of supervised positions under activation checkpointing, so at most one
chunk of ``[chunk_size, V]`` fp32 logits exists at a time, in the forward and the backward
pass. At Qwen's 151,936-token vocabulary this is the difference between a few hundred MiB
and tens of GiB per batch. It must agree with :func:`deepcoder.losses.span_loss` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from deepcoder.losses import IGNORE_INDEX


@dataclass(frozen=True)
class ChunkedLoss:
    """The loss, plus per supervised token (detached): its CE, span id and whether argmax was right."""

    loss: torch.Tensor
    token_loss: torch.Tensor
    span_ids: torch.Tensor
    correct: torch.Tensor


def _chunk(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor,
           token_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits = F.linear(hidden, weight, bias).float()
    ce = F.cross_entropy(logits, labels, reduction="none")
    return (ce * token_weights).sum(), ce.detach(), (logits.argmax(-1) == labels).detach()


def chunked_span_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, span_ids: torch.Tensor,
                      weights: torch.Tensor, bias: torch.Tensor | None = None, chunk_size: int = 1024,
                      num_tokens: int | torch.Tensor | None = None) -> ChunkedLoss:
    """``Σ_t w[span_t]·CE_t / N`` from ``hidden`` ``[B, T, H]`` aligned with ``labels`` ``[B, T]``.

    ``weight``/``bias`` are the output projection (``lm_head``). Same normalisation as
    :func:`~deepcoder.losses.span_loss`: ``N`` is the supervised-token count or ``num_tokens``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    mask = labels != IGNORE_INDEX
    kept_hidden, kept_labels, kept_spans = hidden[mask], labels[mask], span_ids[mask]
    token_weights = weights.to(device=hidden.device, dtype=torch.float32)[kept_spans]
    total = hidden.sum() * 0.0  # keeps a gradient path when nothing is supervised
    losses, correct = [], []
    for start in range(0, kept_labels.shape[0], chunk_size):
        part = slice(start, start + chunk_size)
        summed, ce, right = checkpoint(_chunk, kept_hidden[part], weight, bias, kept_labels[part],
                                       token_weights[part], use_reentrant=False)
        total = total + summed
        losses.append(ce)
        correct.append(right)
    count = mask.sum() if num_tokens is None else torch.as_tensor(num_tokens, device=hidden.device)
    empty = hidden.new_zeros(0, dtype=torch.float32)
    return ChunkedLoss(total / count.clamp(min=1), torch.cat(losses) if losses else empty, kept_spans,
                       torch.cat(correct) if correct else empty.bool())
