"""``peers.py``'s generation section: tokens/s of evaluation's generation against plain HF ``generate``.

Work: the agent's first turn (its real system and task prompt, rendered with the model's chat
template) on the first ``prompts`` HumanEval problems, greedy, at most ``max_new_tokens`` new tokens,
with a randomly initialised model (``tiny``, or Qwen2.5-0.5B's widths with 2 layers). Methods:

- ``ours``: :func:`evaluation_generate`, the evaluation path's generation (the batched runner's turn:
  our decode loop, where later rows reuse the KV of the system prompt the first row read and a row
  that stops leaves the batch);
- ``hf loop``: ``model.generate`` once per prompt, what a script without our policy would do;
- ``hf batched``: one left-padded ``model.generate`` over all prompts;
- ``vllm``: only where CUDA and vLLM are present (never on this CPU table: skipped, with the reason).

Tokens/s counts the tokens each method actually generated (a random model may stop early, at its
eos, the same way under every greedy method). Wall and CPU seconds of one pass after a warm-up on
the first prompt.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from deepcoder.agent.factory import build_agent
from deepcoder.models.qwen import build_random_qwen
from deepcoder.models.tiny import TinyModel
from deepcoder.policies.hf import HFPolicy
from deepcoder.problems import Problem, load_humaneval

Prompt = tuple[list[dict[str, str]], Problem]


def evaluation_generate(policy: HFPolicy, prompts: Sequence[Prompt]) -> int:
    """Evaluation's generation path: the batched runner's turn, one ``HFPolicy.complete_many`` over every
    live episode (``evaluate.py batch_size`` 16 ≥ the prompts here); returns the tokens generated."""
    return sum(completion.completion_tokens for completion in policy.complete_many([m for m, _ in prompts]))


def hf_loop(model, tokenizer, prompts: Sequence[Prompt], max_new_tokens: int) -> int:
    generated = 0
    for messages, _ in prompts:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        generated += out.shape[1] - ids["input_ids"].shape[1]
    return generated


def hf_batched(model, tokenizer, prompts: Sequence[Prompt], max_new_tokens: int) -> int:
    texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m, _ in prompts]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        inputs = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1] :]
    eos = model.generation_config.eos_token_id
    stops = torch.tensor(eos if isinstance(eos, list) else [eos])
    # a row's tokens up to and including its first eos (rows that stopped early are padded after it)
    done = torch.isin(new, stops).int().cumsum(-1)
    return int(((done == 0) | ((done == 1) & torch.isin(new, stops))).sum())


def load_model(name: str):
    if name == "tiny":
        return TinyModel().load(seed=0)
    return build_random_qwen("0.5b", num_layers=2, seed=0)


def timed(run, work: Sequence[Prompt]) -> dict[str, float]:
    """One pass over ``work`` after a warm-up on its first prompt."""
    run(work[:1])
    started, cpu_started = time.perf_counter(), time.process_time()
    tokens = run(work)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "tokens": tokens,
    }


def measure_generation(model_name: str, prompts: int, max_new_tokens: int) -> dict[str, dict]:
    """Each method's ``seconds``, ``cpu_seconds`` and ``tokens`` (generated) on the same prompts and model."""
    torch.manual_seed(0)
    model, tokenizer = load_model(model_name)
    agent = build_agent(tools=["python"])
    work = [(agent.initial_messages(p), p) for p in load_humaneval()[:prompts]]
    policy = HFPolicy.from_model(model, tokenizer, name=model_name, max_new_tokens=max_new_tokens, temperature=0.0)
    return {
        "ours": timed(lambda prompts: evaluation_generate(policy, prompts), work),
        "hf loop": timed(lambda prompts: hf_loop(model, tokenizer, prompts, max_new_tokens), work),
        "hf batched": timed(lambda prompts: hf_batched(model, tokenizer, prompts, max_new_tokens), work),
    }
