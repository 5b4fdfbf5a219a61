"""Batches that know the supervised-token count of their gradient-accumulation window.

``span_loss`` divides by the number of supervised tokens. With accumulation over ``k``
micro-batches, dividing each by its own count weights tokens of short micro-batches more than
one big batch would. This sampler shuffles (seeded, new order each epoch), cuts batches, and
tags every batch with the total count of its window of ``k`` consecutive batches, so the
accumulated gradient equals the big batch's exactly. (Single process; under DDP the counts
would also need an all-reduce.)
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from deepcoder.data.render import IGNORE_INDEX, RenderedExample


def supervised_tokens(example: RenderedExample) -> int:
    """Positions that carry a loss after the causal shift (labels of tokens 1…n-1)."""
    return sum(1 for label in example.labels[1:] if label != IGNORE_INDEX)


class WindowBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields batches of ``(example index, window token count)``."""

    def __init__(self, token_counts: list[int], batch_size: int, accumulate: int = 1, shuffle: bool = True,
                 seed: int = 0) -> None:
        if batch_size < 1 or accumulate < 1:
            raise ValueError(f"batch_size and accumulate must be >= 1, got {batch_size} and {accumulate}")
        self.token_counts, self.batch_size, self.accumulate = token_counts, batch_size, accumulate
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def __len__(self) -> int:
        return -(-len(self.token_counts) // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        n = len(self.token_counts)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(n))
        self.epoch += 1
        batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        for start in range(0, len(batches), self.accumulate):
            window = batches[start:start + self.accumulate]
            total = sum(self.token_counts[i] for batch in window for i in batch)
            yield from ([(i, total) for i in batch] for batch in window)


class WindowTagged(Dataset):
    """Looks up ``(index, window count)`` keys: returns the example and its window's count."""

    def __init__(self, examples: list[RenderedExample]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[RenderedExample, int]:
        return self.examples[key[0]], key[1]
