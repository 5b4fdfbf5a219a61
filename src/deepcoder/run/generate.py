"""Stage 1: problems → teacher agent episodes → ``trajectories.jsonl`` + ``report.json``."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from deepcoder.generation import generate_trajectories
from deepcoder.generation.report import print_report
from deepcoder.generation.shards import check_shard
from deepcoder.run.checks import check_generate, check_problems
from deepcoder.utils.jsonl import save_config


def generate(cfg: DictConfig) -> dict[str, Any]:
    check_generate(cfg)
    check_shard(cfg.shard, cfg.num_shards)  # before any cost: loading problems, a teacher's model check
    problems = instantiate(cfg.problems)
    check_problems(problems, cfg)
    save_config(cfg, cfg.output_dir)
    teacher = instantiate(cfg.teacher)
    agent = instantiate(cfg.agent)
    report = generate_trajectories(
        problems,
        teacher,
        agent,
        cfg.output_dir,
        num_workers=cfg.num_workers,
        shard=cfg.shard,
        num_shards=cfg.num_shards,
    )
    shard = f" (shard {cfg.shard} of {cfg.num_shards})" if cfg.num_shards > 1 else ""
    print_report(f"generate: {teacher.provider}/{teacher.model}{shard} → {cfg.output_dir}", report)
    return report
