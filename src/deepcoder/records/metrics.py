"""Scoring agent episodes: pass@1 and pass@k, action validity, steps, reasoning length, failure categories.

Each episode is first reduced to a few numbers (:func:`episode_stats`), stored with the episode,
and every aggregate is a function of those numbers (:func:`aggregate`). So a bootstrap over
problems (``experiments/compare.py``) recomputes exactly the metrics of ``report.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from deepcoder.records.pass_at_k import mean_pass_at_k
from deepcoder.utils.text import count_words

FAILURES = ("passed", "wrong_answer", "syntax_error", "timeout", "no_answer", "max_steps", "policy_error")
TextSize = Callable[[str], int]


def failure_category(record: Mapping[str, Any]) -> str:
    """Why an episode did not pass (or ``passed``), from what the agent recorded.

    Without a final answer: ``max_steps`` when the last turn was still a valid tool call (the agent
    was working when its step budget ran out), else ``no_answer`` (its turns stopped parsing as an
    action or an answer, e.g. prose or an empty ``Final Answer``).
    """
    if record.get("error"):
        return "policy_error"
    if record.get("passed"):
        return "passed"
    if record.get("final_answer") is None:
        steps = record.get("steps") or []
        still_acting = bool(steps) and steps[-1].get("action") is not None and not steps[-1].get("parse_error")
        return "max_steps" if still_acting else "no_answer"
    error = record.get("test_error") or ""
    if "SyntaxError" in error or "IndentationError" in error:
        return "syntax_error"
    if "Timeout" in error or "timed out" in error:
        return "timeout"
    return "wrong_answer"


def turn_is_valid(step: dict[str, Any], is_last: bool, record: Mapping[str, Any]) -> bool:
    """A turn is valid when it parsed and its tool ran without error, or it is the final answer."""
    if step.get("parse_error"):
        return False
    if step.get("action") is None:
        return is_last and record.get("final_answer") is not None
    return bool(step.get("tool_ok"))


def reasoning_texts(record: Mapping[str, Any]) -> list[str]:
    """The ``reason`` span text of each assistant turn (from the segments the parser recorded)."""
    turns = [m["content"] for m in record.get("messages", []) if m.get("role") == "assistant"]
    texts = []
    for step, content in zip(record.get("steps", []), turns):
        texts.append(
            "".join(content[start:end] for start, end, label in step.get("segments") or [] if label == "reason")
        )
    return texts


def episode_stats(record: Mapping[str, Any], count: TextSize = count_words) -> dict[str, Any]:
    """The numbers every aggregate is built from; ``count`` measures reasoning (tokens or words)."""
    steps = record.get("steps") or []
    actions = sum(1 for step in steps if step.get("action") is not None)
    answered = record.get("final_answer") is not None
    return {
        "passed": bool(record.get("passed")),
        "steps": len(steps),
        "valid_turns": sum(turn_is_valid(step, i == len(steps) - 1, record) for i, step in enumerate(steps)),
        "reasoning": sum(count(text) for text in reasoning_texts(record)),
        "answered": answered,
        "answered_without_action": answered and actions == 0,
        "category": failure_category(record),
        "prompt_tokens": (record.get("usage") or {}).get("prompt_tokens", 0),  # usage: null from some servers
        "completion_tokens": (record.get("usage") or {}).get("completion_tokens", 0),
    }


def aggregate(
    stats_by_problem: Sequence[Sequence[dict[str, Any]]], ks: Sequence[int] = (1,), unit: str = "words"
) -> dict[str, Any]:
    """Report metrics from per-problem lists of :func:`episode_stats` (``n`` samples each).

    ``pass_at_1`` and ``pass_at_k`` are the unbiased estimator averaged over problems; episode
    metrics (steps, reasoning, answer rates, failure counts) are over all episodes; action
    validity is valid turns over all turns. ``unit`` names the reasoning measure in the keys.
    """
    episodes = [s for group in stats_by_problem for s in group]
    n_episodes, turns = len(episodes), sum(s["steps"] for s in episodes)
    samples = [len(group) for group in stats_by_problem]
    correct = [sum(s["passed"] for s in group) for group in stats_by_problem]
    too_large = [k for k in ks if samples and k > min(samples)]
    if too_large:
        raise ValueError(f"pass@k for k={too_large} needs at least that many samples per problem, got {min(samples)}")
    categories = Counter(s["category"] for s in episodes)

    def mean(key: str) -> float:
        return sum(s[key] for s in episodes) / n_episodes if n_episodes else 0.0

    return {
        "n": len(stats_by_problem),
        "n_episodes": n_episodes,
        "samples_per_problem": min(samples) if samples else 0,
        "n_passed": sum(correct),
        "n_solved": sum(1 for c in correct if c),
        "pass_at_1": mean_pass_at_k(samples, correct, 1) if samples else 0.0,
        "pass_at_k": {str(k): mean_pass_at_k(samples, correct, k) for k in ks},
        "action_validity": sum(s["valid_turns"] for s in episodes) / turns if turns else 0.0,
        "mean_steps": mean("steps"),
        f"mean_reasoning_{unit}": mean("reasoning"),
        f"mean_reasoning_{unit}_per_step": sum(s["reasoning"] for s in episodes) / turns if turns else 0.0,
        "final_answer_rate": mean("answered"),
        "answered_without_action": mean("answered_without_action"),
        "failures": {name: categories.get(name, 0) for name in FAILURES},
        "tokens": {key: sum(s[key] for s in episodes) for key in ("prompt_tokens", "completion_tokens")},
    }


def group_by_problem(
    records: Sequence[Mapping[str, Any]], stats: Sequence[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    """Episode stats grouped per problem, in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record, stat in zip(records, stats):
        groups.setdefault(record["problem_id"], []).append(stat)
    return list(groups.values())


def summarize(
    records: Sequence[Mapping[str, Any]], ks: Sequence[int] = (1,), count: TextSize = count_words, unit: str = "words"
) -> dict[str, Any]:
    """Aggregate metrics over episodes (any number of samples per problem): the keys of ``report.json``."""
    stats = [episode_stats(r, count) for r in records]
    return aggregate(group_by_problem(records, stats), ks, unit)


def summarize_by(records: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Pass@1 (the fraction of passing episodes) and counts per value of ``key`` (``category``, ``difficulty``)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(str(record.get(key)), []).append(record)
    return {
        name: {"n": len(group), "pass_at_1": sum(1 for r in group if r.get("passed")) / len(group)}
        for name, group in sorted(groups.items())
    }
