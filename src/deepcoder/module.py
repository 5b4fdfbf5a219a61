"""The LightningModule: owns the student, applies the span loss, logs per-span metrics."""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch

from deepcoder.data.spans import SPAN_INDEX, TRAINED_SPANS
from deepcoder.losses import IGNORE_INDEX, SpanLoss


class DistillationModule(L.LightningModule):
    """Trains a causal LM on span-labelled trajectories with a :class:`~deepcoder.losses.SpanLoss`.

    Logs ``train/loss`` and, per trained span, ``train/loss_<span>`` (unweighted mean CE of that
    span's tokens) and ``train/acc_<span>`` (next-token accuracy); the same under ``val/``.
    ``history`` keeps every training step's values for the start/end summary in ``metrics.json``.
    """

    def __init__(self, model: torch.nn.Module, loss: SpanLoss, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.model, self.loss, self.optimizer_factory, self.scheduler_factory = model, loss, optimizer, scheduler
        self.save_hyperparameters(ignore=["model", "loss", "optimizer", "scheduler"])
        self.history: list[dict[str, float]] = []

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels, spans = logits[:, :-1], batch["labels"][:, 1:], batch["span_ids"][:, 1:]
        token = self.loss.token_losses(logits, labels)
        loss = self.loss.reduce(token, labels, spans)
        metrics: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            correct = (logits.argmax(-1) == labels) & (labels != IGNORE_INDEX)
            for span in sorted(TRAINED_SPANS):
                mask = (spans == SPAN_INDEX[span]) & (labels != IGNORE_INDEX)
                if mask.any():
                    metrics[f"{stage}/loss_{span}"] = token[mask].mean()
                    metrics[f"{stage}/acc_{span}"] = correct[mask].float().mean()
        batch_size = batch["input_ids"].shape[0]
        self.log_dict(metrics, prog_bar=False, on_step=stage == "train", on_epoch=stage != "train",
                      batch_size=batch_size)
        self.log(f"{stage}/loss", loss.detach(), prog_bar=True, batch_size=batch_size,
                 on_step=stage == "train", on_epoch=stage != "train")
        if stage == "train":
            self.history.append({"train/loss": float(loss.detach()), **{key: float(value) for key, value in metrics.items()}})
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer,
                                           num_training_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
