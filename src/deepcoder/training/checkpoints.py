"""A checkpoint at Ctrl-C and SIGTERM (a SLURM time limit, ``scancel``), taken at a step boundary.

SIGINT and SIGTERM are noted (:mod:`deepcoder.utils.signals`); the next ``on_train_batch_end``
raises :class:`SignalStop`, and Lightning's ``on_exception`` hook saves ``last.ckpt`` in the
periodic checkpoint's folder, so the saved weights, optimiser and loader position belong to one
finished step and ``ckpt_path=last`` continues from it. (Lightning's ``OnExceptionCheckpoint``
saves on any error, possibly mid-step, and makes every later ``fit`` resume by itself; neither
is wanted.) A second Ctrl-C while the step finishes stops at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from deepcoder.utils.signals import DeferredSignals, SignalStop


class SignalCheckpoint(Checkpoint):
    def __init__(self, dirpath: str, filename: str = "last") -> None:
        super().__init__()
        self.ckpt_path = str(Path(dirpath) / f"{filename}.ckpt")
        self._signals = DeferredSignals(
            "last.ckpt holds the last finished step: rerun with the same output_dir and ckpt_path=last to continue",
            chain_sigterm=True,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._signals.install()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._signals.check()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._signals.restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._signals.restore()
        if isinstance(exception, SignalStop) or type(exception).__name__ == "SIGTERMException":
            trainer.save_checkpoint(self.ckpt_path)
