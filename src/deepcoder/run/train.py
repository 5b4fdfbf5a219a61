"""Stage 2: trajectories → span-aware training → ``DIR/student/`` + ``DIR/metrics.json``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from deepcoder.module import DistillationModule
from deepcoder.utils.console import print_metrics
from deepcoder.utils.jsonl import save_config, write_json


def train(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.output_dir)
    save_config(cfg, output_dir)
    spec = instantiate(cfg.model)
    model, tokenizer = spec.load(seed=cfg.seed)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer, span=instantiate(cfg.span))
    datamodule.setup("fit")
    loss = instantiate(cfg.loss)
    module = DistillationModule(model, loss, instantiate(cfg.optimizer),
                                instantiate(cfg.scheduler) if cfg.get("scheduler") else None)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks,
                          enable_checkpointing=checkpointing, default_root_dir=str(output_dir))
    trainer.fit(module, datamodule=datamodule)
    student_dir = output_dir / "student"
    model.save_pretrained(student_dir)
    tokenizer.save_pretrained(student_dir)
    metrics = {
        "model": getattr(spec, "name", type(spec).__name__),
        "loss": loss.name,
        "steps": trainer.global_step,
        **datamodule.stats(),
        "start": _window_mean(module.history, first=True),
        "end": _window_mean(module.history, first=False),
        "final": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "seconds": round(time.perf_counter() - started, 2),
        "student_dir": str(student_dir),
    }
    write_json(output_dir / "metrics.json", metrics)
    print_metrics(f"train: {metrics['model']} loss={loss.name} → {student_dir}",
                  {"steps": metrics["steps"], "start": metrics["start"], "end": metrics["end"]})
    return metrics


def _window_mean(history: list[dict[str, float]], first: bool, size: int = 10) -> dict[str, float]:
    """Mean of each training metric over the first (or last) ``size`` steps."""
    window = history[:size] if first else history[-size:]
    keys = sorted({key for row in window for key in row})
    return {key: round(sum(row[key] for row in window if key in row) / sum(1 for row in window if key in row), 5)
            for key in keys}
