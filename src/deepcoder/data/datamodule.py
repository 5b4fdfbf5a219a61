"""The LightningDataModule: trajectories → rendered, filtered examples → padded or packed batches."""

from __future__ import annotations

import logging
import random
from collections.abc import Collection, Sequence
from functools import partial
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX
from deepcoder.data.cache import prepared_store
from deepcoder.data.curriculum import Curriculum
from deepcoder.data.examples import Examples
from deepcoder.data.filters import Filters
from deepcoder.data.loader import ResumableDataLoader
from deepcoder.data.packing import collate_packed, pack, step_ids
from deepcoder.data.prepare import Renderer
from deepcoder.data.stats import real_token_share, span_statistics
from deepcoder.data.store import ExampleStore
from deepcoder.data.supervision import SupervisionCounts, check_mode, relabel, supervision_counts
from deepcoder.data.windows import WindowBatchSampler, WindowTagged, weight_sum
from deepcoder.losses import SpanLoss
from deepcoder.spans.labels import SpanStrategy
from deepcoder.spans.render import RenderedExample
from deepcoder.spans.step_kinds import check_kinds
from deepcoder.spans.teacher_topk import AlignmentCounts, batch_tensors, check_alignment
from deepcoder.spans.token_map import TokenMap

log = logging.getLogger(__name__)


def collate(examples: list[RenderedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example of the batch; padding is never supervised. Examples with
    stored teacher logprobs add ``teacher_ids``/``teacher_logprobs`` ``[B, T, k]``; ``step_ids`` is each
    token's agent step (``-1``: none), for ``loss.step_decay``."""
    length = max(len(e) for e in examples)

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([row + [value] * (length - len(row)) for row in rows], dtype=torch.long)

    batch = {
        "input_ids": pad([e.input_ids for e in examples], pad_id),
        "attention_mask": pad([[1] * len(e) for e in examples], 0),
        "labels": pad([e.labels for e in examples], IGNORE_INDEX),
        "span_ids": pad([e.span_ids for e in examples], SPAN_INDEX["prompt"]),
        "step_ids": pad([step_ids(e) for e in examples], -1),
    }
    if examples[0].teacher is not None:
        batch.update(batch_tensors([[(e.require_teacher(), 0)] for e in examples], length))
    return batch


def collate_tagged(
    items: list[tuple[list[RenderedExample], float]], pad_id: int, packed: bool
) -> dict[str, torch.Tensor]:
    """A training batch of rows (packed, or one example each) with its window's loss normaliser."""
    rows = [row for row, _ in items]
    batch = collate_packed(rows, pad_id) if packed else collate([row[0] for row in rows], pad_id)
    return {**batch, "window_norm": torch.tensor(items[0][1])}


class TrajectoryDataModule(L.LightningDataModule):
    """Renders every usable trajectory once (cached), filters, splits train/validation by a seeded shuffle.

    The rendered examples live in a memory-mapped store (:mod:`deepcoder.data.store`), built once
    per key by ``num_proc`` processes and shared by every rank (:mod:`deepcoder.data.cache`);
    filters, relabelling, the split, packing plans and curriculum scores work from its columns,
    and ``train_set``/``val_set`` build an example's token lists only when a batch asks for it.

    Training batches come from a :class:`~deepcoder.data.windows.WindowBatchSampler` (exact
    gradient accumulation, DDP sharding, length grouping, curriculum) through a
    :class:`~deepcoder.data.loader.ResumableDataLoader` (mid-epoch resume). With ``packing``,
    examples are packed into evenly filled rows of at most ``pack_length`` (default
    ``max_length``) tokens; see :mod:`deepcoder.data.packing`. Filters run after the cache.

    ``loss`` (set by ``train.py``; default ``sft``'s) decides which spans get labels (observations
    too with ``loss.observation`` > 0) and each window's normaliser (``loss.normalize``);
    ``mask_steps`` (kinds of :mod:`deepcoder.spans.step_kinds`) and ``on_masked_step`` (``mask`` |
    ``drop``) keep bad steps out of the loss (:mod:`deepcoder.data.supervision`).

    ``teacher_logprobs`` (set by ``train.py`` for a distillation loss without a live teacher)
    aligns the steps' stored top-k logprobs with the tokens (:mod:`deepcoder.spans.teacher_topk`),
    refuses logprobs from another tokenizer, and puts ``teacher_ids``/``teacher_logprobs`` in
    every batch.
    """

    def __init__(
        self,
        trajectories: str,
        tokenizer: PreTrainedTokenizerBase,
        span: SpanStrategy,
        only_passed: bool = True,
        val_fraction: float = 0.1,
        batch_size: int = 8,
        max_length: int = 2048,
        num_workers: int = 0,
        seed: int = 0,
        cache: bool = True,
        filters: Filters | None = None,
        curriculum: Curriculum | None = None,
        packing: bool = False,
        pack_length: int | None = None,
        group_by_length: bool = False,
        teacher_logprobs: bool = False,
        loss: SpanLoss | None = None,
        mask_steps: Collection[str] = ("parse_error",),
        on_masked_step: str = "mask",
        num_proc: int = 1,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        if pack_length is not None and pack_length < 1:
            raise ValueError(f"data.pack_length must be >= 1 or null, got {pack_length}")
        if num_proc < 1:
            raise ValueError(f"data.num_proc must be >= 1 (processes that render the trajectories), got {num_proc}")
        self.path, self.tokenizer, self.span = trajectories, tokenizer, span
        self.only_passed, self.val_fraction, self.batch_size = only_passed, val_fraction, batch_size
        self.max_length, self.num_workers, self.seed, self.cache = max_length, num_workers, seed, cache
        self.num_proc = num_proc
        self.filters, self.curriculum = filters or Filters(), curriculum or Curriculum()
        self.packing, self.pack_length, self.group_by_length = packing, pack_length or max_length, group_by_length
        self.token_map = TokenMap(tokenizer) if teacher_logprobs else None
        self.loss = loss or SpanLoss("sft")
        self.mask_steps, self.on_masked_step = check_kinds(mask_steps), check_mode(on_masked_step)
        self.masked: dict[str, int] = {}
        self.masked_tokens = 0
        self.alignment: AlignmentCounts | None = None
        self.cache_hit = False
        self.dropped: dict[str, int] = {}
        self.store: ExampleStore | None = None
        self.counts: SupervisionCounts | None = None
        self.train_index = self.val_index = np.zeros(0, dtype=np.int64)
        self.train_set: Sequence[RenderedExample] = []
        self.val_set: Sequence[RenderedExample] = []
        self._norms: list[float] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.store is not None:
            return
        renderer = Renderer(self.tokenizer, self.span, self.max_length, self.token_map)
        store, self.cache_hit = prepared_store(
            self.path, renderer, self.num_proc, self.cache, teacher_logprobs=self.token_map is not None
        )
        if not len(store):
            raise ValueError(f"{self.path}: no usable trajectories (every record has an error)")
        if self.token_map is not None:
            self.alignment = store.alignment()
            check_alignment(self.alignment, self.path)
        indices, self.dropped = self.filters.apply(store, np.asarray(store["order"]), self.only_passed)
        self.counts = supervision_counts(store, self.loss.supervised_spans, self.mask_steps)
        indices, self.masked, self.masked_tokens, dropped = relabel(indices, self.counts, self.on_masked_step)
        self.dropped.update(dropped)
        if not len(indices):
            raise ValueError(
                f"{self.path}: no usable trajectories (only_passed={self.only_passed}, dropped: {self.dropped})"
            )
        order = indices.tolist()
        random.Random(self.seed).shuffle(order)
        n_val = int(len(order) * self.val_fraction)
        self.val_index = np.array(order[:n_val], dtype=np.int64)
        self.train_index = np.array(order[n_val:], dtype=np.int64)
        self.store = store
        spans = self.loss.supervised_spans
        self.val_set = Examples(store, self.val_index, spans, self.mask_steps)
        self.train_set = Examples(store, self.train_index, spans, self.mask_steps)
        if self.token_map is not None and not self._teacher_coverage():
            raise ValueError(
                f"{self.path}: no supervised token of the training set has stored teacher logprobs "
                f"(only_passed={self.only_passed}, dropped: {self.dropped})"
            )

    def _set(self) -> tuple[ExampleStore, SupervisionCounts]:
        if self.store is None or self.counts is None:
            raise RuntimeError("call setup() first: the data module has not prepared its examples")
        return self.store, self.counts

    def supervised_tokens(self) -> int:
        """Labelled tokens of the training set (every position), from the columns."""
        store, counts = self._set()
        columns = [SPAN_INDEX[span] for span in self.loss.supervised_spans]
        spans = int(store["span_counts"][self.train_index][:, columns].sum())
        return spans - int(counts.masked_tokens[self.train_index].sum())

    def example_norms(self) -> list[float]:
        """Each training example's share of its window's normaliser: supervised tokens from position 1
        (columns), or with ``loss.normalize=weights`` their weights (read from the tokens, once)."""
        _, counts = self._set()
        if self._norms is None:
            if self.loss.normalize == "tokens":
                self._norms = counts.supervised[self.train_index].tolist()
            else:
                self._norms = [weight_sum(example, self.loss) for example in self.train_set]
        return self._norms

    def lengths(self) -> list[int]:
        """Each training example's token count."""
        store, _ = self._set()
        return store["length"][self.train_index].tolist()

    def train_rows(self) -> list[list[int]]:
        """Training rows as lists of example indices: packs, or one example each."""
        if self.packing:
            return pack(self.lengths(), self.pack_length, seed=self.seed)
        return [[i] for i in range(len(self.train_set))]

    def train_sampler(self, rows: list[list[int]]) -> WindowBatchSampler:
        """The training batch sampler for the attached trainer's accumulation and DDP world."""
        store, _ = self._set()
        trainer = self.trainer
        accumulate = getattr(trainer, "accumulate_grad_batches", 1) if trainer else 1
        world_size, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        norms, lengths = self.example_norms(), self.lengths()
        scores = None
        if self.curriculum.active:  # a pack is as hard as its hardest example
            index = self.train_index
            example_scores = self.curriculum.scores(store["span_counts"][index], store["n_steps"][index]).tolist()
            scores = [max(example_scores[i] for i in row) for row in rows]
        return WindowBatchSampler(
            [sum(norms[i] for i in row) for row in rows],
            self.batch_size,
            accumulate=accumulate,
            seed=self.seed,
            lengths=[sum(lengths[i] for i in row) for row in rows],
            group_by_length=self.group_by_length,
            curriculum=self.curriculum,
            scores=scores,
            world_size=world_size,
            rank=rank,
        )

    def stats(self) -> dict[str, Any]:
        """Sizes, filter drops, tokens and shares per span, and the real-token share of epoch 0's batches."""
        store, _ = self._set()
        tokens = self.lengths()
        rows = self.train_rows()
        share = _real_token_share(self.train_sampler(rows)) if rows else 0.0
        stats = {
            "n_train": len(self.train_set),
            "n_val": len(self.val_set),
            "train_tokens": sum(tokens),
            "max_length": max(tokens, default=0),
            "dropped": dict(self.dropped),
            "masked_steps": dict(self.masked),  # per kind of data.mask_steps (on_masked_step=mask)
            "masked_tokens": self.masked_tokens,
            **span_statistics(store["span_counts"][self.train_index]),
            "packing": self.packing,
            "train_rows": len(rows),
            "real_token_share": round(share, 4),
        }
        if self.alignment is not None:
            stats["teacher_logprobs"] = {
                "aligned_share": round(self.alignment.aligned_share, 4),
                "mapped_share": round(self.alignment.mapped_share, 4),
                "train_coverage": round(self._teacher_coverage(), 4),
            }
        return stats

    def _teacher_coverage(self) -> float:
        """The share of distilled tokens (supervised after the causal shift, observations aside: they
        train on CE) that have the teacher's top-k."""
        _, counts = self._set()
        total = int(counts.distilled[self.train_index].sum())
        return int(counts.covered[self.train_index].sum()) / total if total else 0.0

    def train_dataloader(self) -> DataLoader:
        """Batches tagged with their accumulation window's supervised-token count; resumable mid-epoch."""
        rows = self.train_rows()
        sampler = self.train_sampler(rows)
        log.info(
            "training on %d examples in %d rows (packing=%s): %d batches an epoch, %.1f%% real tokens",
            len(self.train_set),
            len(rows),
            self.packing,
            len(sampler),
            100 * _real_token_share(sampler),
        )
        # its own generator (worker seeds): the global RNG, which dropout draws from, is left alone
        return ResumableDataLoader(
            WindowTagged(self.train_set, rows),
            batch_sampler=sampler,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=partial(collate_tagged, pad_id=self.tokenizer.pad_token_id, packed=self.packing),
        )

    def val_dataloader(self) -> DataLoader | list:
        """This rank's share of the validation set (every k-th example under DDP; all of it when there
        are fewer examples than ranks): the module adds up metric sums and token counts over the
        ranks, so the means are exact either way."""
        if not self.val_set:
            return []
        world_size, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        shard = self.val_set[rank::world_size] if len(self.val_set) >= world_size else self.val_set
        return DataLoader(
            shard,  # type: ignore[arg-type]  # a list is a map-style dataset; torch's stub asks for Dataset
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=partial(collate, pad_id=self.tokenizer.pad_token_id),
        )


def _real_token_share(sampler: WindowBatchSampler) -> float:
    """The real-token share of the padded batches of epoch 0's plan (all ranks)."""
    lengths = sampler.row_lengths()
    return real_token_share([[lengths[i] for i in batch] for window in sampler.plan(0) for batch in window])
