"""Students saved part-way through training, for learning curves of evaluated metrics.

A held-out pass@1 curve needs the student as it was after N optimizer steps, runnable by
``evaluate.py student=DIR``: :class:`StudentSnapshots` writes a plain Hugging Face checkpoint at
each of ``at_steps`` (``DIR/step_<N>/``), with ``snapshot.json`` saying how many tokens the
student had been trained on by then (every rank's rows counted). ``DIR/tokens.json`` holds the
totals at the end of training, so the final student is a point of the same curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from transformers import PreTrainedModel

from deepcoder.core.names import IGNORE_INDEX
from deepcoder.policies.decoding import Decoding
from deepcoder.utils.jsonl import write_json


class StudentSnapshots(L.Callback):
    """Save the student at the given optimizer steps, and count the tokens it was trained on."""

    def __init__(self, dirpath: str, at_steps: Sequence[int] = (), max_new_tokens: int = 512) -> None:
        bad = [step for step in at_steps if not isinstance(step, int) or step < 1]
        if bad:
            raise ValueError(f"callbacks.student_snapshots.at_steps: steps must be integers >= 1, got {bad}")
        self.dirpath = Path(dirpath)
        self.at_steps = sorted(set(at_steps))
        self.max_new_tokens = max_new_tokens  # the evaluation's turn length, as in the final student/
        self.tokens = {"supervised_tokens": 0, "input_tokens": 0}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if any("lora_" in name for name, _ in pl_module.named_parameters()):
            raise ValueError(
                "callbacks.student_snapshots: LoRA students cannot be snapshotted mid-run (merging ends "
                "training); drop the callback (~callbacks.student_snapshots) or train without model.lora"
            )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        counts = torch.stack([(batch["labels"] != IGNORE_INDEX).sum(), batch["attention_mask"].sum()]).to(
            pl_module.device, torch.float64
        )
        counts = trainer.strategy.reduce(counts, reduce_op="sum")
        self.tokens["supervised_tokens"] += int(counts[0])
        self.tokens["input_tokens"] += int(counts[1])
        step = trainer.global_step
        at_boundary = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if at_boundary and step in self.at_steps and trainer.is_global_zero:
            self._save(trainer, pl_module, self.dirpath / f"step_{step}", step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            write_json(self.dirpath / "tokens.json", {"step": trainer.global_step, **self.tokens})

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": dict(self.tokens)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tokens = dict(state_dict["tokens"])

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, directory: Path, step: int) -> None:
        """The same files as the final ``student/``: weights, tokenizer, the evaluation's greedy decoding."""
        model: PreTrainedModel = pl_module.model  # type: ignore[assignment]  # DistillationModule's student
        tokenizer = trainer.datamodule.tokenizer  # type: ignore[attr-defined]
        training_config = model.generation_config
        model.generation_config = Decoding(max_new_tokens=self.max_new_tokens).generation_config(tokenizer, stop=False)
        try:
            model.save_pretrained(directory)
        finally:
            model.generation_config = training_config
        tokenizer.save_pretrained(directory)
        write_json(directory / "snapshot.json", {"step": step, **self.tokens})
