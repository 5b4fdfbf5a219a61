"""Scoring agent episodes: pass@1, action validity, steps, reasoning length, failure categories."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

FAILURES = ("passed", "wrong_answer", "syntax_error", "timeout", "no_answer", "max_steps", "policy_error")


def failure_category(record: dict[str, Any]) -> str:
    """Why an episode did not pass (or ``passed``), from what the agent recorded."""
    if record.get("error"):
        return "policy_error"
    if record.get("passed"):
        return "passed"
    if record.get("final_answer") is None:
        return "max_steps" if record.get("steps") else "no_answer"
    error = record.get("test_error") or ""
    if "SyntaxError" in error or "IndentationError" in error:
        return "syntax_error"
    if "Timeout" in error or "timed out" in error:
        return "timeout"
    return "wrong_answer"


def turn_is_valid(step: dict[str, Any], is_last: bool, record: dict[str, Any]) -> bool:
    """A turn is valid when it parsed and its tool ran without error, or it is the final answer."""
    if step.get("parse_error"):
        return False
    if step.get("action") is None:
        return is_last and record.get("final_answer") is not None
    return bool(step.get("tool_ok"))


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate metrics over episodes (one per problem, greedy): the keys of ``report.json``."""
    n = len(records)
    turns = [(step, i == len(r["steps"]) - 1, r) for r in records for i, step in enumerate(r.get("steps", []))]
    valid = sum(turn_is_valid(*t) for t in turns)
    categories = Counter(failure_category(r) for r in records)
    reasoning_words = [len(step.get("thought", "").split()) for step, _, _ in turns]
    return {
        "n": n,
        "n_passed": sum(1 for r in records if r.get("passed")),
        "pass_at_1": sum(1 for r in records if r.get("passed")) / n if n else 0.0,
        "action_validity": valid / len(turns) if turns else 0.0,
        "mean_steps": sum(len(r.get("steps", [])) for r in records) / n if n else 0.0,
        "mean_reasoning_words": sum(reasoning_words) / len(reasoning_words) if reasoning_words else 0.0,
        "final_answer_rate": sum(1 for r in records if r.get("final_answer") is not None) / n if n else 0.0,
        "failures": {name: categories.get(name, 0) for name in FAILURES},
        "tokens": {key: sum(r.get("usage", {}).get(key, 0) for r in records)
                   for key in ("prompt_tokens", "completion_tokens")},
    }


def summarize_by(records: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Pass@1 and counts per value of ``key`` (``category``, ``difficulty``)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(str(record.get(key)), []).append(record)
    return {name: {"n": len(group), "pass_at_1": sum(1 for r in group if r.get("passed")) / len(group)}
            for name, group in sorted(groups.items())}
