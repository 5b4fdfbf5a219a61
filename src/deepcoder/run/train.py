"""Stage 2: trajectories → span-aware training → ``DIR/student/`` + ``DIR/metrics.json``.

``ckpt_path=last`` (or a checkpoint file) resumes an interrupted run in the same ``output_dir``:
Lightning restores weights, optimiser, schedule, step counters and the data order, so the run
continues exactly as if it had not stopped. Under DDP every rank runs this function; only rank
0 writes ``config.yaml``, ``student/`` and ``metrics.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Checkpoint, LearningRateMonitor
from omegaconf import DictConfig

from deepcoder.run.checks import check_supervised, check_train
from deepcoder.run.resolvers import register_resolvers
from deepcoder.training.callbacks import finish_wandb_runs
from deepcoder.training.distill_teacher import build_teacher
from deepcoder.training.hardware import resolve_trainer
from deepcoder.training.on_policy import build_mode, on_policy_teacher
from deepcoder.training.precision import check_precision, fp32_master_weights
from deepcoder.training.progress import log_interval, with_progress
from deepcoder.training.sharding import check_strategy
from deepcoder.utils.console import print_metrics
from deepcoder.utils.jsonl import save_config, write_json

register_resolvers()


def train(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    check_train(cfg)
    trainer_cfg = resolve_trainer(cfg.trainer)  # trainer=auto: GPU + bf16-mixed or CPU fp32 (first log line)
    check_strategy(trainer_cfg)
    precision = check_precision(trainer_cfg.precision, bool(cfg.get("low_precision_weights", False)))
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.output_dir)
    if rank_zero_only.rank == 0:  # type: ignore[attr-defined]  # Lightning sets it on the function
        save_config(cfg, output_dir)
    spec = instantiate(cfg.model)
    model, tokenizer = spec.load(seed=cfg.seed)
    student = spec.for_training(model, seed=cfg.seed)  # activation checkpointing, LoRA
    fp32_master_weights(student.model, precision)
    loss = instantiate(cfg.loss)
    live_teacher = instantiate(cfg.distill_teacher) if cfg.get("distill_teacher") else None
    span = instantiate(cfg.span)
    mode = build_mode(
        cfg.get("mode"), loss=loss, tokenizer=tokenizer, span=span, max_length=cfg.data.max_length, seed=cfg.seed
    )
    if mode is None:
        teacher = build_teacher(loss, live_teacher, model, tokenizer, getattr(spec, "name", ""), cfg.data.trajectories)
    else:  # the student's episodes need a live teacher, whatever the loss
        teacher = on_policy_teacher(live_teacher, model, tokenizer, getattr(spec, "name", ""))
    datamodule = instantiate(
        cfg.data,
        tokenizer=tokenizer,
        span=span,
        teacher_logprobs=loss.distills and teacher is None,  # stored top-k in the batches
        loss=loss,  # which spans get labels, and the window normaliser
    )
    datamodule.setup("fit")
    check_supervised(datamodule)
    module = instantiate(cfg.module)(
        student.model,
        loss,
        instantiate(cfg.optimizer),
        instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        teacher=teacher,
        on_policy=mode,
    )
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if not loggers:  # the learning-rate monitor has nowhere to write (and Lightning would refuse)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks = with_progress(callbacks, trainer_cfg)  # plain log lines when not on a terminal
    checkpointing = any(isinstance(c, Checkpoint) for c in callbacks)
    trainer = instantiate(
        trainer_cfg,
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=checkpointing,
        log_every_n_steps=log_interval(trainer_cfg),
        default_root_dir=str(output_dir),
    )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except BaseException:
        finish_wandb_runs(loggers, failed=True)
        raise
    finally:
        if mode is not None:
            mode.close()
    finish_wandb_runs(loggers)
    student_dir = output_dir / "student"
    metrics = {
        "model": getattr(spec, "name", type(spec).__name__),
        "loss": loss.name,
        "trainer": {"accelerator": trainer_cfg.accelerator, "precision": precision},
        "steps": trainer.global_step,
        **datamodule.stats(),
        "start": _window_mean(module.history, first=True, size=_window(module.history)),
        "end": _window_mean(module.history, first=False, size=_window(module.history)),
        "final": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "seconds": round(time.perf_counter() - started, 2),
        "student_dir": str(student_dir),
    }
    if not trainer.is_global_zero:
        return metrics
    student.save_pretrained(student_dir, tokenizer)
    write_json(output_dir / "metrics.json", metrics)
    print_metrics(
        f"train: {metrics['model']} loss={loss.name} → {student_dir}",
        {"steps": metrics["steps"], "start": metrics["start"], "end": metrics["end"]},
    )
    return metrics


def objective(metrics: dict[str, Any], name: str) -> float:
    """The value a Hydra sweeper minimises: ``name``'s mean over the last training steps, or its
    final logged value (``val/…`` metrics: the last validation)."""
    value = metrics["end"].get(name, metrics["final"].get(name))
    if value is None:
        known = sorted({*metrics["end"], *metrics["final"]})
        raise ValueError(
            f"optimized_metric={name} was not logged (validation needs data.val_fraction > 0); logged: {known}"
        )
    return float(value)


def _window(history: list[dict[str, float]]) -> int:
    """Up to 10 steps, and at most half the run, so start and end of a short run are different steps."""
    return min(10, max(1, len(history) // 2))


def _window_mean(history: list[dict[str, float]], first: bool, size: int = 10) -> dict[str, float]:
    """Mean of each training metric over the first (or last) ``size`` steps."""
    window = history[:size] if first else history[-size:]
    keys = sorted({key for row in window for key in row})
    return {
        key: round(sum(row[key] for row in window if key in row) / sum(1 for row in window if key in row), 5)
        for key in keys
    }
