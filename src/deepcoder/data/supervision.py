"""Which tokens of the training set are supervised: ``loss.observation`` and ``data.mask_steps``.

Stored examples carry no labels; this step, after the cache (changing it never re-tokenises),
decides them for the run: the tokens of the supervised spans (observations too when the loss
trains them), without the tokens of bad steps (:mod:`deepcoder.spans.step_kinds`):
``on_masked_step=mask`` keeps such a step in the input as context with no label;
``drop`` drops its whole trajectory (counted in ``dropped`` under the kind).

The counts come from the store's per-example and per-step columns (:mod:`deepcoder.data.columns`),
not from the tokens: an example's supervised tokens are its supervised spans' tokens minus its
masked steps' own tokens. The labels themselves are made per example when a batch is built
(:mod:`deepcoder.data.examples`, with :func:`deepcoder.spans.supervision.supervise`).

Issue #18's ``data.on_parse_error=mask|drop|train`` is this one mechanism:
``mask`` = ``mask_steps=[parse_error]`` (the default), ``drop`` = that with
``on_masked_step=drop``, ``train`` = ``mask_steps=[]``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from deepcoder.core.names import SPAN_INDEX
from deepcoder.data.store import KIND_BITS, OWN_SPANS, ExampleStore
from deepcoder.spans.step_kinds import STEP_KINDS, check_kinds

MASK_MODES = ("mask", "drop")


def check_mode(on_masked_step: str) -> str:
    if on_masked_step not in MASK_MODES:
        raise ValueError(f"data.on_masked_step must be one of {MASK_MODES}, got {on_masked_step!r}")
    return on_masked_step


@dataclass(frozen=True)
class SupervisionCounts:
    """Per stored example: supervised tokens from position 1 (the loss's token count), masked tokens
    (all positions), masked steps per kind, and the supervised non-observation tokens from position 1
    that could be distilled and that have a stored teacher top-k."""

    supervised: np.ndarray
    masked_tokens: np.ndarray
    kind_steps: dict[str, np.ndarray]
    distilled: np.ndarray
    covered: np.ndarray


def supervision_counts(store: ExampleStore, spans: Collection[str], mask_steps: Collection[str]) -> SupervisionCounts:
    """The counts of every stored example when ``spans`` are supervised and ``mask_steps`` masked."""
    kinds = check_kinds(mask_steps)
    n, step_of = len(store), store.step_index()
    bits = store["step_kinds"].astype(np.int64)
    masked = (bits & sum(KIND_BITS[kind] for kind in kinds)) != 0
    own = [column for column, span in enumerate(OWN_SPANS) if span in spans]
    span_columns = [SPAN_INDEX[span] for span in spans]
    taught_columns = [SPAN_INDEX[span] for span in spans if span != "observation"]

    def per_example(values: np.ndarray) -> np.ndarray:  # a step-level value summed over each example's steps
        return np.bincount(step_of, weights=values, minlength=n).astype(np.int64)

    def hidden(name: str) -> np.ndarray:  # the masked steps' own supervised tokens, in column ``name``
        return per_example(masked * store[name][:, own].sum(axis=1))

    return SupervisionCounts(
        supervised=store["span_shifted"][:, span_columns].sum(axis=1) - hidden("step_own"),
        masked_tokens=hidden("step_own_all"),
        kind_steps={kind: per_example((bits & KIND_BITS[kind]) != 0) for kind in STEP_KINDS if kind in kinds},
        distilled=store["span_shifted"][:, taught_columns].sum(axis=1) - hidden("step_own"),
        covered=store["span_taught"][:, taught_columns].sum(axis=1) - hidden("step_taught"),
    )


def relabel(
    indices: np.ndarray, counts: SupervisionCounts, on_masked_step: str = "mask"
) -> tuple[np.ndarray, dict[str, int], int, dict[str, int]]:
    """The kept examples (of ``indices``, in order); the steps masked per kind and the tokens they lost
    their label on; trajectories dropped per kind (``on_masked_step=drop``; one with several kinds
    counts under each)."""
    mode = check_mode(on_masked_step)
    dropped: dict[str, int] = {}
    if mode == "drop" and counts.kind_steps:
        bad = np.any([steps[indices] > 0 for steps in counts.kind_steps.values()], axis=0)
        dropped = {kind: int((s[indices] > 0).sum()) for kind, s in counts.kind_steps.items() if (s[indices] > 0).any()}
        indices = indices[~bad]
    masked = {kind: int(steps[indices].sum()) for kind, steps in counts.kind_steps.items()}
    return indices, masked, int(counts.masked_tokens[indices].sum()), dropped
