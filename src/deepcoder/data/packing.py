"""Packing: several short examples in one row, with attention and positions kept apart.

A packed row concatenates examples and restarts ``position_ids`` at 0 for each. It carries no
``attention_mask``: given ``position_ids`` and no mask (and no KV cache), transformers
(``masking_utils.find_packed_sequence_indices``) reads each restart as a new sequence and
builds a block-causal mask for sdpa, eager and flex attention; flash-attention derives its
sequence boundaries from the same positions. The first label of every example is unsupervised,
so no token is ever trained to follow the previous example's last token (the loss compares
``labels[:, 1:]`` with the hidden states at ``[:, :-1]``). Row padding is one more "sequence"
with its own positions and no labels.
"""

from __future__ import annotations

import heapq
from itertools import accumulate

import torch

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX
from deepcoder.spans.render import RenderedExample
from deepcoder.spans.teacher_topk import batch_tensors


def pack(lengths: list[int], capacity: int, seed: int = 0) -> list[list[int]]:
    """Balanced packing: indices grouped into rows of at most ``capacity`` tokens, evenly filled.

    Rows start as the lower bound ``ceil(tokens / capacity)``; examples go longest first into
    the emptiest row (LPT scheduling), and a new row opens only when even that one has no room.
    Even rows matter because a batch of rows is padded to its longest. Equal lengths are
    ordered by a seeded permutation; an example longer than ``capacity`` gets a row of its own.
    """
    if capacity < 1:
        raise ValueError(f"pack capacity must be >= 1, got {capacity}")
    tie_break = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], tie_break[i]))
    rows = [[i] for i in order if lengths[i] > capacity]
    fitting = [i for i in order if lengths[i] <= capacity]
    heap = [(0, len(rows) + r) for r in range(-(-sum(lengths[i] for i in fitting) // capacity))]
    rows += [[] for _ in heap]
    for index in fitting:
        fill, row = heapq.heappop(heap)
        if fill + lengths[index] > capacity:
            heapq.heappush(heap, (fill, row))
            fill, row = 0, len(rows)
            rows.append([])
        rows[row].append(index)
        heapq.heappush(heap, (fill + lengths[index], row))
    return [row for row in rows if row]


def step_ids(example: RenderedExample) -> list[int]:
    """The example's per-token agent steps (``-1`` throughout when not recorded)."""
    return example.step_ids or [-1] * len(example)


def collate_packed(rows: list[list[RenderedExample]], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch of packed rows: ``input_ids``, ``position_ids``, ``labels``, ``span_ids``, ``step_ids``
    (no mask), and ``teacher_ids``/``teacher_logprobs`` when the examples carry stored teacher logprobs."""
    ids, positions, labels, spans, steps = [], [], [], [], []
    for row in rows:
        ids.append([t for e in row for t in e.input_ids])
        positions.append([p for e in row for p in range(len(e))])
        labels.append([label for e in row for label in [IGNORE_INDEX, *e.labels[1:]][: len(e)]])
        spans.append([s for e in row for s in e.span_ids])
        steps.append([s for e in row for s in step_ids(e)])
    length = max(len(row) for row in ids)

    def pad(rows_: list[list[int]], filler) -> torch.Tensor:  # filler(n): the n padding values
        return torch.tensor([r + filler(length - len(r)) for r in rows_], dtype=torch.long)

    batch = {
        "input_ids": pad(ids, lambda n: [pad_id] * n),
        "position_ids": pad(positions, lambda n: list(range(n))),
        "labels": pad(labels, lambda n: [IGNORE_INDEX] * n),
        "span_ids": pad(spans, lambda n: [SPAN_INDEX["prompt"]] * n),
        "step_ids": pad(steps, lambda n: [-1] * n),
    }
    if rows[0][0].teacher is not None:
        batch.update(
            batch_tensors(
                [
                    [
                        (e.require_teacher(), start)
                        for e, start in zip(row, accumulate((len(e) for e in row), initial=0))
                    ]
                    for row in rows
                ],
                length,
            )
        )
    return batch
