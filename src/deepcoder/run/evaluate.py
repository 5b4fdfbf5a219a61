"""Stage 3: the student (or any policy) as the agent on problems → ``episodes.jsonl`` + ``report.json``.

Greedy (``samples=1``) or sampled (``samples=n`` with ``policy.temperature>0``): each sample of
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
from transformers import AutoTokenizer

from deepcoder.agent.batch_loop import run_episodes
from deepcoder.core.errors import UserError
from deepcoder.evaluation.episodes import EpisodeStore, complete_problems
from deepcoder.evaluation.progress import EvaluationProgress
from deepcoder.evaluation.sampling import EpisodePolicy, derive_seed
from deepcoder.records.metrics import aggregate, episode_stats, group_by_problem, summarize_by
from deepcoder.records.schema import as_record
from deepcoder.run.checks import check_evaluate, check_problems
from deepcoder.utils.console import print_metrics
from deepcoder.utils.jsonl import JsonlAppender, save_config, write_json
from deepcoder.utils.signals import DeferredSignals, deferred_signals
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
    check_evaluate(cfg)
    output_dir = Path(cfg.output_dir)
    samples, ks = int(cfg.samples), [int(k) for k in cfg.k]
    if samples < 1 or not ks or min(ks) < 1 or max(ks) > samples:
        raise ValueError(
            f"evaluate: need samples >= 1 and 1 <= k <= samples for every k, got samples={samples}, k={ks}"
        )
    if int(cfg.batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1 (1 = one episode at a time), got {cfg.batch_size}")
    problems = instantiate(cfg.problems)
    check_problems(problems, cfg)
    save_config(cfg, output_dir)
    policy = instantiate(cfg.policy)
    if samples > 1 and getattr(policy, "temperature", None) == 0:
        raise ValueError(
            f"evaluate: samples={samples} with a greedy policy gives {samples} identical episodes; "
            "set policy.temperature > 0 (e.g. 0.8)"
        )
    held_out = _teacher_trajectories(cfg, policy)  # checked before any episode runs
    agent = instantiate(cfg.agent)
    unit, count = _reasoning_measure(cfg, policy)
    records, expected, signals = _run_episodes(cfg, policy, agent, problems, samples, count, output_dir)
    if signals.received:  # stopped early: the report covers the problems with all their samples, marked partial
        records = complete_problems(records, samples)
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
    if held_out and not signals.received:  # stopped: report what finished, without another long pass
        report["teacher_forced"] = _teacher_forced(cfg, policy, agent, held_out)
    report["seconds"] = round(time.perf_counter() - started, 2)
    if signals.received:
        report.update(partial=True, n_episodes_expected=expected)
    write_json(output_dir / "report.json", report)
    signals.check()
    if records and all(r.get("error") for r in records):
        raise UserError(
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
    cfg: DictConfig, policy: Any, agent: Any, problems: Any, samples: int, count: Callable[[str], int], out_dir: Path
) -> tuple[list[dict[str, Any]], int, DeferredSignals]:
    """``samples`` seeded episodes per problem not yet in ``out_dir``, each appended as it ends; returns
    every finished episode of these problems (with its ``metrics``), the number expected, and the
    signals (a Ctrl-C or SIGTERM stops the run after the episodes in flight). ``batch_size`` > 1 plays
    that many episodes at once (:func:`deepcoder.agent.batch_loop.run_episodes`), 1 one at a time."""
    batch_size = int(cfg.batch_size)
    setup = {
        "policy": f"{policy.provider}/{policy.model}",
        "temperature": getattr(policy, "temperature", None),
        "seed": int(cfg.seed),
        "samples": samples,
        "batch_first_turn": bool(cfg.batch_first_turn),
    }
    if batch_size > 1 and getattr(policy, "sampling", False):  # a different (per-row) draw than batch_size=1
        setup["sampler"] = "per-row"
    store = EpisodeStore(out_dir, setup)
    keys = [(problem.id, sample) for problem in problems for sample in range(samples)]
    todo = set(store.todo(keys))
    if todo:
        store.start()
    hint = f"finished episodes are kept in {store.path}: rerun with the same output_dir to continue"
    with (
        deferred_signals(hint) as signals,
        JsonlAppender(store.path) as out,
        EvaluationProgress(len(todo), resumed=len(keys) - len(todo)) as progress,
    ):

        def keep(record: dict[str, Any]) -> None:
            record["metrics"] = episode_stats(record, count)
            out.append(record)
            store.done[(record["problem_id"], record["sample"])] = record
            progress.add(as_record(record))

        if batch_size > 1:
            run_episodes(
                policy,
                list(problems),
                agent=agent,
                batch_size=batch_size,
                samples=samples,
                seed=int(cfg.seed),
                only=todo,
                on_episode=keep,
                should_stop=lambda: bool(signals.received),
            )
        else:
            _one_at_a_time(cfg, policy, agent, problems, samples, todo, keep, signals)
    records = [store.done[key] for key in keys if key in store.done]
    for record in records:  # resumed episodes are measured the same way as this run's
        record["metrics"] = episode_stats(record, count)
    return records, len(keys), signals


def _one_at_a_time(
    cfg: DictConfig,
    policy: Any,
    agent: Any,
    problems: Any,
    samples: int,
    todo: set[tuple[str, int]],
    keep: Callable[[dict[str, Any]], None],
    signals: DeferredSignals,
) -> None:
    """``batch_size=1``: each episode alone, the samples' shared first turn drawn in one batch."""
    for problem in problems:
        if signals.received:
            break
        missing = [sample for sample in range(samples) if (problem.id, sample) in todo]
        firsts = _first_turns(policy, agent, problem, samples, cfg) if missing else None
        for sample in missing:
            if signals.received:
                break
            episode_policy = EpisodePolicy(
                policy, derive_seed(cfg.seed, problem.id, sample), firsts[sample] if firsts else None
            )
            keep({**agent.run(episode_policy, problem, sample=sample), "sample": sample})


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
            "teacher_forced.path needs a model policy (policy=hf / student=DIR): "
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
