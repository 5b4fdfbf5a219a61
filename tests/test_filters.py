"""Filters: each drops what it should, counts it, and runs on cached examples without re-tokenising."""

from __future__ import annotations

import json

import pytest
from test_render import make_record

import deepcoder.data.prepare as prepare_module
from deepcoder.core.names import SPAN_INDEX
from deepcoder.data.datamodule import TrajectoryDataModule
from deepcoder.data.filters import Filters
from deepcoder.spans.strategies import StructuredSpans

NORMAL = "I will run the function on the docstring example and compare the printed value."


def record(
    i: int,
    thought: str = NORMAL,
    program: str = "def f():\n    return 1",
    problem: str | None = None,
    passed: bool = True,
) -> dict:
    turns = [
        f"Thought: {thought}\nAction: python\nAction Input:\n```python\nprint({i})\n```",
        f"Thought: It works.\nFinal Answer:\n```python\n{program}\n```",
    ]
    data = make_record(turns=turns, observation=str(i))
    data.update(trajectory_id=f"t{i}", problem_id=problem or f"p{i}", passed=passed, error=None, final_answer=program)
    return data


def write(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def build(path, tokenizer, **filters) -> TrajectoryDataModule:
    module = TrajectoryDataModule(
        path, tokenizer, StructuredSpans(), val_fraction=0.0, batch_size=1, filters=Filters(**filters)
    )
    module.setup("fit")
    return module


@pytest.fixture
def mixed(tmp_path):
    return write(
        tmp_path / "mixed.jsonl",
        [
            record(0),
            record(1, passed=False),
            record(2, thought=" ".join(["Then I check another case carefully."] * 30)),  # long
            record(3, thought="Go."),  # little reasoning
            record(4, problem="p0"),  # same problem and program as t0
            record(5),  # same program as t0, other problem: kept
        ],
    )


def test_each_filter_drops_and_counts(mixed, tiny_tokenizer):
    everything = TrajectoryDataModule(mixed, tiny_tokenizer, StructuredSpans(), val_fraction=0.0, only_passed=False)
    everything.setup("fit")
    lengths = {e.trajectory_id: len(e) for e in everything.train_set}
    reason = {e.trajectory_id: e.span_ids.count(SPAN_INDEX["reason"]) for e in everything.train_set}
    assert lengths["t2"] > lengths["t0"] + 50 and reason["t3"] < reason["t0"] - 10
    module = build(
        mixed, tiny_tokenizer, max_tokens=lengths["t0"] + 20, min_reason_tokens=reason["t3"] + 1, dedupe="program"
    )
    assert sorted(e.trajectory_id for e in module.train_set) == ["t0", "t5"]
    assert module.stats()["dropped"] == {"not_passed": 1, "too_long": 1, "little_reasoning": 1, "duplicate": 1}
    assert set(everything.stats()["dropped"].values()) == {0}


def test_changing_filters_reuses_the_cached_examples(mixed, tiny_tokenizer, monkeypatch):
    build(mixed, tiny_tokenizer)
    monkeypatch.setattr(
        prepare_module, "render_trajectory", lambda *args, **kwargs: pytest.fail("re-tokenised for a filter change")
    )
    module = build(mixed, tiny_tokenizer, dedupe="assistant", min_reason_share=0.2)
    assert module.cache_hit and module.dropped["not_passed"] == 1


def reason_share(example) -> float:
    trained = [s for s, label in zip(example.span_ids, example.labels) if label != -100]
    return trained.count(SPAN_INDEX["reason"]) / len(trained)


def test_reason_share_and_assistant_dedupe(tmp_path, tiny_tokenizer):
    same_text = [record(0), {**record(0), "trajectory_id": "t9", "problem_id": "p9"}]
    path = write(tmp_path / "same.jsonl", same_text + [record(3, thought="Go.")])
    shares = {e.trajectory_id: reason_share(e) for e in build(path, tiny_tokenizer).train_set}
    assert shares["t3"] < shares["t0"] - 0.05
    module = build(path, tiny_tokenizer, dedupe="assistant", min_reason_share=(shares["t3"] + shares["t0"]) / 2)
    assert sorted(e.trajectory_id for e in module.train_set) == ["t0"]
    assert module.dropped == {"not_passed": 0, "too_long": 0, "little_reasoning": 1, "duplicate": 1}


def test_no_trajectory_left_is_a_clear_error(mixed, tiny_tokenizer):
    with pytest.raises(ValueError, match=r"mixed.jsonl: no usable trajectories .*'too_long': 5"):
        build(mixed, tiny_tokenizer, max_tokens=1)


@pytest.mark.parametrize(
    "settings,field",
    [({"dedupe": "text"}, "dedupe"), ({"min_reason_share": 2.0}, "share"), ({"max_tokens": 0}, "max_tokens")],
)
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(ValueError, match=f"data.filters.*{field}"):
        Filters(**settings)
