"""Sampling with one random stream per row of a batch, so a sampled turn depends only on its own seed.

``generate``'s own sampler draws every row from one global RNG: a row's tokens would change with
the other rows of its batch. Here each row gets a ``torch.Generator`` seeded by its episode and
turn, and sampling is the Gumbel-max trick run inside greedy decoding: ``argmax(log p − log E)``
with ``E ~ Exp(1)`` is an exact draw from ``p`` (after temperature, top-k and top-p, in
``generate``'s order). The same seed gives the same turn at any batch size, in any company.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from deepcoder.policies.decoding import Decoding


class RowGumbelNoise(LogitsProcessor):
    """Adds ``−log E`` (``E ~ Exp(1)``) from row ``i``'s own generator to row ``i``'s scores, so that
    the greedy argmax that follows is a sample; filtered (``−inf``) tokens stay impossible."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]

    def keep(self, rows: Sequence[int]) -> None:
        """Only these rows go on (the others left the batch), each with its own stream."""
        self.generators = [self.generators[row] for row in rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"RowGumbelNoise: {scores.shape[0]} rows for {len(self.generators)} seeds")
        noise = torch.stack(
            [
                torch.empty(scores.shape[1], device=scores.device, dtype=torch.float32).exponential_(generator=g)
                for g in self.generators
            ]
        )
        return cast(torch.FloatTensor, scores.float() - noise.log())


def row_warpers(decoding: Decoding) -> list[LogitsProcessor]:
    """``decoding``'s temperature, top-k and top-p, in ``generate``'s order."""
    processors: list[LogitsProcessor] = []
    if decoding.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(decoding.temperature))
    if decoding.top_k:
        processors.append(TopKLogitsWarper(decoding.top_k))
    if decoding.top_p < 1.0:
        processors.append(TopPLogitsWarper(decoding.top_p))
    return processors


def row_sampler(decoding: Decoding, seeds: Sequence[int], device: torch.device | str) -> LogitsProcessorList:
    """The warpers of ``decoding`` then the per-row noise: run with ``do_sample=False``."""
    return LogitsProcessorList([*row_warpers(decoding), RowGumbelNoise(seeds, device)])
