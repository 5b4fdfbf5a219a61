"""Stage 3: the student (or any policy) as the agent on problems → ``report.json``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.progress import track

from deepcoder.evaluation import summarize, summarize_by
from deepcoder.utils.console import print_metrics
from deepcoder.utils.jsonl import JsonlAppender, save_config, write_json


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    output_dir = Path(cfg.output_dir)
    problems = instantiate(cfg.problems)
    save_config(cfg, output_dir)
    policy = instantiate(cfg.teacher)
    agent = instantiate(cfg.agent)
    episodes = output_dir / "episodes.jsonl"
    episodes.unlink(missing_ok=True)
    records = []
    with JsonlAppender(episodes) as out:
        for problem in track(problems, description="evaluate", transient=True):
            record = agent.run(policy, problem)
            out.append(record)
            records.append(record)
    report = {
        **summarize(records),
        "policy": {"provider": policy.provider, "model": policy.model},
        "by_category": summarize_by(records, "category"),
        "by_difficulty": summarize_by(records, "difficulty"),
        "problems": {r["problem_id"]: {"passed": r["passed"], "steps": len(r["steps"]), "stop": r["stop_reason"]}
                     for r in records},
        "seconds": round(time.perf_counter() - started, 2),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(output_dir / "report.json", report)
    if records and all(r.get("error") for r in records):
        raise RuntimeError(f"every episode failed in the policy, e.g. {records[0]['error']}; "
                           f"see {output_dir / 'episodes.jsonl'}")
    print_metrics(f"evaluate: {policy.provider}/{policy.model} on {len(records)} problems",
                  {key: report[key] for key in ("n", "pass_at_1", "action_validity", "mean_steps", "failures")})
    return report
