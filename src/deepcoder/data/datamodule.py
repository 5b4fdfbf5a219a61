"""The LightningDataModule: trajectories → rendered examples → dynamically padded batches."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from deepcoder.data.cache import cached_examples, dataset_key
from deepcoder.data.render import IGNORE_INDEX, RenderedExample, SpanStrategy, render_trajectory
from deepcoder.data.spans import SPAN_INDEX
from deepcoder.data.trajectories import load_trajectories
from deepcoder.data.windows import WindowBatchSampler, WindowTagged, supervised_tokens


def collate(examples: list[RenderedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example of the batch; padding is never supervised."""
    length = max(len(e) for e in examples)

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([row + [value] * (length - len(row)) for row in rows], dtype=torch.long)

    return {
        "input_ids": pad([e.input_ids for e in examples], pad_id),
        "attention_mask": pad([[1] * len(e) for e in examples], 0),
        "labels": pad([e.labels for e in examples], IGNORE_INDEX),
        "span_ids": pad([e.span_ids for e in examples], SPAN_INDEX["prompt"]),
    }


class TrajectoryDataModule(L.LightningDataModule):
    """Renders every usable trajectory once, splits train/validation by a seeded shuffle."""

    def __init__(self, trajectories: str, tokenizer: PreTrainedTokenizerBase, span: SpanStrategy,
                 only_passed: bool = True, val_fraction: float = 0.1, batch_size: int = 8,
                 max_length: int = 2048, num_workers: int = 0, seed: int = 0, cache: bool = True) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self.path, self.tokenizer, self.span = trajectories, tokenizer, span
        self.only_passed, self.val_fraction, self.batch_size = only_passed, val_fraction, batch_size
        self.max_length, self.num_workers, self.seed, self.cache = max_length, num_workers, seed, cache
        self.cache_hit = False
        self.train_set: list[RenderedExample] = []
        self.val_set: list[RenderedExample] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set:
            return
        if self.cache:
            key = dataset_key(self.path, self.tokenizer, self.span, only_passed=self.only_passed,
                              max_length=self.max_length)
            examples, self.cache_hit = cached_examples(key, self._render_all)
        else:
            examples = self._render_all()
        random.Random(self.seed).shuffle(examples)
        n_val = int(len(examples) * self.val_fraction)
        self.val_set, self.train_set = examples[:n_val], examples[n_val:]

    def _render_all(self) -> list[RenderedExample]:
        rows = load_trajectories(self.path, self.only_passed)
        if not rows:
            raise ValueError(f"{self.path}: no usable trajectories (only_passed={self.only_passed})")
        return [self._render(where, record) for where, record in rows]

    def _render(self, where: str, record: dict[str, Any]) -> RenderedExample:
        try:
            return render_trajectory(self.tokenizer, record, self.span, self.max_length)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"{where}: cannot render: {exc}") from exc

    def stats(self) -> dict[str, Any]:
        tokens = [len(e) for e in self.train_set]
        return {"n_train": len(self.train_set), "n_val": len(self.val_set),
                "train_tokens": sum(tokens), "max_length": max(tokens, default=0)}


    def train_dataloader(self) -> DataLoader:
        """Shuffled batches tagged with their accumulation window's supervised-token count."""
        accumulate = getattr(self.trainer, "accumulate_grad_batches", 1) if self.trainer else 1
        sampler = WindowBatchSampler([supervised_tokens(e) for e in self.train_set], self.batch_size,
                                     accumulate=accumulate, seed=self.seed)
        pad_id = self.tokenizer.pad_token_id

        def collate_tagged(items: list[tuple[RenderedExample, int]]) -> dict[str, torch.Tensor]:
            return {**collate([example for example, _ in items], pad_id),
                    "window_tokens": torch.tensor(items[0][1])}

        return DataLoader(WindowTagged(self.train_set), batch_sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate_tagged)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_set:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=lambda batch: collate(batch, self.tokenizer.pad_token_id))
