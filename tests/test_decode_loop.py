"""Our batched decode loop (#16): a stopped row leaves the batch at once, a next turn reuses the KV of
the prefix an earlier row read, stop strings and the repetition penalty act as in ``generate``, and
models it cannot serve (sliding-window layers) keep ``generate``."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2ForCausalLM

from deepcoder.agent.batch_loop import run_episodes
from deepcoder.agent.factory import build_agent
from deepcoder.models.tiny import TinyModel
from deepcoder.policies.decode_loop import StopCheck, supports
from deepcoder.policies.hf import HFPolicy
from deepcoder.problems import load_sample

from reporting_fixtures import torch_threads

TIMING = ("wall_s", "latency_s")
STOPS = ("e", "(", "\nObservation:")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny():
    return TinyModel().load(seed=0)


@pytest.fixture(scope="module")
def agent():
    return build_agent(tools=["python"], max_steps=2, test_timeout_s=5.0)


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def conversations(n: int) -> list[list[dict[str, str]]]:
    system = {"role": "system", "content": "Solve it."}
    return [[system, {"role": "user", "content": p.prompt}] for p in load_sample()[:n]]


def test_a_stop_string_counts_only_when_it_ends_in_the_newest_token(tiny):
    _, tokenizer = tiny
    check = StopCheck(tokenizer, ("\nObservation:",))
    prompt = tokenizer("user\nObservation: 42\nassistant\n", add_special_tokens=False)["input_ids"]
    assert not check.hit(prompt)  # an observation in the prompt's tail is not the turn's
    turn = tokenizer("Thought: run it.\nObservation: 3", add_special_tokens=False)["input_ids"]
    hits = [check.hit(prompt + turn[: i + 1]) for i in range(len(turn))]
    first = hits.index(True)
    text_before = tokenizer.decode(turn[:first])
    assert "\nObservation:" in tokenizer.decode(turn[: first + 1]) and "\nObservation:" not in text_before
    assert StopCheck(tokenizer, ()).hit(turn) is False


def test_an_empty_prompt_is_refused(tiny):
    lm, tokenizer = tiny
    policy = HFPolicy.from_model(lm, tokenizer, max_new_tokens=2)
    with pytest.raises(ValueError, match="at least one token"):
        policy._decoder.decode([[5, 6], []])


def test_stopped_rows_leave_the_batch_and_are_not_computed_again(tiny):
    lm, tokenizer = tiny
    policy = HFPolicy.from_model(lm, tokenizer, name="tiny", max_new_tokens=24, stop=STOPS)
    completions = policy.complete_many(conversations(6))
    lengths = [c.completion_tokens for c in completions]
    assert len(set(lengths)) > 1  # the rows stop apart
    # the first token comes from the prefill; a decode step computes only the rows still going
    assert policy.decode_counts["decoded"] == sum(n - 1 for n in lengths)
    alone = [policy.complete_many([conversation])[0] for conversation in conversations(6)]
    assert [c.turn for c in alone] == [c.turn for c in completions]


def test_a_next_turn_reads_only_what_the_cache_lacks_and_writes_the_same_turn(tiny):
    lm, tokenizer = tiny
    policy = HFPolicy.from_model(lm, tokenizer, name="tiny", max_new_tokens=12, stop=STOPS)
    first = conversations(3)
    with policy.prefix_cache():
        start = policy.decode_counts
        turns = policy.complete_many(first)
        within = policy.decode_counts["reused"] - start["reused"]  # later rows read the system prompt once
        following = [
            [*c, {"role": "assistant", "content": t.turn}, {"role": "user", "content": "Observation: ok"}]
            for c, t in zip(first, turns)
        ]
        before = policy.decode_counts
        cached = policy.complete_many(following)
        reused = policy.decode_counts["reused"] - before["reused"]
        prefilled = policy.decode_counts["prefilled"] - before["prefilled"]
    assert reused > prefilled > 0 and within > 0  # most of each conversation came from the cache
    before = policy.decode_counts
    fresh = policy.complete_many(following)  # outside the block only the rows of one call share
    assert policy.decode_counts["reused"] - before["reused"] == within
    assert [c.turn for c in cached] == [c.turn for c in fresh]
    assert [c.prompt_tokens for c in cached] == [c.prompt_tokens for c in fresh]  # usage counts the whole prompt


def test_episodes_reuse_their_cache_and_equal_one_at_a_time_with_a_repetition_penalty(agent, tiny):
    lm, tokenizer = tiny
    policy = HFPolicy.from_model(lm, tokenizer, name="tiny", max_new_tokens=16, stop=STOPS, repetition_penalty=1.3)
    problems = load_sample()[:8]
    expected = [{**agent.run(policy, problem), "sample": 0} for problem in problems]
    reused = policy.decode_counts["reused"]
    batched = run_episodes(policy, problems, agent=agent, batch_size=3)
    assert without_timing(batched) == without_timing(expected)
    assert policy.decode_counts["reused"] > reused  # the runner opened a prefix-cache block


def test_sampled_rows_are_the_draws_generate_makes_from_the_same_streams(tiny):
    lm, tokenizer = tiny
    policy = HFPolicy.from_model(lm, tokenizer, name="tiny", max_new_tokens=10, temperature=0.8, top_p=0.9)
    rows = [
        tokenizer.apply_chat_template(c, tokenize=True, add_generation_prompt=True, return_dict=False)
        for c in conversations(4)
    ]
    ours = policy._decoder.decode(rows, seeds=[1, 2, 3, 4])
    theirs = policy._generate_padded(rows, 0.0, [1, 2, 3, 4])
    assert [tokenizer.decode(t, skip_special_tokens=True) for t in ours] == [c.turn for c in theirs]


def test_models_with_sliding_window_layers_keep_generate(agent, tiny):
    lm, tokenizer = tiny
    config = lm.config.to_dict() | {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 0}
    sliding = Qwen2ForCausalLM(type(lm.config)(**{k: v for k, v in config.items() if k != "layer_types"})).eval()
    sliding.load_state_dict(lm.state_dict())
    assert supports(lm) and not supports(sliding)
    policy = HFPolicy.from_model(sliding, tokenizer, name="sliding", max_new_tokens=8, stop=STOPS)
    assert policy.decode_counts is None
    problems = load_sample()[:3]
    expected = [{**agent.run(policy, problem), "sample": 0} for problem in problems]
    assert without_timing(run_episodes(policy, problems, agent=agent, batch_size=3)) == without_timing(expected)
    assert torch.equal(sliding.model.embed_tokens.weight, lm.model.embed_tokens.weight)


def test_the_repetition_penalty_sees_each_row_own_tokens_only(tiny):
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    lm, tokenizer = tiny
    decoder = HFPolicy.from_model(lm, tokenizer, max_new_tokens=4, repetition_penalty=2.0)._decoder
    rows = [[5, 6, 7, 8], [9]]
    scores = torch.randn(2, len(tokenizer), generator=torch.Generator().manual_seed(0))
    scores[1, 0] = scores[1].max() + 0.1  # a pad of token 0 would halve it
    penalty = RepetitionPenaltyLogitsProcessor(2.0)
    alone = [int(penalty(torch.tensor([row]), scores[i : i + 1].clone()).argmax()) for i, row in enumerate(rows)]
    assert decoder._choose(scores, rows, [], None).tolist() == alone


def test_the_real_qwen_path_decodes_batched_as_one_at_a_time(agent):
    """Qwen2.5-0.5B's widths and config (2 layers, random weights) with the exact Qwen2.5 tokenizer:
    the loop serves it (full attention), and batched episodes equal one at a time."""
    from deepcoder.models.qwen import build_random_qwen

    model, tokenizer = build_random_qwen("0.5b", num_layers=2, seed=0)
    policy = HFPolicy.from_model(model.eval(), tokenizer, name="qwen-0.5b-2l", max_new_tokens=6, eos_token="<|im_end|>")
    assert supports(model) and policy.decode_counts is not None
    problems = load_sample()[:2]
    expected = [{**agent.run(policy, problem), "sample": 0} for problem in problems]
    assert without_timing(run_episodes(policy, problems, agent=agent, batch_size=2)) == without_timing(expected)
    assert policy.decode_counts["reused"] > 0
