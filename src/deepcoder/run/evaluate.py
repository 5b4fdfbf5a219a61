"""Stage 3: the student (or any policy) as the agent on problems → ``episodes.jsonl`` + ``report.json``.

Greedy (``samples=1``) or sampled (``samples=n`` with ``teacher.temperature>0``): each sample of
each problem is one episode with its own seed (:mod:`deepcoder.evaluation.sampling`); pass@k comes from the
unbiased estimator. With ``teacher_forced.path=FILE`` the report also holds the student's
teacher-forced metrics on those held-out teacher trajectories (:mod:`deepcoder.evaluation.teacher_forced`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.progress import track
from transformers import AutoTokenizer

from deepcoder.evaluation.sampling import EpisodePolicy, derive_seed
from deepcoder.records.metrics import aggregate, episode_stats, group_by_problem, summarize_by
from deepcoder.utils.console import print_metrics
from deepcoder.utils.jsonl import JsonlAppender, save_config, write_json
from deepcoder.utils.text import count_words

CONSOLE_KEYS = (
    "n",
    "samples_per_problem",
    "pass_at_1",
    "pass_at_k",
    "action_validity",
    "mean_steps",
    "mean_reasoning_tokens",
    "mean_reasoning_words",
    "answered_without_action",
    "failures",
    "teacher_forced",
)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    output_dir = Path(cfg.output_dir)
    samples, ks = int(cfg.samples), [int(k) for k in cfg.k]
    if samples < 1 or not ks or min(ks) < 1 or max(ks) > samples:
        raise ValueError(
            f"evaluate: need samples >= 1 and 1 <= k <= samples for every k, got samples={samples}, k={ks}"
        )
    problems = instantiate(cfg.problems)
    save_config(cfg, output_dir)
    policy = instantiate(cfg.teacher)
    if samples > 1 and getattr(policy, "temperature", None) == 0:
        raise ValueError(
            f"evaluate: samples={samples} with a greedy policy gives {samples} identical episodes; "
            "set teacher.temperature > 0 (e.g. 0.8)"
        )
    held_out = _teacher_trajectories(cfg, policy)  # checked before any episode runs
    agent = instantiate(cfg.agent)
    unit, count = _reasoning_measure(cfg, policy)
    records = _run_episodes(cfg, policy, agent, problems, samples, count, output_dir / "episodes.jsonl")
    report = {
        **aggregate(group_by_problem(records, [r["metrics"] for r in records]), ks, unit),
        "policy": {
            "provider": policy.provider,
            "model": policy.model,
            "temperature": getattr(policy, "temperature", None),
            "decoding": getattr(policy, "decoding_report", None),  # every parameter, for model policies
        },
        "by_category": summarize_by(records, "category"),
        "by_difficulty": summarize_by(records, "difficulty"),
        "problems": _per_problem(records),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if held_out:
        report["teacher_forced"] = _teacher_forced(cfg, policy, agent, held_out)
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_json(output_dir / "report.json", report)
    if records and all(r.get("error") for r in records):
        raise RuntimeError(
            f"every episode failed in the policy, e.g. {records[0]['error']}; see {output_dir / 'episodes.jsonl'}"
        )
    print_metrics(
        f"evaluate: {policy.provider}/{policy.model} on {report['n']} problems × {samples}",
        {key: report[key] for key in CONSOLE_KEYS if key in report},
    )
    return report


def _reasoning_measure(cfg: DictConfig, policy: Any) -> tuple[str, Callable[[str], int]]:
    """Reasoning length in tokens of ``reasoning_tokenizer`` or the policy's own tokenizer, else in words."""
    tokenizer = (
        AutoTokenizer.from_pretrained(cfg.reasoning_tokenizer)
        if cfg.reasoning_tokenizer
        else getattr(policy, "tokenizer", None)
    )
    if tokenizer is None:
        return "words", count_words
    return "tokens", lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def _run_episodes(
    cfg: DictConfig, policy: Any, agent: Any, problems: Any, samples: int, count: Callable[[str], int], path: Path
) -> list[dict[str, Any]]:
    """``samples`` seeded episodes per problem, each appended to ``path`` with its ``metrics``."""
    path.unlink(missing_ok=True)
    records = []
    with JsonlAppender(path) as out:
        for problem in track(problems, description="evaluate", transient=True):
            firsts = _first_turns(policy, agent, problem, samples, cfg)
            for sample in range(samples):
                episode_policy = EpisodePolicy(
                    policy, derive_seed(cfg.seed, problem.id, sample), firsts[sample] if firsts else None
                )
                record = {**agent.run(episode_policy, problem, sample=sample), "sample": sample}
                record["metrics"] = episode_stats(record, count)
                out.append(record)
                records.append(record)
    return records


def _first_turns(policy: Any, agent: Any, problem: Any, samples: int, cfg: DictConfig) -> list | None:
    """The ``samples`` first turns of a problem drawn in one batch, where the policy can and it is on."""
    if samples == 1 or not cfg.batch_first_turn or not hasattr(policy, "complete_batch"):
        return None
    return policy.complete_batch(
        agent.initial_messages(problem), samples, problem=problem, seed=derive_seed(cfg.seed, problem.id, "first-turn")
    )


def _per_problem(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Samples, passes, steps and stop reasons per problem id."""
    table: dict[str, dict[str, Any]] = {}
    for r in records:
        row = table.setdefault(r["problem_id"], {"samples": 0, "passed": 0, "steps": [], "stop": []})
        row["samples"] += 1
        row["passed"] += bool(r["passed"])
        row["steps"].append(len(r["steps"]))
        row["stop"].append(r["stop_reason"])
    return table


def _teacher_trajectories(cfg: DictConfig, policy: Any) -> list[dict[str, Any]]:
    """The held-out teacher trajectories of ``teacher_forced.path`` (none when it is not set)."""
    if not cfg.teacher_forced.path:
        return []
    from deepcoder.policies.hf import HFPolicy
    from deepcoder.records.trajectories import load_trajectories

    if not isinstance(policy, HFPolicy):
        raise ValueError(
            "teacher_forced.path needs a model policy (teacher=hf / student=DIR): "
            f"{policy.provider} has no token probabilities"
        )
    rows = load_trajectories(cfg.teacher_forced.path, only_passed=False)
    records = [record for _, record in rows][: cfg.teacher_forced.limit]
    if not records:
        raise ValueError(f"{cfg.teacher_forced.path}: no usable teacher trajectories")
    return records


def _teacher_forced(cfg: DictConfig, policy: Any, agent: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-span perplexity/accuracy and first-action agreement on held-out teacher trajectories."""
    from deepcoder.evaluation.teacher_forced import first_action_agreement, span_metrics
    from deepcoder.policies.hf import HFPolicy

    greedy = HFPolicy.from_model(
        policy.lm, policy.tokenizer, name=policy.model, max_new_tokens=policy.max_new_tokens, stop=policy.stop
    )
    return {
        "path": str(cfg.teacher_forced.path),
        "spans": span_metrics(policy.lm, policy.tokenizer, records, instantiate(cfg.span)),
        **first_action_agreement(greedy, records, set(agent.tools)),
    }
