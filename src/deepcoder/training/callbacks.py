"""Training callbacks and logger helpers: W&B runs per Hydra job, sample trajectories as a Table.

``wandb_logger`` makes every job of a ``-m`` sweep (grid or Optuna) its own W&B run, named by
its overrides, with all jobs of the sweep in one group (the sweep directory), so the W&B UI
groups a comparison the way Hydra ran it; a resumed training run (``ckpt_path`` set) continues
the W&B run it left in its ``save_dir``. ``finish_wandb_runs`` closes each job's run: Hydra's
basic launcher runs jobs in one process, and Lightning would otherwise reuse the active run.
``TrajectoryTable`` logs a few training trajectories, coloured by span (``deepcoder.show``), once
at the start of training when a W&B logger is on; it does nothing otherwise. ``ResumableRNG``
carries the random number generators' states through a checkpoint, so dropout (LoRA's included)
continues after a resume as if the run had never stopped.
"""

from __future__ import annotations

import logging
import netrc
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, WandbLogger

from deepcoder.core.names import SPAN_NAMES

log = logging.getLogger(__name__)


def wandb_logger(
    group: str | None = None, name: str | None = None, resume_from: str | None = None, **kwargs: Any
) -> WandbLogger:
    """A ``WandbLogger`` whose group and name default to the Hydra sweep and the job's overrides.

    ``resume_from`` (the run's ``ckpt_path``): when set, the newest W&B run already in
    ``save_dir`` is continued (same id, W&B's ``resume="allow"``) instead of a new one started.
    Without a key (and no ``WANDB_MODE`` chosen) the run is offline, said in one log line.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        if hydra.mode == RunMode.MULTIRUN:
            group = group or f"{hydra.job.name}:{hydra.sweep.dir}"
            name = name or hydra.job.override_dirname or f"job{hydra.job.num}"
    if resume_from is not None and kwargs.get("id") is None:
        kwargs["id"] = previous_wandb_run(Path(kwargs.get("save_dir") or "."))
    if not kwargs.get("offline") and not os.environ.get("WANDB_MODE") and not has_wandb_credentials():
        kwargs["offline"] = True
        log.info(
            "W&B: no API key (WANDB_API_KEY or `wandb login`), so logging offline under %s; "
            "`wandb sync` uploads it later",
            Path(kwargs.get("save_dir") or ".") / "wandb",
        )
    logger = WandbLogger(group=group, name=name, **kwargs)
    init = getattr(logger, "_wandb_init", {})
    if init.get("anonymous") is None:  # Lightning always passes it; W&B warns that it has no effect
        init.pop("anonymous", None)
    return logger


def has_wandb_credentials() -> bool:
    """A W&B key in the environment or in the netrc file that ``wandb login`` writes."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def previous_wandb_run(save_dir: Path) -> str | None:
    """The id of the newest W&B run under ``save_dir/wandb`` (``[offline-]run-DATE_TIME-ID``), if any."""
    runs = [path.name for path in (save_dir / "wandb").glob("*run-*-*") if path.is_dir()]
    newest = max(runs, key=lambda run: run.removeprefix("offline-").split("-")[1], default=None)
    return None if newest is None else newest.rsplit("-", 1)[1]


def finish_wandb_runs(loggers: Sequence[Logger], failed: bool = False) -> None:
    """End the W&B run of each W&B logger (on ranks > 0 the experiment is a no-op stand-in)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=1 if failed else 0)


class TrajectoryTable(L.Callback):
    """Logs the first ``n`` training trajectories as a W&B Table: ids, tokens per span and the
    chat coloured by span (the HTML of ``deepcoder.spans.view.to_html``). W&B keeps a Table's media in
    its artifact copy, so the HTML views are also logged as the run's own media."""

    KEY = "samples/trajectories"
    HTML_KEY = "samples/spans"

    def __init__(self, n: int = 4) -> None:
        self.n = n

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers or not trainer.is_global_zero:
            return
        import wandb

        from deepcoder.records.schema import as_record
        from deepcoder.records.trajectories import load_trajectories
        from deepcoder.spans.view import render_tokens, to_html

        data = trajectory_source(trainer)
        columns = ["trajectory_id", "problem_id", "passed", *(f"tokens_{span}" for span in SPAN_NAMES), "spans"]
        rows = []
        for _, record in load_trajectories(data.path, data.only_passed)[: self.n]:
            tokens = render_tokens(data.tokenizer, as_record(record), data.span, data.mask_steps)
            counts = [sum(1 for t in tokens if t.span == span) for span in SPAN_NAMES]
            rows.append(
                [
                    record["trajectory_id"],
                    record["problem_id"],
                    record.get("passed"),
                    *counts,
                    wandb.Html(to_html(tokens)),
                ]
            )
        for logger in loggers:
            logger.log_table(key=self.KEY, columns=columns, data=rows)
            # The same views as HTML media of the run itself (files/media/html), viewable offline
            logger.experiment.log({self.HTML_KEY: [row[-1] for row in rows]})


class ResumableRNG(L.Callback):
    """Saves the Python, NumPy, torch and CUDA RNG states in every checkpoint and restores them at
    the first training batch after a resume.

    Lightning restores weights, optimiser and loop state but not the global generators, so a
    resumed run would draw different dropout masks. The states are those at the save, at the end
    of a training batch; nothing between that point and the next batch draws from them (the
    training loader has its own generator; validation runs without dropout), so restoring them
    at the next batch start puts the resumed run where the uninterrupted one was. Under DDP rank
    0's states are saved, and restored on every rank.
    """

    KEY = "rng_states"

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        state = np.random.get_state(legacy=True)
        if not isinstance(state, tuple):  # only a non-MT19937 global generator gives a dict
            raise TypeError(
                f"numpy's global generator is {state['bit_generator']}: RngStateCallback saves MT19937 only"
            )
        name, keys, position, has_gauss, gauss = state  # plain types: weights_only loading
        checkpoint[self.KEY] = {
            "python": random.getstate(),
            "numpy": (name, keys.tolist(), position, has_gauss, gauss),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(self.KEY)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is None:
            return
        states, self._pending = self._pending, None
        random.setstate(states["python"])
        name, keys, position, has_gauss, gauss = states["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def trajectory_source(trainer: L.Trainer) -> Any:
    """The datamodule the trajectories come from (its path, tokenizer, span strategy and filter)."""
    data = getattr(trainer, "datamodule", None)  # set by Lightning at fit time, not declared on Trainer
    if data is None or not all(hasattr(data, key) for key in ("path", "tokenizer", "span", "only_passed")):
        raise TypeError("TrajectoryTable needs the TrajectoryDataModule (trainer.fit(..., datamodule=...))")
    return data
