"""Evaluation decodes like training (#18.4): a turn stops only at an ``Observation:`` that starts a
line (the parser's rule), and greedy is argmax: no penalty or top-k from the checkpoint's
``generation_config.json`` is inherited."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from deepcoder.models.tiny import TinyModel
from deepcoder.policies.decoding import Decoding
from deepcoder.policies.hf import HFPolicy
from deepcoder.problems import load_sample
from deepcoder.protocol.parsing import parse_turn

MESSAGES = [{"role": "user", "content": "Write f."}]
TURN = (
    "<think>The tool answers with Observation: lines; I check them.</think>"
    "Thought: I expect an Observation: of 2 here.\nAction: python\nAction Input:\n```python\n"
    "print('Observation: 2')\nprint(f(1))\n```"
)
HALLUCINATED = "\nObservation: 2\nThought: done"


class Script(LogitsProcessor):
    """Forces the tokens of ``text`` after the prompt, then the eos token."""

    def __init__(self, ids: list[int], prompt_length: int, eos: int) -> None:
        self.ids, self.prompt_length, self.eos = ids, prompt_length, eos

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        forced = torch.full_like(scores, -float("inf"))
        forced[:, self.ids[step] if step < len(self.ids) else self.eos] = 0.0
        return forced


@pytest.fixture(scope="module")
def tiny():
    return TinyModel().load(seed=0)


def scripted_generation(lm, tokenizer, decoding: Decoding, text: str) -> str:
    """What ``generate`` returns under ``decoding``'s generation config when the model writes ``text``."""
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    length = inputs["input_ids"].shape[1]
    output = lm.generate(
        **inputs,
        generation_config=decoding.generation_config(tokenizer),
        tokenizer=tokenizer,
        logits_processor=LogitsProcessorList([Script(ids, length, tokenizer.eos_token_id)]),
    )
    return tokenizer.decode(output[0, length:], skip_special_tokens=True)


def test_a_turn_stops_only_at_a_line_start_observation(tiny):
    lm, tokenizer = tiny
    text = scripted_generation(lm, tokenizer, Decoding(max_new_tokens=400), TURN + HALLUCINATED)
    assert text == TURN + "\nObservation:"  # print('Observation: …'), mid-thought and <think> did not stop it
    parsed = parse_turn(text)
    assert parsed.tool == "python" and parsed.tool_input == "print('Observation: 2')\nprint(f(1))"
    # The old rule, "Observation:" anywhere, cut the turn inside <think> and lost the action.
    cut = scripted_generation(lm, tokenizer, Decoding(max_new_tokens=400, stop=("Observation:",)), TURN)
    assert parse_turn(cut).tool is None


def argmax_continuation(lm, tokenizer, steps: int) -> list[int]:
    """Plain greedy decoding, one forward per token: what "greedy" must mean."""
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(steps):
            token = int(lm(ids).logits[0, -1].argmax())
            out.append(token)
            if token == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out


def test_greedy_is_argmax_whatever_the_checkpoint_generation_config_says(tiny):
    lm, tokenizer = tiny
    lm.generation_config.repetition_penalty = 3.0  # as a Qwen checkpoint's 1.05-1.1, only stronger
    lm.generation_config.top_k = 2
    lm.generation_config.do_sample = False
    policy = HFPolicy.from_model(lm, tokenizer, max_new_tokens=24, stop=())
    problem = load_sample()[0]
    completion = policy.complete(MESSAGES, problem=problem)
    expected = argmax_continuation(lm, tokenizer, 24)
    assert completion.text == tokenizer.decode(expected, skip_special_tokens=True)
    inherited = lm.generate(  # the checkpoint's settings, as generate applies them when not overridden
        **tokenizer(
            tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
            return_tensors="pt",
        ),
        max_new_tokens=24,
    )
    assert tokenizer.decode(inherited[0, -24:], skip_special_tokens=True) != completion.text  # the test can fail
    assert policy.decoding_report == {
        "max_new_tokens": 24,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 0,
        "repetition_penalty": 1.0,
        "stop": [],
        "do_sample": False,
        "eos_token": "<|im_end|>",
    }


def test_max_new_tokens_comes_from_the_saved_student(tiny, tmp_path):
    lm, tokenizer = tiny
    student = TinyModel(max_new_tokens=77).for_training(lm)
    student.save_pretrained(tmp_path, tokenizer)
    policy = HFPolicy(str(tmp_path), device="cpu")
    assert policy.max_new_tokens == 77 and policy.lm.generation_config.repetition_penalty == 1.0
    assert HFPolicy(str(tmp_path), device="cpu", max_new_tokens=5).max_new_tokens == 5
