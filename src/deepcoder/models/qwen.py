"""Qwen2.5-Instruct's real architectures with random weights, for runs that cannot download a checkpoint.

The sizes are the published ``config.json`` values; ``num_layers`` keeps a real width but fewer
layers, so a run on a small machine still exercises the real vocabulary, heads and MLP shapes.
The tokenizer is the exact Qwen2.5 one, built offline (``deepcoder.models.qwen_tokenizer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from deepcoder.models.qwen_tokenizer import load_qwen_tokenizer


@dataclass(frozen=True)
class QwenSize:
    """The ``config.json`` fields that differ between Qwen2.5 sizes."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool


QWEN25_SIZES = {
    "0.5b": QwenSize(896, 24, 14, 2, 4864, 151_936, tie_word_embeddings=True),
    "1.5b": QwenSize(1536, 28, 12, 2, 8960, 151_936, tie_word_embeddings=True),
    "3b": QwenSize(2048, 36, 16, 2, 11008, 151_936, tie_word_embeddings=True),
    "7b": QwenSize(3584, 28, 28, 4, 18944, 152_064, tie_word_embeddings=False),
}
ENDOFTEXT_ID, IM_END_ID = 151643, 151645


def qwen_config(size: str, num_layers: int | None = None) -> Qwen2Config:
    """Qwen2.5-``size``-Instruct's config, optionally cut to its first ``num_layers`` layers."""
    if size not in QWEN25_SIZES:
        raise ValueError(f"unknown Qwen2.5 size {size!r}; known: {sorted(QWEN25_SIZES)}")
    spec = QWEN25_SIZES[size]
    if num_layers is not None and not 1 <= num_layers <= spec.num_layers:
        raise ValueError(f"num_layers must be in 1..{spec.num_layers} for Qwen2.5-{size}, got {num_layers}")
    config = Qwen2Config(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=num_layers or spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        hidden_act="silu",
        max_position_embeddings=32768,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,  # type: ignore[call-arg]  # transformers 5 maps it to rope_parameters
        attention_dropout=0.0,
        use_sliding_window=False,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=IM_END_ID,
    )
    config._attn_implementation = "sdpa"
    return config


def build_random_qwen(
    size: str, num_layers: int | None = None, seed: int = 0
) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerFast]:
    """A ``Qwen2ForCausalLM`` at Qwen2.5-``size``'s width with weights drawn from ``seed``, and
    Qwen2.5's tokenizer. Generation stops and pads as Qwen2.5-Instruct's generation config says."""
    config = qwen_config(size, num_layers)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = [IM_END_ID, ENDOFTEXT_ID]
    model.generation_config.pad_token_id = ENDOFTEXT_ID
    model.generation_config.bos_token_id = ENDOFTEXT_ID
    return model, load_qwen_tokenizer()
