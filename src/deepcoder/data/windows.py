"""Batches that know the loss normaliser of their gradient-accumulation window.

``span_loss`` divides by the number of supervised tokens (``loss.normalize=tokens``) or by the
sum of their loss weights (``weights``). With accumulation over ``k`` micro-batches, dividing
each by its own normaliser weights tokens of short micro-batches more than one big batch would.
This sampler plans each epoch as *windows* of ``k · world_size`` batches (one optimizer step of
every rank) and tags every batch with the normaliser of its whole window (the sum of its rows'
supervised tokens, or their :func:`weight_sum`), so the accumulated gradient equals the big batch's
exactly.

The plan is a pure function of ``(seed, epoch)``, identical on every rank:

- a *row* is one example, or one pack of examples (``data.packing``);
- rows are shuffled; with ``group_by_length`` rows are sorted by length within buckets of
  ``bucket_windows`` windows, cut into batches, and the full windows shuffled (the short last
  window stays last), so a batch holds rows of similar length and padding shrinks;
- with a curriculum, window ``w`` of epoch ``e`` (optimizer step ``s = e·windows + w``) draws
  its rows from the easiest ``f(s)`` of all rows, ranked by complexity (seeded tie-break; a
  pool smaller than the window repeats rows);
- batches are cut to a multiple of ``world_size`` (the few rows of a remainder batch are left
  out that epoch), and rank ``r`` takes batches ``r, r + world_size, …`` of every window.
  ``window_norm`` is the normaliser of the whole window, all ranks together: each rank's loss
  is its share of the global mean, and the module scales for DDP's gradient averaging.

Lightning runs the epochs: each epoch it calls ``set_epoch`` on ``batch_sampler.sampler``
(``lightning.fabric.utilities.data._set_sampler_epoch``), which is this sampler itself. Under
DDP set ``trainer.use_distributed_sampler=false``: the sampler shards itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from deepcoder.data.curriculum import Curriculum
from deepcoder.losses import SpanLoss, token_weights
from deepcoder.spans.render import RenderedExample

Plan = list[list[list[int]]]  # windows → batches → row indices


def weight_sum(example: RenderedExample, loss: SpanLoss) -> float:
    """The example's share of ``N`` under ``loss.normalize=weights``: the sum of its supervised tokens'
    weights (span weight × ``step_decay^step``, as :func:`deepcoder.losses.token_weights`)."""
    steps = torch.tensor(example.step_ids[1:]) if example.step_ids else None
    weights = token_weights(
        torch.tensor(example.labels[1:]), torch.tensor(example.span_ids[1:]), loss.weights, steps, loss.step_decay
    )
    return float(weights.sum())


class WindowBatchSampler(Sampler[list[tuple[int, float]]]):
    """Yields this rank's batches of ``(row index, window normaliser)``; resumable via ``skip``."""

    def __init__(
        self,
        norms: list[float],
        batch_size: int,
        accumulate: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        lengths: list[int] | None = None,
        group_by_length: bool = False,
        curriculum: Curriculum | None = None,
        scores: list[float] | None = None,
        world_size: int = 1,
        rank: int = 0,
        bucket_windows: int = 8,
    ) -> None:
        if batch_size < 1 or accumulate < 1 or bucket_windows < 1:
            raise ValueError(
                f"batch_size, accumulate and bucket_windows must be >= 1, "
                f"got {batch_size}, {accumulate} and {bucket_windows}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        if group_by_length and (lengths is None or len(lengths) != len(norms)):
            raise ValueError("group_by_length needs one length per row")
        self.curriculum = curriculum if curriculum is not None and curriculum.active else None
        if self.curriculum and (scores is None or len(scores) != len(norms)):
            raise ValueError("a curriculum needs one score per row")
        row_scores = scores or []
        self.norms, self.batch_size, self.accumulate = norms, batch_size, accumulate
        self.shuffle, self.seed, self.lengths, self.group_by_length = shuffle, seed, lengths, group_by_length
        self.world_size, self.rank, self.bucket_windows = world_size, rank, bucket_windows
        tie_break = torch.randperm(len(norms), generator=torch.Generator().manual_seed(seed)).tolist()
        self.ranked = sorted(range(len(norms)), key=lambda i: (row_scores[i], tie_break[i])) if self.curriculum else []
        self.epoch, self.skip = 0, 0
        self.sampler = self  # Lightning calls set_epoch on batch_sampler.sampler every epoch
        self._used_batches()  # fails now if the ranks cannot all get a batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def row_lengths(self) -> list[int]:
        """Each row's token count, as given in ``lengths``."""
        if self.lengths is None:
            raise ValueError("this WindowBatchSampler was built without lengths=: pass one token count per row")
        return self.lengths

    def _used_batches(self) -> int:
        batches = -(-len(self.norms) // self.batch_size)
        used = batches // self.world_size * self.world_size
        if used == 0:
            raise ValueError(
                f"{len(self.norms)} rows in batches of {self.batch_size} "
                f"cannot give every one of {self.world_size} ranks a batch"
            )
        return used

    def __len__(self) -> int:
        return self._used_batches() // self.world_size

    def window_sizes(self) -> list[int]:
        """Batches in each window of an epoch (all ranks): ``k · world_size``, the last maybe fewer."""
        used, size = self._used_batches(), self.accumulate * self.world_size
        return [min(size, used - start) for start in range(0, used, size)]

    def plan(self, epoch: int) -> Plan:
        """Every rank's windows of batches of row indices for ``epoch``."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        sizes = self.window_sizes()
        if self.curriculum:
            return self._curriculum_plan(self.curriculum, epoch, sizes, generator)
        n, b = len(self.norms), self.batch_size
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        if self.group_by_length:
            bucket, lengths = b * sizes[0] * self.bucket_windows, self.row_lengths()
            order = [
                i
                for start in range(0, n, bucket)
                for i in sorted(order[start : start + bucket], key=lambda i: -lengths[i])
            ]
        batches = [order[start : start + b] for start in range(0, n, b)]
        windows = [batches[sum(sizes[:w]) : sum(sizes[: w + 1])] for w in range(len(sizes))]
        if self.group_by_length and self.shuffle:
            full = len(windows) if sizes[-1] == sizes[0] else len(windows) - 1
            windows = [windows[i] for i in torch.randperm(full, generator=generator).tolist()] + windows[full:]
        return windows

    def _curriculum_plan(
        self, curriculum: Curriculum, epoch: int, sizes: list[int], generator: torch.Generator
    ) -> Plan:
        windows: Plan = []
        b = self.batch_size
        for w, size in enumerate(sizes):
            pool = max(1, math.ceil(curriculum.fraction(epoch * len(sizes) + w) * len(self.ranked) - 1e-9))
            drawn: list[int] = []
            while len(drawn) < size * b:
                drawn += torch.randperm(pool, generator=generator).tolist()
            rows = [self.ranked[i] for i in drawn[: size * b]]
            if self.group_by_length:
                lengths = self.row_lengths()
                rows.sort(key=lambda i: -lengths[i])
            windows.append([rows[start : start + b] for start in range(0, size * b, b)])
        return windows

    def __iter__(self) -> Iterator[list[tuple[int, float]]]:
        batches = []
        for window in self.plan(self.epoch):
            total = sum(self.norms[i] for batch in window for i in batch)
            batches += [[(i, total) for i in batch] for batch in window[self.rank :: self.world_size]]
        skip, self.skip = self.skip, 0
        yield from batches[skip:]


class WindowTagged(Dataset):
    """Looks up ``(row index, window normaliser)`` keys: returns the row's examples and the normaliser."""

    def __init__(self, examples: Sequence[RenderedExample], rows: list[list[int]]) -> None:
        self.examples, self.rows = examples, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, float]) -> tuple[list[RenderedExample], float]:
        return [self.examples[i] for i in self.rows[key[0]]], key[1]
