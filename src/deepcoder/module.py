"""The LightningModule: owns the student, applies the span loss, logs per-span metrics."""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch

from deepcoder.chunked_loss import ChunkedLoss, TeacherHead, chunked_span_loss
from deepcoder.data.spans import SPAN_INDEX, TRAINED_SPANS
from deepcoder.distill_teacher import FrozenTeacher
from deepcoder.losses import SpanLoss, TopKLogprobs

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")  # packed batches carry position_ids


class DistillationModule(L.LightningModule):
    """Trains a causal LM on span-labelled trajectories with a :class:`~deepcoder.losses.SpanLoss`.

    Logs ``train/loss`` (the micro-batch's own mean) and, per trained span, ``train/loss_<span>``
    (unweighted mean CE of that span's tokens), ``train/acc_<span>`` (next-token accuracy) and,
    with a teacher, ``train/kl_<span>`` (``jsd_<span>`` for ``jsd``: mean divergence to the
    teacher); the same under ``val/``. ``history`` keeps every training step's values for the
    start/end summary in ``metrics.json``.

    The teacher's distribution comes from ``teacher`` (a live :class:`FrozenTeacher`, run on the
    same inputs) or from the batch: ``teacher_ids``/``teacher_logprobs`` ``[B, T, k]``, aligned
    with ``labels`` (position t holds the teacher's top-k for token t). With top-k logprobs,
    ``kl_<span>`` averages only the tokens that have them, and ``<stage>/teacher_coverage`` is the
    share of supervised tokens that do (the rest train on CE; see :mod:`deepcoder.losses`).

    Exact accumulation and DDP: a training batch's ``window_tokens`` is the supervised-token count
    of its whole accumulation window over all ranks, the loss's one normaliser. Lightning divides
    each micro-batch loss by ``accumulate_grad_batches`` and DDP averages gradients over
    ``world_size`` ranks; the loss is multiplied by both, so a step equals one big batch's.
    """

    def __init__(self, model: torch.nn.Module, loss: SpanLoss, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, chunk_size: int = 512,
                 teacher: FrozenTeacher | None = None) -> None:
        super().__init__()
        self.model, self.loss, self.optimizer_factory, self.scheduler_factory = model, loss, optimizer, scheduler
        self.chunk_size, self.teacher = chunk_size, teacher
        self.save_hyperparameters(ignore=["model", "loss", "optimizer", "scheduler", "teacher"])
        self.history: list[dict[str, float]] = []

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Hidden states → chunked projection + loss on supervised positions only (no full logits)."""
        inputs = {key: batch[key] for key in MODEL_INPUTS if batch.get(key) is not None}
        # use_cache=False: no KV cache in training, and transformers only detects packed
        # sequences (block-causal attention from restarting position_ids) when there is none
        hidden = self.model.get_decoder()(**inputs, use_cache=False).last_hidden_state
        head = self.model.get_output_embeddings()
        window = batch.get("window_tokens")  # training: the accumulation window's supervised tokens
        result = chunked_span_loss(hidden[:, :-1], head.weight, batch["labels"][:, 1:], batch["span_ids"][:, 1:],
                                   self.loss.weights, bias=head.bias, chunk_size=self.chunk_size, num_tokens=window,
                                   teacher=self._teacher(batch, inputs),
                                   divergence=self.loss.divergence or "forward_kl", temperature=self.loss.temperature,
                                   beta=self.loss.beta, ce_weight=self.loss.ce_weight)
        # The window count normalises the whole window on every rank: undo Lightning's division
        # by accumulate_grad_batches and DDP's gradient averaging, so the step is exact.
        scale = self.trainer.accumulate_grad_batches * self.trainer.world_size if window is not None else 1
        local_tokens = max(result.span_ids.numel(), 1)
        own_mean = result.loss.detach() * (window / local_tokens if window is not None else 1)
        self._log_metrics(stage, result, own_mean, batch["input_ids"].shape[0])
        return result.loss * scale

    def _teacher(self, batch: dict[str, torch.Tensor],
                 inputs: dict[str, torch.Tensor]) -> TeacherHead | TopKLogprobs | None:
        """The teacher's distribution for this batch, shifted like the labels; None for CE losses."""
        if not self.loss.distills:
            return None
        if self.teacher is not None:
            teacher = self.teacher.to(batch["input_ids"].device)
            return TeacherHead(teacher.hidden_states(**inputs)[:, :-1], teacher.weight, teacher.bias)
        if batch.get("teacher_ids") is not None:
            return TopKLogprobs(batch["teacher_ids"][:, 1:], batch["teacher_logprobs"][:, 1:])
        raise ValueError(f"loss={self.loss.name} needs a teacher: no live teacher, and the batch carries no "
                         "teacher_ids/teacher_logprobs")

    def _log_metrics(self, stage: str, result: ChunkedLoss, loss: torch.Tensor, batch_size: int) -> None:
        """Per-span CE, accuracy and (with a teacher) divergence; step values kept in ``history``."""
        prefix = "jsd" if self.loss.divergence == "jsd" else "kl"
        present = result.teacher_present  # top-k teachers: tokens with a teacher distribution
        metrics: dict[str, torch.Tensor] = {}
        for span in sorted(TRAINED_SPANS):
            mask = result.span_ids == SPAN_INDEX[span]
            if mask.any():
                metrics[f"{stage}/loss_{span}"] = result.token_loss[mask].mean()
                metrics[f"{stage}/acc_{span}"] = result.correct[mask].float().mean()
                taught = mask if present is None else mask & present
                if result.divergence is not None and taught.any():
                    metrics[f"{stage}/{prefix}_{span}"] = result.divergence[taught].mean()
        if present is not None and present.numel():
            metrics[f"{stage}/teacher_coverage"] = present.float().mean()
        on_step = stage == "train"
        self.log_dict(metrics, on_step=on_step, on_epoch=not on_step, batch_size=batch_size)
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step, batch_size=batch_size)
        if on_step:
            self.history.append({f"{stage}/loss": float(loss), **{key: float(value) for key, value in metrics.items()}})

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
