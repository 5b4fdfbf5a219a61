"""Hydra entry point: `python evaluate.py key=value …` (see conf/evaluate.yaml)."""

import hydra
from omegaconf import DictConfig

from deepcoder.run.cli import preflight, stage_errors
from deepcoder.run.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@stage_errors
def main(cfg: DictConfig) -> float:
    return evaluate(cfg)["pass_at_1"]  # the sweeper's objective in a -m run


if __name__ == "__main__":
    preflight("evaluate")
    main()
