"""Stage 1: problems → teacher agent episodes → ``trajectories.jsonl`` + ``report.json``."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from deepcoder.generation import generate_trajectories
from deepcoder.utils.console import print_metrics
from deepcoder.utils.jsonl import save_config


def generate(cfg: DictConfig) -> dict[str, Any]:
    problems = instantiate(cfg.problems)
    save_config(cfg, cfg.output_dir)
    teacher = instantiate(cfg.teacher)
    agent = instantiate(cfg.agent)
    report = generate_trajectories(problems, teacher, agent, cfg.output_dir, num_workers=cfg.num_workers)
    shown = {key: report[key] for key in ("n_problems", "n_resumed", "n_new", "n_trajectories", "n_passed",
                                          "n_errors", "pass_rate", "seconds")}
    print_metrics(f"generate: {teacher.provider}/{teacher.model} → {cfg.output_dir}", shown)
    return report
