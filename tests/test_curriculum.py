"""Curriculum: easy examples come first, and the pacing reaches the whole set by the configured step."""

from __future__ import annotations

import math

import pytest
from test_filters import record, write

from deepcoder.data.curriculum import Curriculum
from deepcoder.data.datamodule import TrajectoryDataModule
from deepcoder.data.windows import WindowBatchSampler
from deepcoder.spans.strategies import StructuredSpans

SCORES = [float(s) for s in (40, 3, 25, 11, 37, 8, 19, 30, 1, 14, 22, 6, 33, 17, 28, 9)]
RANK = sorted(range(len(SCORES)), key=SCORES.__getitem__)  # easiest first


@pytest.mark.parametrize("pacing", ["linear", "root", "step"])
def test_pacing_starts_small_grows_and_is_complete_at_full_at_step(pacing):
    curriculum = Curriculum(pacing=pacing, start_fraction=0.2, full_at_step=40, stages=4)
    values = [curriculum.fraction(s) for s in range(0, 60)]
    assert values[0] == pytest.approx(0.2) and all(a <= b for a, b in zip(values, values[1:]))
    assert values[39] < 1.0 and set(values[40:]) == {1.0}
    if pacing == "step":
        assert len(set(values)) == 5
    assert Curriculum(pacing="none").fraction(0) == 1.0


def test_root_pacing_grows_faster_than_linear_at_first():
    root, linear = (Curriculum(pacing=p, start_fraction=0.2, full_at_step=100) for p in ("root", "linear"))
    assert all(root.fraction(s) > linear.fraction(s) for s in range(1, 100))


def test_batches_come_from_the_easiest_fraction_until_the_whole_set_is_open():
    curriculum = Curriculum(pacing="linear", start_fraction=0.25, full_at_step=6)
    sampler = WindowBatchSampler(
        [1] * len(SCORES), batch_size=2, accumulate=1, seed=0, curriculum=curriculum, scores=SCORES
    )
    windows_per_epoch = len(sampler.window_sizes())
    steps_seen: dict[int, set[int]] = {}
    for epoch in range(2):
        for w, window in enumerate(sampler.plan(epoch)):
            steps_seen[epoch * windows_per_epoch + w] = {i for batch in window for i in batch}
    for step, rows in steps_seen.items():
        allowed = set(RANK[: math.ceil(curriculum.fraction(step) * len(SCORES))])
        assert rows <= allowed, step
    assert steps_seen[0] <= set(RANK[:4])  # the first step: only the four easiest
    late = set().union(*(rows for step, rows in steps_seen.items() if step >= 6))
    assert late & set(RANK[-4:])  # from full_at_step on the hardest examples are drawn too
    assert sampler.plan(1) == WindowBatchSampler(
        [1] * len(SCORES), batch_size=2, seed=0, curriculum=curriculum, scores=SCORES
    ).plan(1)


def test_datamodule_scores_by_reasoning_and_action_tokens(tmp_path, tiny_tokenizer):
    thoughts = [" ".join(["Check one more case."] * n) for n in (12, 1, 6, 3, 9, 2, 15, 4)]
    path = write(tmp_path / "t.jsonl", [record(i, thought=t) for i, t in enumerate(thoughts)])
    module = TrajectoryDataModule(
        path,
        tiny_tokenizer,
        StructuredSpans(),
        val_fraction=0.0,
        batch_size=2,
        cache=False,
        curriculum=Curriculum(pacing="step", start_fraction=0.25, full_at_step=50),
    )
    module.setup("fit")
    first = next(iter(module.train_dataloader()))
    by_length = sorted(module.train_set, key=len)
    easiest = {tuple(e.input_ids) for e in by_length[:2]}
    assert {tuple(row[row != tiny_tokenizer.pad_token_id].tolist()) for row in first["input_ids"]} == easiest


def test_unknown_pacing_is_named():
    with pytest.raises(ValueError, match="data.curriculum.pacing"):
        Curriculum(pacing="cosine")
