"""Which tokens of the training set are supervised: ``loss.observation`` and ``data.mask_steps``.

Rendered examples are cached with the labels of the three trained spans; this step, after the
cache (changing it never re-tokenises), relabels them for the run: observation tokens too when
the loss trains them, and without the tokens of bad steps (:mod:`deepcoder.spans.step_kinds`):
``on_masked_step=mask`` keeps such a step in the input as context with no label;
``drop`` drops its whole trajectory (counted in ``dropped`` under the kind).

Issue #18's ``data.on_parse_error=mask|drop|train`` is this one mechanism:
``mask`` = ``mask_steps=[parse_error]`` (the default), ``drop`` = that with
``on_masked_step=drop``, ``train`` = ``mask_steps=[]``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from deepcoder.data.example_info import Item
from deepcoder.spans.step_kinds import STEP_KINDS, check_kinds
from deepcoder.spans.supervision import masked_steps, supervise

MASK_MODES = ("mask", "drop")


def check_mode(on_masked_step: str) -> str:
    if on_masked_step not in MASK_MODES:
        raise ValueError(f"data.on_masked_step must be one of {MASK_MODES}, got {on_masked_step!r}")
    return on_masked_step


def relabel(
    items: list[Item], spans: Collection[str], mask_steps: Collection[str], on_masked_step: str = "mask"
) -> tuple[list[Item], dict[str, int], int, dict[str, int]]:
    """The kept items labelled on ``spans`` minus masked steps; the steps masked per kind, the tokens
    they lost their label on; trajectories dropped per kind (``on_masked_step=drop``; one with several
    kinds counts under each)."""
    kinds, mode = check_kinds(mask_steps), check_mode(on_masked_step)
    masked: Counter = Counter()
    dropped: Counter = Counter()
    kept = []
    for example, info in items:
        bad = masked_steps(example, kinds)
        if mode == "drop" and bad:
            dropped.update({kind for found in bad.values() for kind in found})
            continue
        example, counts = supervise(example, spans, kinds)
        masked.update(counts)
        kept.append((example, info))
    return kept, {kind: masked[kind] for kind in STEP_KINDS if kind in kinds}, masked["tokens"], dict(dropped)
