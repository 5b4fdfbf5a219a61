"""Batched rollouts (#16): one left-padded ``generate`` per turn over every live episode gives the same
greedy episodes as one episode at a time, sampled episodes depend on their seeds only, tool calls
and grading run per episode, finished episodes leave and waiting ones join the batch."""

from __future__ import annotations

import pytest
import torch

from deepcoder.agent.batch_loop import run_episodes
from deepcoder.agent.factory import build_agent
from deepcoder.agent.seeds import derive_seed
from deepcoder.models.tiny import TinyModel
from deepcoder.policies.base import Completion
from deepcoder.policies.batching import generated_length, left_pad
from deepcoder.policies.hf import HFPolicy
from deepcoder.policies.reference import ReferenceTeacher
from deepcoder.problems import load_sample
from deepcoder.problems.synthetic import generate as synthetic

from reporting_fixtures import torch_threads

TIMING = ("wall_s", "latency_s")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def one_at_a_time(agent, policy, problems) -> list[dict]:
    return [{**agent.run(policy, problem), "sample": 0} for problem in problems]


@pytest.fixture(scope="module")
def agent():
    return build_agent(tools=["python"], max_steps=2, test_timeout_s=5.0)


@pytest.fixture(scope="module")
def tiny():
    return TinyModel().load(seed=0)


def test_left_padding_and_row_lengths():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert generated_length(torch.tensor([3, 4, 2, 0, 0]), eos_id=2, pad_id=0) == 3  # through the eos
    assert generated_length(torch.tensor([3, 4, 0, 0]), eos_id=2, pad_id=0) == 2  # stopped at a stop string
    assert generated_length(torch.tensor([3, 4, 5]), eos_id=2, pad_id=0) == 3  # ran to max_new_tokens
    with pytest.raises(ValueError, match="at least one token"):
        left_pad([[1], []], pad_id=0)


STOPS = ("e", "(", "\nObservation:")


def test_greedy_batched_episodes_equal_one_at_a_time_on_the_sample_set(agent, tiny):
    """The untrained model never ends a turn by itself: stopping at common strings (``e``, ``(``)
    makes the rows of a batch stop at different tokens, so pads follow some rows and not others."""
    lm, tokenizer = tiny
    policy = HFPolicy.from_model(lm, tokenizer, name="tiny", max_new_tokens=16, stop=STOPS)
    problems = load_sample()
    expected = one_at_a_time(agent, policy, problems)
    assert len({r["usage"]["completion_tokens"] for r in expected}) > 1  # the rows really stop apart
    batched = run_episodes(policy, problems, agent=agent, batch_size=5)  # 16 episodes: rows join as others leave
    assert without_timing(batched) == without_timing(expected)


def test_greedy_batched_episodes_equal_one_at_a_time_on_synthetic_problems(agent, tiny):
    lm, tokenizer = tiny
    policy = HFPolicy.from_model(lm, tokenizer, name="tiny", max_new_tokens=16, stop=STOPS)
    problems = synthetic("heldout", n=6, seed=0)
    expected = one_at_a_time(agent, policy, problems)
    assert without_timing(run_episodes(policy, problems, agent=agent, batch_size=4)) == without_timing(expected)


def test_sampled_episodes_depend_on_their_seed_not_on_the_batch(agent, tiny):
    lm, tokenizer = tiny
    policy = HFPolicy.from_model(lm, tokenizer, name="tiny", max_new_tokens=12, temperature=1.0, top_k=50)
    problems = load_sample()[:3]
    alone = run_episodes(policy, problems, agent=agent, batch_size=1, samples=2, seed=7)
    together = run_episodes(policy, problems, agent=agent, batch_size=6, samples=2, seed=7)
    assert without_timing(alone) == without_timing(together)
    assert [(r["problem_id"], r["sample"]) for r in together] == [(p.id, s) for p in problems for s in (0, 1)]
    assert together[0]["messages"][2] != together[1]["messages"][2]  # two samples of one problem differ
    other = run_episodes(policy, problems[:1], agent=agent, batch_size=2, samples=2, seed=8)
    assert other[0]["messages"][2] != together[0]["messages"][2]


def test_sampling_without_seeds_is_refused(tiny):
    lm, tokenizer = tiny
    policy = HFPolicy.from_model(lm, tokenizer, name="tiny", max_new_tokens=4, temperature=1.0)
    with pytest.raises(ValueError, match="one seed per conversation"):
        policy.complete_many([[{"role": "user", "content": "hi"}]])


def test_policies_without_a_batched_path_play_the_same_episodes(agent):
    problems = load_sample()[:6]
    teacher = ReferenceTeacher()
    batched = run_episodes(teacher, problems, agent=agent, batch_size=4)
    assert without_timing(batched) == without_timing(one_at_a_time(agent, teacher, problems))
    assert all(r["passed"] for r in batched)


class BatchRecorder:
    """A batched policy that answers problem ``i`` after ``i % 3`` tool calls, recording each call's rows."""

    provider, model = "scripted", "batch-recorder"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def complete_many(self, conversations, *, seeds=None):
        self.calls.append(len(conversations))
        if self.fail:
            raise RuntimeError("out of memory")
        return [Completion(self._turn(messages), 1, 1, 0.0) for messages in conversations]

    @staticmethod
    def _turn(messages) -> str:
        index = int(messages[1]["content"].count("a")) % 3  # a stable per-problem number
        if sum(m["role"] == "assistant" for m in messages) >= index:
            return "Thought: done.\nFinal Answer:\n```python\ndef f():\n    return 1\n```"
        return "Thought: try.\nAction: python\nAction Input:\n```python\nprint(1)\n```"


def test_finished_episodes_leave_and_waiting_ones_join(agent):
    problems = load_sample()[:7]
    policy, seen = BatchRecorder(), []
    records = run_episodes(
        policy, problems, agent=build_agent(tools=["python"], max_steps=3), batch_size=3, on_episode=seen.append
    )
    assert max(policy.calls) == 3 and policy.calls[0] == 3
    assert sum(policy.calls) == sum(len(r["steps"]) for r in records)  # one row per turn, no idle rows
    assert len(policy.calls) < sum(len(r["steps"]) for r in records)  # rows shared calls
    assert sorted(r["problem_id"] for r in seen) == sorted(p.id for p in problems)
    observed = [s["observation"] for r in records for s in r["steps"] if s["action"]]
    assert observed and all(o == "1\n" for o in observed)  # tool calls ran, each for its own episode


def test_only_and_should_stop_choose_which_episodes_start(agent):
    problems = load_sample()[:4]
    only = {(problems[1].id, 0), (problems[3].id, 1)}
    records = run_episodes(ReferenceTeacher(), problems, agent=agent, samples=2, only=only)
    assert {(r["problem_id"], r["sample"]) for r in records} == only
    started = []
    stopped = run_episodes(
        ReferenceTeacher(), problems, agent=agent, batch_size=2, on_episode=started.append, should_stop=lambda: True
    )
    assert stopped == [] and started == []


def test_a_failing_batch_becomes_error_records(agent):
    records = run_episodes(BatchRecorder(fail=True), load_sample()[:3], agent=agent, batch_size=2)
    assert [r["stop_reason"] for r in records] == ["error"] * 3
    assert all(r["error"] == "RuntimeError: out of memory" and r["passed"] is False for r in records)


def test_seeds_are_the_evaluation_seeds():
    assert derive_seed(0, "p", 1) == derive_seed(0, "p", 1) != derive_seed(0, "p", 2)
    with pytest.raises(ValueError, match="batch_size"):
        run_episodes(ReferenceTeacher(), [], agent=None, batch_size=0)


def test_evaluate_batch_size_keeps_greedy_episodes_and_refuses_mixing_samplers(tmp_path, untrained_student):
    from deepcoder.run.evaluate import evaluate
    from deepcoder.utils.jsonl import read_jsonl

    from conftest import compose_config as config

    common = (f"student={untrained_student}", "problems.limit=3", "policy.max_new_tokens=8", "agent.max_steps=2")
    runs = {}
    for batch in (1, 3):
        evaluate(config("evaluate", *common, f"batch_size={batch}", f"output_dir={tmp_path / str(batch)}"))
        rows = sorted(
            (r for _, r in read_jsonl(tmp_path / str(batch) / "episodes.jsonl")), key=lambda r: r["problem_id"]
        )
        runs[batch] = without_timing([{k: v for k, v in r.items() if k != "metrics"} for r in rows])
    assert runs[1] == runs[3] and len(runs[1]) == 3
    sampled = (*common, "samples=2", "k=[1]", "policy.temperature=1.0", f"output_dir={tmp_path / 'sampled'}")
    evaluate(config("evaluate", *sampled, "batch_size=1"))
    with pytest.raises(ValueError, match="sampler"):
        evaluate(config("evaluate", *sampled, "batch_size=2"))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        evaluate(config("evaluate", *common, "batch_size=0", f"output_dir={tmp_path / 'zero'}"))


def test_per_row_noise_then_argmax_draws_from_the_softmax():
    from deepcoder.policies.decoding import Decoding
    from deepcoder.policies.row_sampling import row_sampler

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    processors = row_sampler(Decoding(temperature=0.5), seeds=[3], device="cpu")
    draws = torch.tensor([int(processors(None, logits.clone()).argmax()) for _ in range(4000)])
    observed = torch.bincount(draws, minlength=4).float() / len(draws)
    assert torch.allclose(observed, torch.softmax(logits[0] / 0.5, -1), atol=0.03)
    again = row_sampler(Decoding(temperature=0.5), seeds=[3], device="cpu")
    assert [int(again(None, logits.clone()).argmax()) for _ in range(50)] == draws[:50].tolist()


def test_the_record_names_the_fingerprint_a_policy_learns_from_its_replies(agent):
    class Fingerprinted(ReferenceTeacher):
        fingerprint = None

        def complete(self, messages, *, problem):
            self.fingerprint = "fp_learned"
            return super().complete(messages, problem=problem)

    records = run_episodes(Fingerprinted(), load_sample()[:2], agent=agent, batch_size=2)
    assert [r["teacher"]["fingerprint"] for r in records] == ["fp_learned"] * 2
