"""Every shipped config composes, and every option's ``_target_`` accepts its keys (litgpt style)."""

from __future__ import annotations

import inspect

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from conftest import ROOT

CONF = ROOT / "conf"
PRIMARY = {
    "generate": ["problems", "teacher", "agent"],
    "evaluate": ["problems", "policy", "agent"],
    "train": ["model", "loss", "span", "data", "trainer", "logger", "callbacks", "experiment", "debug"],
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def targets(node) -> list[DictConfig]:
    """Every mapping with a ``_target_`` inside ``node``."""
    found = []
    if isinstance(node, DictConfig):
        if "_target_" in node:
            found.append(node)
        for key in node:
            found += targets(node._get_node(key)) if isinstance(node._get_node(key), DictConfig) else []
    return found


@pytest.mark.parametrize(
    "primary,group,option", [(p, g, o) for p, groups in PRIMARY.items() for g in groups for o in options(g)]
)
def test_option_composes_and_matches_its_target(primary, group, option):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        extra = ["data.trajectories=x.jsonl"] if primary == "train" else []
        extra += ["problems.path=x.jsonl"] if (group, option) == ("problems", "jsonl") else []
        cfg = compose(primary, [f"{group}={option}", *extra])
    for node in targets(cfg):
        target = get_object(node._target_)
        signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        keys = {k for k in node if not k.startswith("_")}
        assert accepts_any or keys <= set(signature.parameters), f"{group}/{option}: {keys - set(signature.parameters)}"
    OmegaConf.to_container(cfg, resolve=False)
