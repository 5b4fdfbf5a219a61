"""Training options every ``model=`` spec shares: activation checkpointing and a LoRA adapter.

``model.gradient_checkpointing`` recomputes layer activations in the backward pass;
``model.lora`` (``true`` or ``{r: 16, alpha: 32, dropout: 0.05, target_modules: [...]}``) wraps the
model in a ``peft`` LoRA adapter with the base weights frozen. ``for_training`` applies them; the
saved student always has the adapter merged into its weights, so ``student/`` loads with
``AutoModelForCausalLM`` alone. ``model.max_new_tokens`` is the turn length evaluation generates
with, written into the saved student's ``generation_config.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from deepcoder.policies.decoding import Decoding

QWEN2_LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraOptions:
    """A LoRA adapter on the named linear layers (peft ``LoraConfig``: r, lora_alpha, lora_dropout)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = QWEN2_LINEAR_LAYERS

    @classmethod
    def parse(cls, value: Any) -> LoraOptions | None:
        """``model.lora`` as configured: null/false (off), true (defaults) or a mapping of fields."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError(f"model.lora must be null, true or a mapping, got {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"model.lora: unknown field(s) {unknown}; known: {sorted(known)}")
        settings = dict(value)
        if "target_modules" in settings:
            settings["target_modules"] = tuple(settings["target_modules"])
        return cls(**settings)

    def peft_config(self):
        from peft import LoraConfig, TaskType

        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
        )


@dataclass
class TrainableStudent:
    """What training needs: the causal LM the LightningModule trains (LoRA layers, if any, injected
    in place) and the ``peft`` wrapper that can merge them back for saving."""

    model: PreTrainedModel
    adapter: Any = None  # peft.PeftModel around ``model``, or None without LoRA
    max_new_tokens: int = 512

    def save_pretrained(self, directory: str | Path, tokenizer: PreTrainedTokenizerFast) -> None:
        """A plain Hugging Face checkpoint: the LoRA adapter is merged into the weights first
        (this ends training with the adapter: the layers are replaced in place). Its
        ``generation_config.json`` is the evaluation's: greedy, no penalties, ``max_new_tokens``,
        ending at the turn terminator; nothing of the base checkpoint's sampling settings is kept."""
        model = self.adapter.merge_and_unload() if self.adapter is not None else self.model
        model.generation_config = Decoding(max_new_tokens=self.max_new_tokens).generation_config(tokenizer, stop=False)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)


@dataclass(kw_only=True)
class TrainingOptions:
    """The ``model.gradient_checkpointing`` and ``model.lora`` options shared by every spec."""

    gradient_checkpointing: bool = False
    lora: Any = None
    max_new_tokens: int = 512  # evaluation's turn length, saved in the student's generation_config

    def for_training(self, model: PreTrainedModel, seed: int = 0) -> TrainableStudent:
        """Switch on activation checkpointing and wrap the model with a seeded LoRA adapter."""
        lora = LoraOptions.parse(self.lora)
        if self.gradient_checkpointing:
            # Non-reentrant checkpointing (correct with frozen inputs under LoRA, and with autocast).
            # transformers 5 renamed gradient_checkpointing_enable; the old name stays for 4.x.
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable({"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora is None:
            return TrainableStudent(model, max_new_tokens=self.max_new_tokens)
        from peft import get_peft_model

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            adapter = get_peft_model(model, lora.peft_config())
        return TrainableStudent(adapter.get_base_model(), adapter, self.max_new_tokens)
