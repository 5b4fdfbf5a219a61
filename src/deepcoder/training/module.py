"""The LightningModule: owns the student, applies the span loss, logs per-span metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from transformers import PreTrainedModel

from deepcoder.core.names import SPAN_INDEX, TRAINED_SPANS
from deepcoder.losses import FORWARD_KL, SpanLoss, TopKLogprobs
from deepcoder.training.chunked_loss import ChunkedLoss, TeacherHead, chunked_span_loss
from deepcoder.training.distill_teacher import FrozenTeacher
from deepcoder.training.on_policy import OnPolicy
from deepcoder.training.sharding import engine_divides_by_accumulation, loss_scale

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")  # packed batches carry position_ids


class DistillationModule(L.LightningModule):
    """Trains a causal LM on span-labelled trajectories with a :class:`~deepcoder.losses.SpanLoss`.

    Logs ``train/loss`` (the micro-batch's own Σw·ℓ over its own normaliser) and, per supervised
    span (``observation`` too with ``loss.observation`` > 0), ``train/loss_<span>``
    (unweighted mean CE of that span's tokens), ``train/acc_<span>`` (next-token accuracy) and,
    with a teacher, ``train/kl_<span>`` (``jsd_<span>`` for ``jsd``: mean divergence to the
    teacher); the same under ``val/``. ``history`` keeps every training step's values for the
    start/end summary in ``metrics.json``. Validation metrics are exact token means over the
    whole validation set: sums and token counts are added up over its batches and over the DDP
    ranks (each validates its share, see the data module), then divided once at the epoch's end.

    The teacher's distribution comes from ``teacher`` (a live :class:`FrozenTeacher`, run on the
    same inputs) or from the batch: ``teacher_ids``/``teacher_logprobs`` ``[B, T, k]``, aligned
    with ``labels`` (position t holds the teacher's top-k for token t). With top-k logprobs,
    ``kl_<span>`` averages only the tokens that have them, and ``<stage>/teacher_coverage`` is the
    share of supervised tokens that do (the rest train on CE; see :mod:`deepcoder.losses`).

    ``on_policy`` (``mode=on_policy``, :mod:`deepcoder.training.on_policy`) makes some training steps
    train on the student's own episodes instead of ``batch``; they log under ``on_policy/``.

    Exact accumulation and DDP: a training batch's ``window_norm`` is the normaliser of its whole
    accumulation window over all ranks (its supervised-token count, or with ``loss.normalize=weights``
    the sum of their weights), the loss's one normaliser. Lightning divides
    each micro-batch loss by ``accumulate_grad_batches`` and DDP averages gradients over
    ``world_size`` ranks; the loss is multiplied by both, so a step equals one big batch's (under
    DeepSpeed, whose engine divides by the accumulation steps again, by that too; ZeRO-3 is
    refused at start: see :mod:`deepcoder.training.sharding`).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        loss: SpanLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        chunk_size: int = 512,
        teacher: FrozenTeacher | None = None,
        on_policy: OnPolicy | None = None,
    ) -> None:
        super().__init__()
        self.model, self.loss, self.optimizer_factory, self.scheduler_factory = model, loss, optimizer, scheduler
        self.chunk_size, self.teacher, self.on_policy = chunk_size, teacher, on_policy
        self.save_hyperparameters(ignore=["model", "loss", "optimizer", "scheduler", "teacher", "on_policy"])
        self.history: list[dict[str, float]] = []
        divergence = [f"{'jsd' if loss.divergence == 'jsd' else 'kl'}_{span}" for span in sorted(TRAINED_SPANS)]
        self.val_keys = [
            "loss",
            *(f"{kind}_{span}" for span in sorted(loss.supervised_spans) for kind in ("loss", "acc")),
            *(divergence + ["teacher_coverage"] if loss.distills else []),
        ]
        self._val_totals: torch.Tensor | None = None  # [metric, (sum, tokens)] of this rank's validation

    def _step(self, batch: dict[str, torch.Tensor], stage: str, loss: SpanLoss | None = None) -> torch.Tensor:
        """Hidden states → chunked projection + loss on supervised positions only (no full logits).
        ``loss``: another loss than the module's (the on-policy one, logged under ``stage``)."""
        loss = loss or self.loss
        inputs = {key: batch[key] for key in MODEL_INPUTS if batch.get(key) is not None}
        # use_cache=False: no KV cache in training, and transformers only detects packed
        # sequences (block-causal attention from restarting position_ids) when there is none
        hidden = self.model.get_decoder()(**inputs, use_cache=False).last_hidden_state
        head = self.model.get_output_embeddings()
        window = batch.get("window_norm")  # training: the accumulation window's normaliser
        steps = batch.get("step_ids")
        result = chunked_span_loss(
            hidden[:, :-1],
            head.weight,
            batch["labels"][:, 1:],
            batch["span_ids"][:, 1:],
            loss.weights,
            bias=head.bias,
            chunk_size=self.chunk_size,
            num_tokens=window,
            teacher=self._teacher(batch, inputs, loss),
            divergence=loss.distillation or FORWARD_KL,
            step_ids=None if steps is None else steps[:, 1:],
            step_decay=loss.step_decay,
            normalize=loss.normalize,
        )
        # The window count normalises the whole window on every rank: undo Lightning's division
        # by accumulate_grad_batches, DDP's gradient averaging (and DeepSpeed's second division).
        trainer = self._trainer  # None when the step runs outside a Trainer (benchmarks)
        scale = 1
        if trainer is not None and stage != "val":
            scale = loss_scale(
                trainer.accumulate_grad_batches,
                trainer.world_size,
                window is not None,
                engine_divides_by_accumulation(getattr(trainer, "strategy", None)),
            )
        own_norm = result.span_ids.numel() if loss.normalize == "tokens" else result.weight.sum()
        sums = {"loss": (result.total, own_norm), **self._metric_sums(result, loss)}
        if stage == "val":
            self._accumulate(sums)
        else:
            self._log_step(stage, sums, batch["input_ids"].shape[0])
        return result.loss * scale

    def _teacher(
        self, batch: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor], loss: SpanLoss
    ) -> TeacherHead | TopKLogprobs | None:
        """The teacher's distribution for this batch, shifted like the labels; None for CE losses."""
        if not loss.distills:
            return None
        if self.teacher is not None:
            teacher = self.teacher.to(batch["input_ids"].device)
            return TeacherHead(teacher.hidden_states(**inputs)[:, :-1], teacher.weight, teacher.bias)
        if batch.get("teacher_ids") is not None:
            return TopKLogprobs(batch["teacher_ids"][:, 1:], batch["teacher_logprobs"][:, 1:])
        raise ValueError(
            f"loss={loss.name} needs a teacher: no live teacher, and the batch carries no teacher_ids/teacher_logprobs"
        )

    def _metric_sums(self, result: ChunkedLoss, loss: SpanLoss) -> dict[str, tuple[torch.Tensor, int | torch.Tensor]]:
        """Per metric: its sum over this batch's supervised tokens and how many tokens it covers."""
        prefix = "jsd" if loss.divergence == "jsd" else "kl"
        present = result.teacher_present  # top-k teachers: tokens with a teacher distribution
        sums: dict[str, tuple[torch.Tensor, int | torch.Tensor]] = {}
        for span in sorted(loss.supervised_spans):
            mask = result.span_ids == SPAN_INDEX[span]
            sums[f"loss_{span}"] = (result.token_loss[mask].sum(), mask.sum())
            sums[f"acc_{span}"] = (result.correct[mask].sum(), mask.sum())
            if result.divergence is not None and span in TRAINED_SPANS:  # observations: CE, no teacher
                taught = mask if present is None else mask & present
                sums[f"{prefix}_{span}"] = (result.divergence[taught].sum(), taught.sum())
        if present is not None:
            distilled = result.span_ids != SPAN_INDEX["observation"]
            sums["teacher_coverage"] = ((present & distilled).sum(), distilled.sum())
        return sums

    def _log_step(self, stage: str, sums: dict[str, tuple[torch.Tensor, Any]], batch_size: int) -> None:
        """This step's means (metrics without tokens in the batch are left out), kept in ``history`` too."""
        metrics = {f"{stage}/{key}": total / count for key, (total, count) in sums.items() if count > 0}
        loss = metrics.pop(f"{stage}/loss", torch.zeros(()))  # an all-masked batch: 0
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log_dict(metrics, batch_size=batch_size)
        self.history.append({f"{stage}/loss": float(loss), **{key: float(value) for key, value in metrics.items()}})

    def _accumulate(self, sums: dict[str, tuple[torch.Tensor, Any]]) -> None:
        if self._val_totals is None:
            self._val_totals = torch.zeros(len(self.val_keys), 2, dtype=torch.float64, device=self.device)
        for key, (total, count) in sums.items():
            row = self._val_totals[self.val_keys.index(key)]
            row += torch.stack(
                [
                    torch.as_tensor(total, dtype=torch.float64, device=row.device),
                    torch.as_tensor(count, dtype=torch.float64, device=row.device),
                ]
            )

    def on_validation_epoch_start(self) -> None:
        self._val_totals = None

    def on_validation_epoch_end(self) -> None:
        """Each metric's total over the validation set, all ranks added up, divided by its token count."""
        if self._val_totals is None:
            return
        totals = self.trainer.strategy.reduce(self._val_totals, reduce_op="sum")
        for key, (total, count) in zip(self.val_keys, totals.tolist()):
            if count > 0:  # a span or teacher absent from the whole validation set has no mean
                self.log(f"val/{key}", total / count, prog_bar=key == "loss", sync_dist=True)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.on_policy is not None and self.on_policy.is_on_policy(self.global_step):
            return self.on_policy.training_step(self, batch_idx)  # the student's own episodes, not ``batch``
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer=optimizer, num_training_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
