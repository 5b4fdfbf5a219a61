"""Which tokens a training set supervises: the supervised spans, minus the masked steps.

Every rendered token knows its agent step (:mod:`deepcoder.spans.render`) and every step its
kinds (:mod:`deepcoder.spans.step_kinds`). :func:`supervise` labels the tokens of the supervised
spans except the own tokens (reason, action, answer, end of turn) of steps with a masked kind,
which stay in the input as context. A masked step's observation is the environment's reply,
not the step: it keeps its label when observations are supervised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import replace

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX, TRAINED_SPANS
from deepcoder.spans.render import RenderedExample


def masked_steps(example: RenderedExample, mask_steps: Collection[str]) -> dict[int, list[str]]:
    """The steps of ``example`` that have a kind in ``mask_steps``, with those kinds."""
    return {
        step: [kind for kind in kinds if kind in mask_steps]
        for step, kinds in enumerate(example.step_kinds)
        if any(kind in mask_steps for kind in kinds)
    }


def supervise(
    example: RenderedExample, spans: Collection[str], mask_steps: Collection[str] = ()
) -> tuple[RenderedExample, Counter]:
    """``example`` labelled on the tokens of ``spans`` except those of masked steps' own spans
    (reason, action, answer); and how many steps of each kind, and tokens (``tokens``), it masked."""
    supervised = {SPAN_INDEX[span] for span in spans}
    own = {SPAN_INDEX[span] for span in TRAINED_SPANS}
    masked = masked_steps(example, mask_steps)
    step_ids = example.step_ids or [-1] * len(example)
    labels: list[int] = []
    counts: Counter[str] = Counter()
    for token, span, step in zip(example.input_ids, example.span_ids, step_ids):
        hidden = step in masked and span in own
        counts["tokens"] += hidden and span in supervised
        labels.append(token if span in supervised and not hidden else IGNORE_INDEX)
    for kinds in masked.values():
        counts.update(kinds)
    return replace(example, labels=labels), counts
