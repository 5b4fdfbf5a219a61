"""What the chunked loss needs from a sharding strategy, checked before training starts.

The chunked head (:mod:`deepcoder.training.chunked_loss`) reads ``lm_head.weight`` outside the
model's own forward. FSDP gathers the root unit's parameters (embeddings, head, final norm) for
the whole training step, so that read sees the full matrix; DeepSpeed ZeRO-3 gathers a parameter
only inside its own module's forward, so the head would be an empty shard: refused here (ZeRO-2
shards gradients and optimiser state only and is fine).

Gradient accumulation: Lightning divides each micro-batch loss by ``accumulate_grad_batches``
and the DeepSpeed engine's ``backward`` divides by its ``gradient_accumulation_steps`` (which
Lightning sets to the same number) again; :func:`loss_scale` undoes both.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

ZERO3_MESSAGE = (
    "trainer.strategy: DeepSpeed ZeRO-3 partitions lm_head.weight, which the chunked span loss reads outside "
    "the model's forward, so it would see an empty shard. Use ZeRO-2 (trainer=deepspeed, stage 2: optimiser "
    "state and gradients sharded) or trainer=fsdp (parameters sharded, the head gathered for the step)"
)


def deepspeed_stage(strategy: Any) -> int | None:
    """The ZeRO stage of a configured ``trainer.strategy`` (name or mapping); None when not DeepSpeed."""
    if isinstance(strategy, str):
        if not strategy.startswith("deepspeed"):
            return None
        digits = [part for part in strategy.split("_") if part.isdigit()]
        return int(digits[0]) if digits else 2  # Lightning's "deepspeed" is ZeRO-2
    if isinstance(strategy, (DictConfig, dict)) and str(strategy.get("_target_", "")).endswith("DeepSpeedStrategy"):
        return int(strategy.get("stage", 2))
    return None


def check_strategy(trainer: DictConfig) -> None:
    """Refuse a strategy the chunked loss cannot train under."""
    if deepspeed_stage(trainer.get("strategy")) == 3:
        raise ValueError(ZERO3_MESSAGE)


def loss_scale(accumulate: int, world_size: int, window_normalised: bool, engine_divides: bool) -> int:
    """The factor on a micro-batch's loss that makes one optimiser step the exact big-batch step.

    A loss normalised by its whole accumulation window's token count (all ranks) must undo
    Lightning's division by ``accumulate`` and the data-parallel gradient average over
    ``world_size``; a DeepSpeed engine (``engine_divides``) divides by ``accumulate`` once more.
    """
    scale = accumulate * world_size if window_normalised else 1
    return scale * accumulate if engine_divides else scale


def engine_divides_by_accumulation(strategy: Any) -> bool:
    """Whether the strategy's backward scales the loss by the accumulation steps (DeepSpeed's does)."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    return isinstance(strategy, DeepSpeedStrategy)
