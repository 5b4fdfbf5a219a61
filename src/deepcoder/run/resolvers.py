"""OmegaConf resolvers the shipped configs use; registered when a stage module is imported.

``${lora_or_full:${model.lora},LORA_LR,FULL_LR}``: a model config's learning rate, the LoRA one
when ``model.lora`` is set (true or a mapping), else the full fine-tuning one.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def lora_or_full(lora: Any, lora_value: Any, full_value: Any) -> Any:
    return full_value if lora is None or lora is False else lora_value


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("lora_or_full", lora_or_full, replace=True)
