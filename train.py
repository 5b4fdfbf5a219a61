"""Hydra entry point: `python train.py key=value …` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from deepcoder.run.cli import preflight, stage_errors
from deepcoder.run.train import objective, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@stage_errors
def main(cfg: DictConfig) -> float:
    """Returns ``optimized_metric`` (default: the mean training loss of the last steps), the
    objective a Hydra sweeper (``hparams_search=optuna``) minimises."""
    return objective(train(cfg), cfg.optimized_metric)


if __name__ == "__main__":
    preflight("train")
    main()
