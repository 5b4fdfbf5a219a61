"""Hydra entry point: `python generate.py key=value …` (see conf/generate.yaml)."""

import hydra
from omegaconf import DictConfig

from deepcoder.run.cli import preflight, stage_errors
from deepcoder.run.generate import generate


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
@stage_errors
def main(cfg: DictConfig) -> None:
    generate(cfg)


if __name__ == "__main__":
    preflight("generate")
    main()
