"""Real checkpoints (``model=qwen-*``) by hub id or local path, and loading a trained student."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from deepcoder.models.options import TrainingOptions


@dataclass
class PretrainedModel(TrainingOptions):
    """A real checkpoint by hub id or local path (e.g. ``Qwen/Qwen2.5-1.5B-Instruct``)."""

    name_or_path: str
    torch_dtype: str = "auto"
    attn_implementation: str = "sdpa"
    name: str = ""

    def load_tokenizer(self) -> PreTrainedTokenizerFast:
        return AutoTokenizer.from_pretrained(self.name_or_path)

    def load(self, seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
        tokenizer = self.load_tokenizer()
        dtype = self.torch_dtype if self.torch_dtype == "auto" else getattr(torch, self.torch_dtype)
        model = AutoModelForCausalLM.from_pretrained(
            self.name_or_path, dtype=dtype, attn_implementation=self.attn_implementation
        )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer


def load_student(path: str | Path) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """A trained student saved by ``train.py`` (``DIR/student``) or any HF checkpoint."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    return model, tokenizer
