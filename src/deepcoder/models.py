"""Student models: the locally built ``tiny`` Qwen2 and real Qwen2.5 checkpoints.

Each ``model=`` Hydra option instantiates one of these specs; ``load(seed)`` returns the model
and its tokenizer. ``tiny`` needs no download: its byte-level BPE tokenizer is trained here on
the project's own problems and protocol text (cached on disk, keyed by a hash of corpus and
settings) and its weights are randomly initialised from the seed.

Every spec also carries the training options ``model.gradient_checkpointing`` (activation
checkpointing: layers recompute their activations in the backward pass) and ``model.lora``
(``true`` or ``{r: 16, alpha: 32, dropout: 0.05, target_modules: [...]}``: a ``peft`` LoRA
adapter, the base weights frozen). ``for_training`` applies them; the saved student always has
the adapter merged into its weights, so ``student/`` loads with ``AutoModelForCausalLM`` alone.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from deepcoder.utils.paths import cache_dir

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                           r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
TOKENIZER_VERSION = 4  # bump when the corpus recipe changes, so caches are rebuilt
QWEN2_LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the agent protocol, the sample problems and the
    standard library docstrings of the retriever's knowledge base. No HumanEval text, so the
    held-out problems stay held out."""
    from deepcoder.agent.prompts import TASK_TEMPLATE, observation_message, system_prompt
    from deepcoder.problems import load_sample
    from deepcoder.tools import PythonTool, RetrieveTool
    from deepcoder.tools.retriever import build_documents

    protocol = [system_prompt([PythonTool, RetrieveTool]), TASK_TEMPLATE, observation_message("(no output)"),
                "Thought: I need to implement the function. I will write it and run it on the examples "
                "from the docstring.\nAction: python\nAction Input:\n```python\nprint(repr(f(1)))\n```\n"
                "Thought: All outputs match the expected values. The function is complete.\n"
                "Final Answer:\n```python\n```\nError: Traceback NameError TypeError ValueError"]
    texts = protocol * 20
    for problem in load_sample():
        texts += [problem.prompt, problem.reference_solution or "", problem.tests]
    return texts + [document["text"] for document in build_documents()]  # identical in every process


def build_tiny_tokenizer(vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train (or load from cache) the byte-level BPE tokenizer with a ChatML chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    corpus = tokenizer_corpus()
    digest = hashlib.sha256("\x00".join(corpus).encode()).hexdigest()[:12]
    path = cache_dir("tokenizers") / f"tiny-v{TOKENIZER_VERSION}-{vocab_size}-{digest}"
    if (path / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(path)
    tokenizer = Tokenizer(models.BPE())
    # Exactly Qwen2's pipeline: a saved student reloads as ``Qwen2Tokenizer`` (its config says
    # qwen2), which rebuilds these parts; any difference would change token ids at inference.
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, model_max_length=4096)
    fast.chat_template = CHATML_TEMPLATE
    tmp = path.with_name(path.name + ".tmp")
    fast.save_pretrained(tmp)
    tmp.rename(path)  # atomic publish: a concurrent or killed build never leaves half a tokenizer
    log.info("trained tiny tokenizer (%d tokens) at %s", len(fast), path)
    return AutoTokenizer.from_pretrained(path)


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

        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=self.r, lora_alpha=self.alpha,
                          lora_dropout=self.dropout, target_modules=list(self.target_modules))


@dataclass
class TrainableStudent:
    """What training needs: the causal LM the LightningModule trains (LoRA layers, if any, injected
    in place) and the ``peft`` wrapper that can merge them back for saving."""

    model: torch.nn.Module
    adapter: Any = None  # peft.PeftModel around ``model``, or None without LoRA

    def save_pretrained(self, directory: str | Path, tokenizer: PreTrainedTokenizerFast) -> None:
        """A plain Hugging Face checkpoint: the LoRA adapter is merged into the weights first
        (this ends training with the adapter: the layers are replaced in place)."""
        model = self.adapter.merge_and_unload() if self.adapter is not None else self.model
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)


@dataclass(kw_only=True)
class TrainingOptions:
    """The ``model.gradient_checkpointing`` and ``model.lora`` options shared by every spec."""

    gradient_checkpointing: bool = False
    lora: Any = None

    def for_training(self, model: torch.nn.Module, seed: int = 0) -> TrainableStudent:
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
            return TrainableStudent(model)
        from peft import get_peft_model

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            adapter = get_peft_model(model, lora.peft_config())
        return TrainableStudent(adapter.get_base_model(), adapter)


@dataclass
class TinyModel(TrainingOptions):
    """A randomly initialised Qwen2-architecture model of a few million parameters."""

    vocab_size: int = 4096
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    max_position_embeddings: int = 2048
    name: str = "tiny"

    def load_tokenizer(self) -> PreTrainedTokenizerFast:
        return build_tiny_tokenizer(self.vocab_size)

    def load(self, seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
        tokenizer = self.load_tokenizer()
        config = Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads, max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
        )
        config._attn_implementation = "sdpa"
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = Qwen2ForCausalLM(config)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        return model, tokenizer


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
        model = AutoModelForCausalLM.from_pretrained(self.name_or_path, dtype=dtype,
                                                     attn_implementation=self.attn_implementation)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer


def load_student(path: str | Path) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """A trained student saved by ``train.py`` (``DIR/student``) or any HF checkpoint."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    return model, tokenizer
