"""The memory-efficient form of ``span_loss``, computed from hidden states.

Unsupervised positions are dropped *before* the output projection, and the projection and
loss run over chunks of supervised positions, so at most one chunk of ``[chunk_size, V]``
logits exists at a time (student and, for distillation, teacher). At Qwen's 151,936-token
vocabulary this is the difference between a few hundred MiB and tens of GiB per batch.

A custom autograd function computes each chunk's gradient already in the forward pass (the
per-token math is :func:`deepcoder.losses.token_losses`; cross-entropy and the divergences to a
live teacher use their closed-form gradients, a top-k teacher's coarsened divergence is
differentiated by autograd on the chunk's logits) and keeps only the gradients
of the inputs: ``[N, H]`` for the hidden states and ``[V, H]`` for the projection. Checkpointed
chunks would compute every chunk's logits twice (and a teacher's too); this costs the same three
matmuls as the naive path. It must agree with :func:`deepcoder.losses.span_loss` (tested, values
and gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepcoder.core.names import IGNORE_INDEX
from deepcoder.losses import (
    FORWARD_KL,
    OBSERVATION,
    Divergence,
    TopKLogprobs,
    divergence_between,
    jsd_and_mixture,
    local_normalizer,
    mix,
    normalizer_or_one,
    teacher_present,
    token_losses,
    token_weights,
    upcast,
)


@dataclass(frozen=True)
class ChunkedLoss:
    """The loss and its weighted sum before normalisation (detached), plus per supervised token
    (detached): its CE, span id, loss weight, whether argmax was right, (with a teacher) its
    divergence to the teacher, and (with a top-k teacher) whether the teacher had a distribution
    there (where not, and at observations, ``divergence`` holds the CE that replaced it)."""

    loss: torch.Tensor
    total: torch.Tensor
    token_loss: torch.Tensor
    span_ids: torch.Tensor
    weight: torch.Tensor
    correct: torch.Tensor
    divergence: torch.Tensor | None = None
    teacher_present: torch.Tensor | None = None


@dataclass(frozen=True)
class TeacherHead:
    """A live teacher as the loss sees it: its last hidden states (aligned with the labels, like the
    student's) and its output projection. Its logits are computed per chunk, without gradients."""

    hidden: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None = None


@dataclass(frozen=True)
class _Settings:
    chunk_size: int
    divergence: Divergence
    needs_grad: bool


def _chunk_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    token_weights: torch.Tensor,
    ce_only: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    teacher_topk: TopKLogprobs | None,
    settings: _Settings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One chunk's weighted loss sum, per-token CE and divergence, and the sum's gradient w.r.t. the
    logits (None when no gradient is needed). Positions in ``ce_only`` (observations) take CE even
    with a teacher. The per-token math is :func:`token_losses`, differentiated
    by autograd; cross-entropy alone takes its closed form ``w·(softmax − onehot)``, built in place
    (two ``[C, V]`` buffers instead of autograd's five)."""
    if teacher_logits is None and teacher_topk is None:
        log_p = F.log_softmax(logits, dim=-1)
        ce = -log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        total = (ce * token_weights).sum()
        if not settings.needs_grad:
            return total, ce, None, None
        grad = log_p.exp_().scatter_add_(-1, labels.unsqueeze(-1), -torch.ones_like(log_p[:, :1]))
        return total, ce, None, grad.mul_(token_weights.unsqueeze(-1))
    if teacher_logits is not None:
        return _closed_form_chunk_loss(logits, labels, token_weights, ce_only, teacher_logits, settings)
    with torch.enable_grad():
        z = logits.detach().requires_grad_(settings.needs_grad)
        ce, div = token_losses(z, labels, teacher_logits, teacher_topk, settings.divergence)
        if div is None:
            raise RuntimeError("token_losses gave no divergence although a teacher was passed")
        div = torch.where(ce_only, ce, div)
        total = (mix(ce, div, settings.divergence.ce_weight) * token_weights).sum()
    z_grad = torch.autograd.grad(total, z)[0] if settings.needs_grad else None
    return total.detach(), ce.detach(), div.detach(), z_grad


def _closed_form_chunk_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    token_weights: torch.Tensor,
    ce_only: torch.Tensor,
    teacher_logits: torch.Tensor,
    settings: _Settings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """:func:`_chunk_loss` with a live teacher, its gradient in closed form instead of by autograd
    (a few ``[C, V]`` buffers instead of some twenty for JSD). With ``s = softmax(z/τ)``:

    - forward KL(t‖s): ``(s − t)/τ``;
    - reverse KL(s‖t): ``s ⊙ (h − Σ s·h)/τ`` with ``h = log s − log t``;
    - JSD_β: the same with ``h = (1 − β)·(log s − log m)``, ``m = β·t + (1 − β)·s`` (∂JSD/∂s_j is
      exactly ``(1 − β)·log(s_j/m_j)``: the other terms cancel because ``β·t_j + (1 − β)·s_j = m_j``);

    then ``α·(softmax(z) − onehot) + (1 − α)·∂D`` per the CE weight α, and plain CE's gradient where
    the position takes CE (observations). Values are :func:`token_losses`'s, as before."""
    divergence = settings.divergence
    tau, kind = divergence.temperature, divergence.kind
    log_p = F.log_softmax(logits, dim=-1)  # the same operations as token_losses: the same values
    ce = -log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    log_s = log_p if tau == 1.0 else F.log_softmax(logits / tau, dim=-1)
    log_t = F.log_softmax(upcast(teacher_logits) / tau, dim=-1)
    log_m = None
    if kind == "jsd":
        value, log_m = jsd_and_mixture(log_t, log_s, divergence.beta)
    else:
        value = divergence_between(log_t, log_s, kind, divergence.beta)
    div = torch.where(ce_only, ce, value)
    alpha = divergence.ce_weight
    total = (mix(ce, div, alpha) * token_weights).sum()
    if not settings.needs_grad:
        return total, ce, div, None
    s = log_s.exp()
    if kind == "forward_kl":
        grad = s.sub_(log_t.exp_())
    else:
        h = log_s - (log_t if log_m is None else log_m)
        if kind == "jsd":
            h.mul_(1 - divergence.beta)
        sh = torch.where(s > 0, s * h, torch.zeros_like(s))  # 0·log 0 = 0 (masked vocabulary rows)
        del h
        grad = sh.sub_(s.mul_(sh.sum(-1, keepdim=True)))
    del s, log_s, log_t, log_m
    if tau != 1.0:
        grad.div_(tau)
    takes_ce = bool(ce_only.any())
    if alpha or takes_ce:
        ce_grad = log_p.exp_().scatter_add_(-1, labels.unsqueeze(-1), -torch.ones_like(log_p[:, :1]))
        if alpha:
            grad.mul_(1 - alpha).add_(ce_grad, alpha=alpha)
        if takes_ce:
            grad[ce_only] = ce_grad[ce_only]
    return total, ce, div, grad.mul_(token_weights.unsqueeze(-1))


class _ChunkedProjectionLoss(torch.autograd.Function):
    """``Σ_t w_t·ℓ_t`` over chunks of ``hidden @ weight.T + bias``; gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, token_weights, ce_only, teacher, settings):
        needs = settings.needs_grad
        grad_hidden = torch.zeros_like(hidden) if needs and ctx.needs_input_grad[0] else None
        low_precision = weight.dtype in (torch.float16, torch.bfloat16)
        accumulate_dtype = torch.float32 if low_precision else weight.dtype
        grad_weight = (
            torch.zeros(weight.shape, dtype=accumulate_dtype, device=weight.device)
            if needs and ctx.needs_input_grad[1]
            else None
        )
        grad_bias = (
            torch.zeros(bias.shape, dtype=accumulate_dtype, device=bias.device)
            if needs and bias is not None and ctx.needs_input_grad[2]
            else None
        )
        total = torch.zeros((), dtype=upcast(hidden).dtype, device=hidden.device)
        ce_parts, correct_parts, div_parts = [], [], []
        for start in range(0, labels.shape[0], settings.chunk_size):
            part = slice(start, start + settings.chunk_size)
            h = hidden[part]
            logits = upcast(F.linear(h, weight, bias))
            teacher_logits = teacher_topk = None
            if isinstance(teacher, TeacherHead):
                teacher_logits = F.linear(teacher.hidden[part], teacher.weight, teacher.bias)
            elif teacher is not None:
                teacher_topk = TopKLogprobs(teacher.ids[part], teacher.logprobs[part])
            chunk_total, ce, div, g = _chunk_loss(
                logits, labels[part], token_weights[part], ce_only[part], teacher_logits, teacher_topk, settings
            )
            if g is not None:
                g = g.to(weight.dtype)  # as autograd would: the upcast's backward casts back
                if grad_hidden is not None:
                    grad_hidden[part] = g @ weight
                if grad_weight is not None:
                    if low_precision:
                        grad_weight += (g.T @ h).to(accumulate_dtype)
                    else:
                        grad_weight.addmm_(g.T, h.to(accumulate_dtype))
                if grad_bias is not None:
                    grad_bias += g.sum(0).to(accumulate_dtype)
            total += chunk_total
            ce_parts.append(ce)
            correct_parts.append(logits.argmax(-1) == labels[part])
            if div is not None:
                div_parts.append(div)
        ctx.grads = (
            grad_hidden,
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
        )
        empty = hidden.new_zeros(0, dtype=total.dtype)
        ce_all = torch.cat(ce_parts) if ce_parts else empty
        correct_all = torch.cat(correct_parts) if correct_parts else empty.bool()
        div_all = torch.cat(div_parts) if div_parts else empty
        ctx.mark_non_differentiable(ce_all, correct_all, div_all)
        return total, ce_all, correct_all, div_all

    @staticmethod
    def backward(ctx, grad_total, *unused):
        if ctx.grads is None:
            raise RuntimeError("the chunked loss computes its gradients once: backward twice is not supported")
        grads, ctx.grads = ctx.grads, None
        scaled = tuple(None if g is None else g.mul_(grad_total.to(g.dtype)) for g in grads)
        return (*scaled, None, None, None, None, None)


def chunked_span_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    span_ids: torch.Tensor,
    weights: torch.Tensor,
    bias: torch.Tensor | None = None,
    chunk_size: int = 1024,
    num_tokens: int | torch.Tensor | None = None,
    *,
    teacher: TeacherHead | TopKLogprobs | None = None,
    divergence: Divergence = FORWARD_KL,
    step_ids: torch.Tensor | None = None,
    step_decay: float = 1.0,
    normalize: str = "tokens",
) -> ChunkedLoss:
    """``Σ_t w_t·ℓ_t / N`` from ``hidden`` ``[B, T, H]`` aligned with ``labels`` ``[B, T]``.

    ``weight``/``bias`` are the output projection (``lm_head``). Without ``teacher``, ``ℓ`` is
    cross-entropy; with one (a :class:`TeacherHead` or :class:`~deepcoder.losses.TopKLogprobs`
    ``[B, T, k]``, aligned with the labels) it is the ``divergence``, mixed with CE by its ``ce_weight``,
    exactly as in :func:`~deepcoder.losses.span_loss`, and the same weights ``w_t`` (span weight ×
    ``step_decay^step``) and normalisation: ``N`` is the supervised-token count (``normalize="tokens"``)
    or their weight sum (``"weights"``), or ``num_tokens``. The teacher is a constant (no gradient).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    mask = labels != IGNORE_INDEX
    kept_hidden, kept_labels, kept_spans = hidden[mask], labels[mask], span_ids[mask]
    kept_teacher: TeacherHead | TopKLogprobs | None = None
    if isinstance(teacher, TeacherHead):
        if teacher.weight.shape[0] != weight.shape[0]:
            raise ValueError(
                f"teacher projection has {teacher.weight.shape[0]} rows, the student's "
                f"{weight.shape[0]}: the vocabularies must match"
            )
        kept_teacher = TeacherHead(
            teacher.hidden.detach()[mask],
            teacher.weight.detach(),
            None if teacher.bias is None else teacher.bias.detach(),
        )
    elif teacher is not None:
        if teacher.ids.shape[:-1] != labels.shape or teacher.logprobs.shape != teacher.ids.shape:
            raise ValueError(
                f"top-k ids {tuple(teacher.ids.shape)} / logprobs {tuple(teacher.logprobs.shape)} "
                f"must be labels {tuple(labels.shape)} × k"
            )
        kept_teacher = TopKLogprobs(teacher.ids[mask], teacher.logprobs.detach()[mask])
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    settings = _Settings(chunk_size, divergence, needs_grad)
    all_weights = token_weights(labels, span_ids, upcast(weights.to(device=hidden.device)), step_ids, step_decay)
    kept_weights = all_weights[mask]
    total, ce, correct, div = _ChunkedProjectionLoss.apply(
        kept_hidden, weight, bias, kept_labels, kept_weights, kept_spans == OBSERVATION, kept_teacher, settings
    )
    if num_tokens is None:
        norm = local_normalizer(labels, all_weights, normalize)
    else:
        norm = torch.as_tensor(num_tokens, device=hidden.device)
    present = teacher_present(kept_teacher) if isinstance(kept_teacher, TopKLogprobs) else None
    return ChunkedLoss(
        total / normalizer_or_one(norm),
        total.detach(),
        ce,
        kept_spans,
        kept_weights.detach(),
        correct,
        div if kept_teacher is not None else None,
        present,
    )
