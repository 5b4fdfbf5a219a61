"""Training progress fit for both a terminal and a log file.

On a terminal: Lightning's rich bar, with "Epoch N" rather than "Epoch N/-2" when epochs are
unbounded (``max_epochs=-1``, training by ``max_steps``). Elsewhere (SLURM logs, pipes), where a
redrawn bar becomes thousands of carriage returns: a plain line every ``log_every_s`` seconds and
at the last step — step/max_steps, loss, steps per second, ETA.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

log = logging.getLogger(__name__)


class StepBar(RichProgressBar):
    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs < 0:
            return f"Epoch {current_epoch}"
        return super()._get_train_description(current_epoch)


class LogLines(ProgressBar):
    """One log line of training progress every ``log_every_s`` seconds (rank 0 only)."""

    def __init__(self, log_every_s: float = 30.0) -> None:
        super().__init__()
        self.log_every_s = log_every_s
        self._enabled = True
        self._started = self._last = 0.0
        self._first_step = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self._last = time.perf_counter()
        self._first_step = trainer.global_step  # a resumed run starts past 0
        if trainer.is_global_zero:
            log.info("train: starting at step %d of %s", trainer.global_step, trainer.max_steps)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        now = time.perf_counter()
        last = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        if not self._enabled or not trainer.is_global_zero or (now - self._last < self.log_every_s and not last):
            return
        self._last = now
        log.info("%s", self.line(trainer, now))

    def line(self, trainer: L.Trainer, now: float) -> str:
        step, total = trainer.global_step, trainer.max_steps
        rate = (step - self._first_step) / (now - self._started) if now > self._started else 0.0
        loss = trainer.callback_metrics.get("train/loss")
        parts = [f"train: step {step}/{total if total > 0 else '?'}", f"epoch {trainer.current_epoch}"]
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        parts.append(f"{rate:.2f} steps/s")
        if total > 0 and rate > 0:
            parts.append(f"ETA {(total - step) / rate:.0f} s")
        return ", ".join(parts)


def progress_bar(log_every_s: float = 30.0) -> ProgressBar:
    """The bar on a terminal, plain log lines elsewhere."""
    return StepBar() if sys.stdout.isatty() else LogLines(log_every_s)


def with_progress(callbacks: list[Any], trainer_cfg: Any) -> list[Any]:
    """``callbacks`` plus :func:`progress_bar`, unless the trainer config turns bars off or a bar is there."""
    if trainer_cfg.get("enable_progress_bar") is False or any(isinstance(c, ProgressBar) for c in callbacks):
        return callbacks
    return [*callbacks, progress_bar()]


def log_interval(trainer_cfg: Any) -> int:
    """``log_every_n_steps`` capped at ``max_steps``, so a short run still writes metrics.csv rows."""
    every, max_steps = int(trainer_cfg.get("log_every_n_steps") or 50), int(trainer_cfg.get("max_steps") or -1)
    return min(every, max_steps) if max_steps > 0 else every
