"""The tiny student: a Qwen2 model whose saved tokenizer reloads token for token the same."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from deepcoder.models.tiny import TinyModel

TEXT = 'Thought: I need `reverse_words`:\n    """Return the words.\n    >>> f("  a b ")\n    \'b a\'\n"""\n\n\nx += 1'


def test_saved_student_reloads_with_identical_tokenization(tmp_path):
    model, tokenizer = TinyModel().load(seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)  # resolved through config.json (qwen2)
    ours = tokenizer(TEXT, return_offsets_mapping=True, add_special_tokens=False)
    theirs = reloaded(TEXT, return_offsets_mapping=True, add_special_tokens=False)
    assert ours["input_ids"] == theirs["input_ids"] and ours["offset_mapping"] == theirs["offset_mapping"]
    messages = [{"role": "user", "content": "hi"}]
    assert reloaded.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert reloaded.eos_token == "<|im_end|>" and reloaded.decode(theirs["input_ids"]) == TEXT
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config.model_type == "qwen2"


def test_tiny_model_is_small_and_seeded():
    first, _ = TinyModel().load(seed=0)
    second, _ = TinyModel().load(seed=0)
    other, _ = TinyModel().load(seed=1)
    assert 2e6 < sum(p.numel() for p in first.parameters()) < 8e6
    weight = first.model.layers[0].mlp.up_proj.weight
    assert weight.equal(second.model.layers[0].mlp.up_proj.weight)
    assert not weight.equal(other.model.layers[0].mlp.up_proj.weight)


@pytest.mark.e2e
def test_two_processes_building_the_tiny_tokenizer_at_once_both_get_it(tmp_path):
    """Jobs side by side (make experiment) and DDP ranks may build the cached tokenizer together."""
    env = {**os.environ, "DEEPCODER_CACHE": str(tmp_path)}
    code = "from deepcoder.models.tiny import build_tiny_tokenizer; print(len(build_tiny_tokenizer()))"
    builds = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [build.communicate(timeout=600)[0].strip() for build in builds]
    assert [build.returncode for build in builds] == [0, 0] and outputs[0] == outputs[1]
    assert [p.name for p in (tmp_path / "tokenizers").iterdir() if p.name.endswith(".tmp")] == []
