"""``trainer=auto`` (the default): a CUDA GPU in ``bf16-mixed`` when there is one, else the CPU in
fp32, deterministic (exactly ``trainer=cpu``). Resolved before the Trainer is built, and said in
the run's first log line."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def resolve_trainer(trainer: DictConfig) -> DictConfig:
    """``trainer`` with ``accelerator: auto``/``precision: auto`` made concrete for this machine."""
    container = OmegaConf.to_container(trainer, resolve=True)
    if not isinstance(container, dict):
        raise TypeError(f"trainer: expected a mapping of Trainer arguments, got {type(container).__name__}")
    resolved = OmegaConf.create(container)
    if resolved.get("accelerator") != "auto" and resolved.get("precision") != "auto":
        return resolved
    if resolved.get("accelerator") == "auto":
        cuda = torch.cuda.is_available()
        resolved.accelerator = "gpu" if cuda else "cpu"
        resolved.deterministic = bool(resolved.get("deterministic")) and not cuda
    if resolved.get("precision") == "auto":
        if resolved.accelerator in ("gpu", "cuda"):
            resolved.precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        else:
            resolved.precision = "32-true"
    where = f"{torch.cuda.get_device_name(0)} (CUDA)" if resolved.accelerator in ("gpu", "cuda") else "CPU"
    log.info("trainer=auto: %s, precision %s", where, resolved.precision)
    return resolved
