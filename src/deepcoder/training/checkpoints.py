"""A checkpoint at Ctrl-C and SIGTERM (a SLURM time limit, ``scancel``), taken at a step boundary.

SIGINT and SIGTERM set a flag; the next ``on_train_batch_end`` raises :class:`SignalStop`, and
Lightning's ``on_exception`` hook saves ``last.ckpt`` in the periodic checkpoint's folder, so the
saved weights, optimiser and loader position belong to one finished step and ``ckpt_path=last``
continues from it. (Lightning's ``OnExceptionCheckpoint`` saves on any error, possibly mid-step,
and makes every later ``fit`` resume by itself; neither is wanted.) A second Ctrl-C while the
step finishes stops at once.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint


class SignalStop(SystemExit):
    """Training stopped by ``signame`` at a step boundary; the exit status is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signame = signal.Signals(signum).name


class SignalCheckpoint(Checkpoint):
    def __init__(self, dirpath: str, filename: str = "last") -> None:
        super().__init__()
        self.ckpt_path = str(Path(dirpath) / f"{filename}.ckpt")
        self._received: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._received = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        if self._received is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self._received = signum
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and callable(previous):  # Lightning's: it tells the other DDP ranks
            previous(signum, frame)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._received is not None:
            raise SignalStop(self._received)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, SignalStop) or type(exception).__name__ == "SIGTERMException":
            trainer.save_checkpoint(self.ckpt_path)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
