"""Stored examples as rendered examples, built one at a time when a batch asks for them.

An :class:`Examples` is a sequence view of some examples of a store, in a given order,
labelled for the run (:func:`deepcoder.spans.supervision.supervise`: the supervised spans
without the masked steps' own tokens). Indexing builds one
:class:`~deepcoder.spans.render.RenderedExample` from the mapped arrays; slicing gives another view.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import overload

import numpy as np
import torch

from deepcoder.data.store import KIND_BITS, ExampleStore
from deepcoder.spans.render import RenderedExample
from deepcoder.spans.step_kinds import STEP_KINDS
from deepcoder.spans.supervision import supervise
from deepcoder.spans.teacher_topk import TeacherTopK


def stored_teacher(store: ExampleStore, index: int) -> TeacherTopK:
    """Example ``index``'s stored top-k as the tensors :func:`deepcoder.spans.teacher_topk.align_teacher` made."""
    k = int(store["teacher_k"][index])
    return TeacherTopK(
        torch.from_numpy(store.rows("teacher_positions", index).astype(np.int64)),
        torch.from_numpy(store.rows("teacher_ids", index).astype(np.int64).reshape(-1, k)),
        torch.from_numpy(np.array(store.rows("teacher_logprobs", index)).reshape(-1, k)),
    )


def stored_example(store: ExampleStore, index: int) -> RenderedExample:
    """Example ``index`` as rendered (truncated), without labels."""
    kinds = tuple(
        tuple(kind for kind in STEP_KINDS if bits & KIND_BITS[kind])
        for bits in store.rows("step_kinds", index).tolist()
    )
    return RenderedExample(
        store.string("trajectory_id", index),
        store.rows("input_ids", index).tolist(),
        [],
        store.rows("span_ids", index).tolist(),
        stored_teacher(store, index) if store.has_teacher else None,
        store.rows("step_ids", index).tolist(),
        kinds,
    )


class Examples(Sequence[RenderedExample]):
    """The examples ``indices`` of ``store``, labelled on ``spans`` minus the steps of ``mask_steps`` kinds."""

    def __init__(
        self, store: ExampleStore, indices: np.ndarray, spans: Collection[str], mask_steps: Collection[str]
    ) -> None:
        self.store, self.indices = store, indices
        self.spans, self.mask_steps = frozenset(spans), frozenset(mask_steps)

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, position: int) -> RenderedExample: ...

    @overload
    def __getitem__(self, position: slice) -> Examples: ...

    def __getitem__(self, position: int | slice) -> RenderedExample | Examples:
        if isinstance(position, slice):
            return Examples(self.store, self.indices[position], self.spans, self.mask_steps)
        example = stored_example(self.store, int(self.indices[position]))
        return supervise(example, self.spans, self.mask_steps)[0]

    def lengths(self) -> list[int]:
        """Each example's token count, from the store's column."""
        return self.store["length"][self.indices].tolist()
