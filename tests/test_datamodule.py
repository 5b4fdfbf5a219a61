"""The DataModule: a second setup reads rendered examples from the cache; any key change re-renders."""

from __future__ import annotations

import json

import pytest
from test_render import make_record

import deepcoder.data.prepare as prepare_module
from deepcoder.core.names import SPAN_INDEX, SPAN_NAMES
from deepcoder.data.datamodule import TrajectoryDataModule, collate
from deepcoder.spans.strategies import StructuredSpans


@pytest.fixture
def trajectories(tmp_path):
    path = tmp_path / "trajectories.jsonl"
    records = []
    for i in range(4):
        record = make_record()
        record.update(trajectory_id=f"t{i}", problem_id=f"p{i}", passed=True, error=None)
        records.append(json.dumps(record))
    path.write_text("\n".join(records) + "\n")
    return path


def build(path, tokenizer, **kwargs):
    module = TrajectoryDataModule(
        str(path), tokenizer, kwargs.pop("span", StructuredSpans()), val_fraction=0.25, batch_size=2, **kwargs
    )
    module.setup("fit")
    return module


def test_second_setup_is_served_from_the_cache(trajectories, tiny_tokenizer, monkeypatch):
    first = build(trajectories, tiny_tokenizer)
    monkeypatch.setattr(
        prepare_module, "render_trajectory", lambda *args, **kwargs: pytest.fail("re-tokenised despite the cache")
    )
    second = build(trajectories, tiny_tokenizer)
    assert not first.cache_hit and second.cache_hit
    assert list(second.train_set) == list(first.train_set) and list(second.val_set) == list(first.val_set)
    assert (len(second.train_set), len(second.val_set)) == (3, 1)


def test_changed_strategy_or_data_misses_the_cache(trajectories, tiny_tokenizer):
    build(trajectories, tiny_tokenizer)
    assert not build(trajectories, tiny_tokenizer, span=StructuredSpans(merge_answer=True)).cache_hit
    assert not build(trajectories, tiny_tokenizer, max_length=64).cache_hit
    trajectories.write_text(trajectories.read_text().replace('"t3"', '"t9"'))
    assert not build(trajectories, tiny_tokenizer).cache_hit


def test_collate_pads_without_supervising_padding(trajectories, tiny_tokenizer):
    module = build(trajectories, tiny_tokenizer, max_length=40, cache=False)
    short = module.train_set[0].__class__("s", [1, 2], [-100, 2], [0, 1])
    batch = collate([module.train_set[0], short], pad_id=tiny_tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, 40)
    assert batch["attention_mask"][1].tolist() == [1, 1] + [0] * 38
    assert (batch["labels"][1, 2:] == -100).all()


def test_a_bad_record_is_named_by_file_line_and_field(trajectories, tiny_tokenizer):
    lines = trajectories.read_text().splitlines()
    broken = json.loads(lines[2])
    broken["messages"][1]["role"] = "robot"
    lines[2] = json.dumps(broken)
    trajectories.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{trajectories}:3: field 'messages.1.role'"):
        build(trajectories, tiny_tokenizer, cache=False)


def test_stats_report_tokens_and_shares_per_span(trajectories, tiny_tokenizer):
    module = build(trajectories, tiny_tokenizer, cache=False)
    stats = module.stats()
    example = module.train_set[0]
    assert stats["span_tokens"] == {name: 3 * example.span_ids.count(SPAN_INDEX[name]) for name in SPAN_NAMES}
    assert sum(stats["span_tokens"].values()) == stats["train_tokens"]
    assert stats["span_shares"]["reason"] == round(stats["span_tokens"]["reason"] / stats["train_tokens"], 4)
    assert stats["real_token_share"] == 1.0  # identical lengths: no padding
    assert stats["dropped"]["not_passed"] == 0 and stats["train_rows"] == 3
