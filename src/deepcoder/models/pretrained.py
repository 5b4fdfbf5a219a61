"""Real checkpoints (``model=qwen-*``) by hub id or local path, or at their real widths with random
weights (``model.random_init=true``).

Weights load in ``torch_dtype`` (the configs say float32: under ``bf16-mixed`` the parameters and
AdamW state stay fp32 and only the matmuls run in bf16; see :mod:`deepcoder.training.precision`).
A hub id that is not in the local cache is checked before anything loads: offline
(``HF_HUB_OFFLINE=1``) or with the hub unreachable it fails at once with the options that help.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from deepcoder.models.hub import hub_unavailable
from deepcoder.models.options import TrainingOptions
from deepcoder.models.qwen import QWEN25_SIZES, build_random_qwen
from deepcoder.models.tokenizers import load_fast_tokenizer
from deepcoder.policies.turn_end import check_eos_is_turn_end, set_eos_token

log = logging.getLogger(__name__)


@dataclass
class PretrainedModel(TrainingOptions):
    """A real checkpoint by hub id or local path (e.g. ``Qwen/Qwen2.5-1.5B-Instruct``).

    ``random_init``: build Qwen2.5-``qwen_size``'s architecture with random weights (first
    ``num_layers`` layers) and the exact Qwen2.5 tokenizer, offline. ``eos_token``: the
    template's end-of-turn token for a checkpoint whose eos is another (a base model: ``<|im_end|>``).
    """

    name_or_path: str
    torch_dtype: str = "auto"
    attn_implementation: str = "sdpa"
    name: str = ""
    random_init: bool = False
    qwen_size: str | None = None
    num_layers: int | None = None
    eos_token: str | None = None

    def __post_init__(self) -> None:
        if self.random_init and self.qwen_size not in QWEN25_SIZES:
            raise ValueError(
                f"model.random_init=true needs model.qwen_size, one of {sorted(QWEN25_SIZES)}; got {self.qwen_size!r}"
            )
        if self.num_layers is not None and not self.random_init:
            raise ValueError(
                f"model.num_layers={self.num_layers} applies to model.random_init=true only "
                "(a pretrained checkpoint keeps its layers)"
            )

    def load_tokenizer(self) -> PreTrainedTokenizerFast:
        if self.random_init:
            from deepcoder.models.qwen_tokenizer import load_qwen_tokenizer

            tokenizer = load_qwen_tokenizer()
        else:
            ensure_available(self.name_or_path, self.name or self.name_or_path)
            tokenizer = load_fast_tokenizer(self.name_or_path)
        if self.eos_token is not None:
            set_eos_token(tokenizer, self.eos_token, "model.eos_token")
        check_eos_is_turn_end(tokenizer, self.name or self.name_or_path, "model.eos_token")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def load(self, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
        tokenizer = self.load_tokenizer()
        dtype = self.torch_dtype if self.torch_dtype == "auto" else getattr(torch, self.torch_dtype)
        model: PreTrainedModel
        if self.qwen_size is not None and self.random_init:  # (__post_init__ checked the size)
            model, _ = build_random_qwen(self.qwen_size, self.num_layers, seed=seed)
            torch.nn.Module.to(model, torch.float32 if self.torch_dtype == "auto" else getattr(torch, self.torch_dtype))
            log.info("model %s: Qwen2.5-%s architecture, random weights (seed %d)", self.name, self.qwen_size, seed)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                self.name_or_path, dtype=dtype, attn_implementation=self.attn_implementation
            )
        model.generation_config.eos_token_id = tokenizer.eos_token_id  # generation ends where training ends turns
        return model, tokenizer


def ensure_available(name_or_path: str, name: str) -> None:
    """Fail in one line when ``name_or_path`` is neither a local checkpoint nor reachable on the hub."""
    fix = "pass a local copy with model.name_or_path=/path, or model.random_init=true (random weights, offline)"
    if Path(name_or_path).expanduser().exists():
        return
    looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") != 1
    if looks_local:
        raise FileNotFoundError(f"model {name}: {name_or_path} is not a local checkpoint or a hub id; {fix}")
    reason = hub_unavailable(name_or_path)
    if reason is not None:
        raise FileNotFoundError(f"model {name}: {name_or_path} {reason}; {fix}")
