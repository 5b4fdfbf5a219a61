"""A prepared dataset on disk: rendered examples as memory-mapped columns with offsets.

A training process maps these files and holds their pages, not Python objects: the page cache
is shared by every process (DDP ranks, DataLoader workers) and reclaimable, and nothing grows
with the dataset but a few per-example numbers. Filters, curriculum scores, packing plans and
length grouping read the per-example and per-step columns; token lists are built only for the
examples of a batch (:mod:`deepcoder.data.examples`).

Every array is a raw little-endian file ``<name>.bin``; ``meta.json`` gives its dtype and row
width. Four kinds of rows, each ragged level indexed by per-example counts (offsets are their
cumulative sums, computed on open):

- token: ``input_ids``, ``span_ids``, ``step_ids`` (one per token; the example's ``length``);
- step (one per recorded agent step; ``n_steps``): ``step_kinds`` (a bit per kind of
  :data:`~deepcoder.spans.step_kinds.STEP_KINDS`), ``step_own``/``step_own_all``/``step_taught``
  (the step's reason/action/answer tokens, from position 1 / all / with a teacher top-k);
- teacher (``teacher_rows`` positions, ``teacher_values`` = rows × the example's ``teacher_k``):
  ``teacher_positions``, ``teacher_ids``, ``teacher_logprobs``;
- example: ``full_length``, ``passed`` (1, 0, -1 = unknown), ``span_counts``/``span_shifted``/
  ``span_taught`` (tokens per span kind: all, from position 1, from position 1 with a teacher
  top-k), ``alignment`` (:class:`~deepcoder.spans.teacher_topk.AlignmentCounts` fields), and the
  strings ``trajectory_id``, ``problem_id``, ``program_digest``, ``assistant_digest`` (utf-8 bytes,
  ``<name>_len`` per example); ``order`` ranks the examples by ``trajectory_id``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepcoder.core.names import SPAN_NAMES, TRAINED_SPANS
from deepcoder.spans.step_kinds import STEP_KINDS
from deepcoder.spans.teacher_topk import AlignmentCounts

OWN_SPANS = tuple(sorted(TRAINED_SPANS, key=SPAN_NAMES.index))  # a step's own spans: the step columns' order
ALIGNMENT_FIELDS = ("steps", "teacher_tokens", "comparable", "aligned", "alternatives", "mapped_alternatives")
STRINGS = ("trajectory_id", "problem_id", "program_digest", "assistant_digest")
LAYOUT: dict[str, tuple[str, int, str]] = {  # name: (dtype, row width, the per-example count of its rows)
    "input_ids": ("<i4", 1, "length"),
    "span_ids": ("i1", 1, "length"),
    "step_ids": ("<i4", 1, "length"),
    "step_kinds": ("u1", 1, "n_steps"),
    "step_own": ("<i4", len(OWN_SPANS), "n_steps"),
    "step_own_all": ("<i4", len(OWN_SPANS), "n_steps"),
    "step_taught": ("<i4", len(OWN_SPANS), "n_steps"),
    "teacher_positions": ("<i4", 1, "teacher_rows"),
    "teacher_ids": ("<i4", 1, "teacher_values"),
    "teacher_logprobs": ("<f4", 1, "teacher_values"),
    **{name: ("u1", 1, f"{name}_len") for name in STRINGS},
    **{
        name: ("<i8", 1, "")
        for name in ("length", "n_steps", "teacher_rows", "teacher_values", "teacher_k", "full_length", "order")
    },
    **{f"{name}_len": ("<i8", 1, "") for name in STRINGS},
    "passed": ("i1", 1, ""),
    "span_counts": ("<i8", len(SPAN_NAMES), ""),
    "span_shifted": ("<i8", len(SPAN_NAMES), ""),
    "span_taught": ("<i8", len(SPAN_NAMES), ""),
    "alignment": ("<i8", len(ALIGNMENT_FIELDS), ""),
}
KIND_BITS = {kind: 1 << bit for bit, kind in enumerate(STEP_KINDS)}


def _read(path: Path, dtype: str, width: int) -> np.ndarray:
    """The file as a read-only array (mapped; an empty file cannot be mapped, so an empty array)."""
    array = np.zeros(0, dtype=dtype) if path.stat().st_size == 0 else np.memmap(path, dtype=dtype, mode="r")
    return array.reshape(-1, width) if width > 1 else array


class ExampleStore:
    """A prepared dataset, mapped read-only from ``root``; pickles as its path (DataLoader workers)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.meta: dict[str, Any] = json.loads((self.root / "meta.json").read_text(encoding="utf-8"))
        self.arrays = {
            name: _read(self.root / f"{name}.bin", dtype, width) for name, (dtype, width, _) in LAYOUT.items()
        }
        self.offsets = {
            count: np.concatenate([[0], np.cumsum(self.arrays[count], dtype=np.int64)])
            for count in {count for _, _, count in LAYOUT.values() if count}
        }

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return ExampleStore, (str(self.root),)

    def __len__(self) -> int:
        return len(self.arrays["length"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def has_teacher(self) -> bool:
        return bool(self.meta["teacher"])

    def rows(self, name: str, index: int) -> np.ndarray:
        """Example ``index``'s rows of the ragged array ``name``."""
        offsets = self.offsets[LAYOUT[name][2]]
        return self.arrays[name][offsets[index] : offsets[index + 1]]

    def string(self, name: str, index: int) -> str:
        return bytes(self.rows(name, index)).decode("utf-8")

    def step_index(self) -> np.ndarray:
        """The example of every step row."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.arrays["n_steps"])

    def alignment(self) -> AlignmentCounts:
        """How well the stored teacher logprobs aligned, summed over every rendered example."""
        sums = self.arrays["alignment"].sum(axis=0).tolist() if len(self) else [0] * len(ALIGNMENT_FIELDS)
        return AlignmentCounts(**dict(zip(ALIGNMENT_FIELDS, sums)), example=self.meta["alignment_example"])
