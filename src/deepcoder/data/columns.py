"""One rendered example as the rows of the store's arrays (:mod:`deepcoder.data.store`).

Besides the tokens, an example stores the counts that every later choice needs, so those
choices never read a token: tokens per span kind (all, from position 1, from position 1 with a
teacher top-k), and per recorded step its reason/action/answer tokens. A training run's
supervised tokens, masked tokens, loss normaliser and teacher coverage are sums of these
(:mod:`deepcoder.data.supervision`).
"""

from __future__ import annotations

import numpy as np

from deepcoder.core.names import SPAN_INDEX, SPAN_NAMES
from deepcoder.data.example_info import ExampleInfo
from deepcoder.data.store import ALIGNMENT_FIELDS, KIND_BITS, LAYOUT, OWN_SPANS, STRINGS
from deepcoder.spans.render import RenderedExample

Columns = dict[str, np.ndarray]
OWN_COLUMN = np.full(len(SPAN_NAMES), -1, dtype=np.int64)  # span index → its column in the step arrays
OWN_COLUMN[[SPAN_INDEX[name] for name in OWN_SPANS]] = np.arange(len(OWN_SPANS))


def _per_step(steps: np.ndarray, spans: np.ndarray, keep: np.ndarray, n_steps: int) -> np.ndarray:
    """Tokens of each step's own spans among ``keep`` (a step with no record holds none)."""
    own = OWN_COLUMN[spans]
    keep = keep & (steps >= 0) & (steps < n_steps) & (own >= 0)
    counts = np.zeros((n_steps, len(OWN_SPANS)), dtype=np.int32)
    np.add.at(counts, (steps[keep], own[keep]), 1)
    return counts


def example_columns(example: RenderedExample, info: ExampleInfo) -> Columns:
    """The store rows of one rendered (already truncated) example and its info."""
    n = len(example)
    spans = np.asarray(example.span_ids, dtype=np.int8)
    steps = np.asarray(example.step_ids or [-1] * n, dtype=np.int32)
    shifted = np.arange(n) > 0
    taught = np.zeros(n, dtype=bool)
    teacher = example.teacher
    if teacher is not None:
        taught[teacher.positions.numpy()] = True
    n_steps = len(example.step_kinds)
    strings = (example.trajectory_id, info.problem_id, info.program_digest or "", info.assistant_digest)
    encoded = {name: np.frombuffer(text.encode("utf-8"), dtype=np.uint8) for name, text in zip(STRINGS, strings)}
    counts = teacher.counts if teacher is not None else None
    columns = {
        "input_ids": np.asarray(example.input_ids, dtype=np.int32),
        "span_ids": spans,
        "step_ids": steps,
        "step_kinds": np.array(
            [sum(KIND_BITS[kind] for kind in kinds) for kinds in example.step_kinds], dtype=np.uint8
        ),
        "step_own": _per_step(steps, spans, shifted, n_steps),
        "step_own_all": _per_step(steps, spans, np.ones(n, dtype=bool), n_steps),
        "step_taught": _per_step(steps, spans, shifted & taught, n_steps),
        "teacher_positions": np.zeros(0, np.int32) if teacher is None else teacher.positions.numpy().astype(np.int32),
        "teacher_ids": np.zeros(0, np.int32) if teacher is None else teacher.ids.numpy().astype(np.int32).ravel(),
        "teacher_logprobs": np.zeros(0, np.float32) if teacher is None else teacher.logprobs.numpy().ravel(),
        **encoded,
        "length": np.array([n]),
        "n_steps": np.array([n_steps]),
        "teacher_rows": np.array([0 if teacher is None else len(teacher.positions)]),
        "teacher_values": np.array([0 if teacher is None else teacher.ids.numel()]),
        "teacher_k": np.array([0 if teacher is None else teacher.k]),
        "full_length": np.array([info.full_length]),
        **{f"{name}_len": np.array([len(encoded[name])]) for name in STRINGS},
        "passed": np.array([-1 if info.passed is None else int(info.passed)], dtype=np.int8),
        "span_counts": np.bincount(spans, minlength=len(SPAN_NAMES))[None],
        "span_shifted": np.bincount(spans[1:], minlength=len(SPAN_NAMES))[None],
        "span_taught": np.bincount(spans[1:][taught[1:]], minlength=len(SPAN_NAMES))[None],
        "alignment": np.array([[0 if counts is None else getattr(counts, f) for f in ALIGNMENT_FIELDS]]),
    }
    return {name: array.astype(LAYOUT[name][0], copy=False) for name, array in columns.items()}


def concat(parts: list[Columns]) -> Columns:
    """Several examples' rows, in order, as one set of arrays."""
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]} if parts else {}
