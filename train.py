"""Hydra entry point: `python train.py key=value …` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from deepcoder.run.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Returns the final training loss, the objective a Hydra sweeper minimises."""
    return train(cfg)["end"].get("train/loss", float("nan"))


if __name__ == "__main__":
    main()
