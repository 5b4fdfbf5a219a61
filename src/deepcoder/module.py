"""The LightningModule: owns the student, applies the span loss, logs per-span metrics."""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch

from deepcoder.chunked_loss import chunked_span_loss
from deepcoder.data.spans import SPAN_INDEX, TRAINED_SPANS
from deepcoder.losses import SpanLoss

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")  # packed batches carry position_ids


class DistillationModule(L.LightningModule):
    """Trains a causal LM on span-labelled trajectories with a :class:`~deepcoder.losses.SpanLoss`.

    Logs ``train/loss`` and, per trained span, ``train/loss_<span>`` (unweighted mean CE of that
    span's tokens) and ``train/acc_<span>`` (next-token accuracy); the same under ``val/``.
    ``history`` keeps every training step's values for the start/end summary in ``metrics.json``.
    """

    def __init__(self, model: torch.nn.Module, loss: SpanLoss, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, chunk_size: int = 1024) -> None:
        super().__init__()
        self.model, self.loss, self.optimizer_factory, self.scheduler_factory = model, loss, optimizer, scheduler
        self.chunk_size = chunk_size
        self.save_hyperparameters(ignore=["model", "loss", "optimizer", "scheduler"])
        self.history: list[dict[str, float]] = []

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Hidden states → chunked projection + loss on supervised positions only (no full logits)."""
        backbone = getattr(self.model, self.model.base_model_prefix)
        inputs = {key: batch[key] for key in MODEL_INPUTS if batch.get(key) is not None}
        hidden = backbone(**inputs).last_hidden_state
        head = self.model.get_output_embeddings()
        window = batch.get("window_tokens")  # training: the accumulation window's supervised tokens
        result = chunked_span_loss(hidden[:, :-1], head.weight, batch["labels"][:, 1:], batch["span_ids"][:, 1:],
                                   self.loss.weights, bias=head.bias, chunk_size=self.chunk_size, num_tokens=window)
        # Lightning divides each micro-batch loss by accumulate_grad_batches; the window count
        # already normalises the whole window, so undo that division: accumulation is then exact.
        loss = result.loss * (self.trainer.accumulate_grad_batches if window is not None else 1)
        metrics: dict[str, torch.Tensor] = {}
        for span in sorted(TRAINED_SPANS):
            mask = result.span_ids == SPAN_INDEX[span]
            if mask.any():
                metrics[f"{stage}/loss_{span}"] = result.token_loss[mask].mean()
                metrics[f"{stage}/acc_{span}"] = result.correct[mask].float().mean()
        batch_size = batch["input_ids"].shape[0]
        on_step = stage == "train"
        self.log_dict(metrics, on_step=on_step, on_epoch=not on_step, batch_size=batch_size)
        self.log(f"{stage}/loss", loss.detach(), prog_bar=True, on_step=on_step, on_epoch=not on_step,
                 batch_size=batch_size)
        if on_step:
            self.history.append({f"{stage}/loss": float(loss.detach()),
                                 **{key: float(value) for key, value in metrics.items()}})
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
