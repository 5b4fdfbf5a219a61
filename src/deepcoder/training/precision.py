"""Training precision: fp32 master weights unless 16-bit weights are asked for explicitly.

``bf16-mixed`` (what ``trainer=gpu``/``auto`` use on a GPU) only autocasts the matmuls: the
optimiser updates whatever dtype the parameters have. Parameters loaded in bf16 would keep bf16
weights *and* AdamW state, and an update smaller than half a bf16 step of the weight (~0.4 % of
it) is rounded away: at lr 1e-5 RMSNorm gains near 1.0 never move. So trainable parameters are
made fp32 before training (frozen ones, e.g. a LoRA run's base weights, stay as loaded).

``bf16-true``/``16-true`` (weights, gradients and AdamW state all in 16 bits: half the memory,
those lost updates accepted) need ``low_precision_weights=true``.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

ALIASES = {"16": "16-mixed", "bf16": "bf16-mixed", "32": "32-true", "64": "64-true"}
LOW_PRECISION_WEIGHTS = ("16-true", "bf16-true")


def normalise(precision: object) -> str:
    """Lightning's precision value in its long form (``bf16`` → ``bf16-mixed``)."""
    text = str(precision)
    return ALIASES.get(text, text)


def check_precision(precision: object, low_precision_weights: bool) -> str:
    """Refuse 16-bit weights without the opt-in; return the normalised precision."""
    value = normalise(precision)
    if value in LOW_PRECISION_WEIGHTS and not low_precision_weights:
        raise ValueError(
            f"trainer.precision={value} keeps weights and AdamW state in 16 bits: updates below the weight's "
            "rounding step are lost (at lr 1e-5 RMSNorm gains never move). Use trainer.precision=bf16-mixed "
            "(fp32 weights, bf16 matmuls), or accept this with low_precision_weights=true"
        )
    return value


def fp32_master_weights(model: torch.nn.Module, precision: str) -> int:
    """Cast trainable floating-point parameters to fp32 unless 16-bit weights were chosen; returns how many."""
    if precision in LOW_PRECISION_WEIGHTS:
        return 0
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    if cast:
        log.info("precision %s: %d trainable parameters cast to fp32 (master weights and AdamW state)", precision, cast)
    return cast
