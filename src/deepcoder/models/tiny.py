"""``model=tiny``: a randomly initialised Qwen2 of a few million parameters, built with no download.

Its byte-level BPE tokenizer is trained here on the project's own problems and protocol text
(cached on disk, keyed by a hash of corpus and settings) with Qwen2's normaliser and
pre-tokenizer and a ChatML chat template; the weights are randomly initialised from the seed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from deepcoder.models.options import TrainingOptions
from deepcoder.models.tokenizers import load_fast_tokenizer
from deepcoder.utils.paths import cache_dir

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
TOKENIZER_VERSION = 4  # bump when the corpus recipe changes, so caches are rebuilt


def tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the agent protocol, the sample problems and the
    standard library docstrings of the retriever's knowledge base. No HumanEval text, so the
    held-out problems stay held out."""
    from deepcoder.problems import load_sample
    from deepcoder.protocol.prompts import TASK_TEMPLATE, observation_message, system_prompt
    from deepcoder.tools import PythonTool, RetrieveTool
    from deepcoder.tools.retriever import build_documents

    protocol = [
        system_prompt([PythonTool, RetrieveTool]),
        TASK_TEMPLATE,
        observation_message("(no output)"),
        "Thought: I need to implement the function. I will write it and run it on the examples "
        "from the docstring.\nAction: python\nAction Input:\n```python\nprint(repr(f(1)))\n```\n"
        "Thought: All outputs match the expected values. The function is complete.\n"
        "Final Answer:\n```python\n```\nError: Traceback NameError TypeError ValueError",
    ]
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
        return load_fast_tokenizer(path)
    tokenizer = Tokenizer(models.BPE())
    # Exactly Qwen2's pipeline: a saved student reloads as ``Qwen2Tokenizer`` (its config says
    # qwen2), which rebuilds these parts; any difference would change token ids at inference.
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=4096,
    )
    fast.chat_template = CHATML_TEMPLATE
    # Atomic publish from a directory of this process's own: a killed build never leaves half a
    # tokenizer, and of two processes building at once (jobs side by side, DDP ranks) the first
    # rename wins; the other's identical build is dropped.
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent))
    fast.save_pretrained(tmp)
    try:
        tmp.rename(path)
    except OSError:
        if not path.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("trained tiny tokenizer (%d tokens) at %s", len(fast), path)
    return load_fast_tokenizer(path)


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
            vocab_size=len(tokenizer),
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=True,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
        )
        config._attn_implementation = "sdpa"
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = Qwen2ForCausalLM(config)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        return model, tokenizer
