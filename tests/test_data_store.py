"""The prepared-dataset store: the same bytes for any process count, incremental on appended
trajectories, one build under a lock, and nothing taken for a hit after a crash mid-build."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal

import numpy as np
import pytest
from test_filters import record

import deepcoder.data.prepare as prepare_module
from deepcoder.data.cache import prepared_store
from deepcoder.data.datamodule import TrajectoryDataModule
from deepcoder.data.prepare import Renderer
from deepcoder.data.store import LAYOUT, ExampleStore
from deepcoder.spans.strategies import StructuredSpans


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPCODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(prepare_module, "CHUNK", 3)  # several chunks, several in flight


def write(path, ids, mode="w"):
    """Records ``t<i>`` for ``ids``, written in that order (the store orders by trajectory_id)."""
    with path.open(mode) as handle:
        for i in ids:
            handle.write(json.dumps(record(i, thought=" ".join(["Check."] * (i % 5 + 1)), passed=i % 4 != 3)) + "\n")
    return path


def arrays(store: ExampleStore) -> dict[str, bytes]:
    return {name: np.ascontiguousarray(store[name]).tobytes() for name in LAYOUT}


def counting(monkeypatch) -> list[str]:
    """Record the trajectory id of every render (in this process)."""
    rendered: list[str] = []
    real = prepare_module.render_trajectory

    def render(tokenizer, record_, *args, **kwargs):
        rendered.append(record_["trajectory_id"])
        return real(tokenizer, record_, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "render_trajectory", render)
    return rendered


@pytest.mark.e2e  # the pool's processes
def test_two_processes_store_the_same_bytes_as_one(tmp_path, tiny_tokenizer):
    path = write(tmp_path / "t.jsonl", [7, 2, 9, 0, 4, 11, 5, 1, 8, 3, 10, 6, 12])
    renderer = Renderer(tiny_tokenizer, StructuredSpans(), max_length=90)
    one, _ = prepared_store(path, renderer, num_proc=1, cache=False)
    two, _ = prepared_store(path, renderer, num_proc=2, cache=False)
    assert arrays(one) == arrays(two) and len(one) == 13
    assert [one.string("trajectory_id", int(i)) for i in one["order"]] == sorted(f"t{i}" for i in range(13))
    modules = [
        TrajectoryDataModule(str(path), tiny_tokenizer, StructuredSpans(), batch_size=2, num_proc=n, cache=False)
        for n in (1, 2)
    ]
    for module in modules:
        module.setup("fit")
    assert list(modules[0].train_set) == list(modules[1].train_set)
    assert [b["input_ids"].tolist() for b in modules[0].train_dataloader()] == [
        b["input_ids"].tolist() for b in modules[1].train_dataloader()
    ]


@pytest.mark.e2e  # the pool's processes
def test_a_bad_record_in_a_worker_is_named_by_file_and_line(tmp_path, tiny_tokenizer):
    path = write(tmp_path / "t.jsonl", range(8))
    lines = path.read_text().splitlines()
    lines[6] = lines[6].replace('"messages"', '"messagez"')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:7: field 'messages'"):
        prepared_store(path, Renderer(tiny_tokenizer, StructuredSpans(), max_length=2048), num_proc=2)
    assert not [p for p in (tmp_path / "cache" / "datasets").iterdir() if p.is_dir()]


def test_appended_trajectories_render_only_the_new_ones(tmp_path, tiny_tokenizer, monkeypatch):
    path = write(tmp_path / "t.jsonl", [5, 1, 8, 3])
    renderer = Renderer(tiny_tokenizer, StructuredSpans(), max_length=2048)
    first, hit = prepared_store(path, renderer)
    assert not hit and len(first) == 4
    write(path, [0, 9, 2], mode="a")
    rendered = counting(monkeypatch)
    grown, hit = prepared_store(path, renderer)
    assert not hit and rendered == ["t0", "t9", "t2"] and grown.root != first.root
    scratch, _ = prepared_store(path, renderer, cache=False)
    assert arrays(grown) == arrays(scratch)  # the same store as a full render, order included
    assert prepared_store(path, renderer)[1]
    path.write_text(path.read_text().replace('"t5"', '"t6"'))  # changed, not grown: everything again
    rendered.clear()
    prepared_store(path, renderer)
    assert sorted(rendered) == ["t0", "t1", "t2", "t3", "t6", "t8", "t9"]


def test_a_crash_mid_build_leaves_no_cache_hit(tmp_path, tiny_tokenizer, monkeypatch):
    path = write(tmp_path / "t.jsonl", range(8))
    renderer = Renderer(tiny_tokenizer, StructuredSpans(), max_length=2048)
    real = prepare_module.render_trajectory

    def crash(tokenizer, record_, *args, **kwargs):
        if record_["trajectory_id"] == "t6":
            raise KeyboardInterrupt  # after two chunks were written
        return real(tokenizer, record_, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "render_trajectory", crash)
    with pytest.raises(KeyboardInterrupt):
        prepared_store(path, renderer)
    datasets = tmp_path / "cache" / "datasets"
    assert not [p for p in datasets.iterdir() if p.is_dir()]  # no store, and the debris is gone
    monkeypatch.setattr(prepare_module, "render_trajectory", real)
    store, hit = prepared_store(path, renderer)
    assert not hit and len(store) == 8


def _killed_build(path, tokenizer) -> None:
    """A builder killed (SIGKILL: no cleanup runs) in the middle of its build."""
    real = prepare_module.render_trajectory

    def die(tokenizer_, record_, *args, **kwargs):
        if record_["trajectory_id"] == "t6":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(tokenizer_, record_, *args, **kwargs)

    prepare_module.render_trajectory = die
    prepared_store(path, Renderer(tokenizer, StructuredSpans(), max_length=2048))


def _build(path, tokenizer, results) -> None:
    store, hit = prepared_store(path, Renderer(tokenizer, StructuredSpans(), max_length=2048))
    results.put((hit, len(store)))


@pytest.mark.e2e  # processes that build, and one that is killed
def test_a_killed_builder_leaves_debris_the_next_build_removes_and_concurrent_builders_share_one(
    tmp_path, tiny_tokenizer
):
    path = write(tmp_path / "t.jsonl", range(8))
    fork = multiprocessing.get_context("fork")
    killed = fork.Process(target=_killed_build, args=(path, tiny_tokenizer))
    killed.start()
    killed.join(120)
    assert killed.exitcode == -signal.SIGKILL
    datasets = tmp_path / "cache" / "datasets"
    (debris,) = [p for p in datasets.iterdir() if p.is_dir()]
    assert debris.name.endswith(".tmp") and not (debris / "meta.json").exists()
    results = fork.Queue()
    builders = [fork.Process(target=_build, args=(path, tiny_tokenizer, results)) for _ in range(3)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join(120)
    outcomes = sorted(results.get(timeout=5) for _ in builders)
    assert outcomes == [(False, 8), (True, 8), (True, 8)]  # one built, the others waited and mapped it
    assert [p.name.endswith(".tmp") for p in datasets.iterdir() if p.is_dir()] == [False]


def test_the_store_pickles_as_its_path_and_examples_slice(tmp_path, tiny_tokenizer):
    path = write(tmp_path / "t.jsonl", range(6))
    module = TrajectoryDataModule(str(path), tiny_tokenizer, StructuredSpans(), val_fraction=0.0, only_passed=False)
    module.setup("fit")
    assert len(pickle.dumps(module.store)) < 500  # a path, not the arrays
    again = pickle.loads(pickle.dumps(module.store))
    assert arrays(again) == arrays(module.store)
    assert list(module.train_set[1::2]) == list(module.train_set)[1::2]


def test_bad_num_proc_names_the_key(tiny_tokenizer):
    with pytest.raises(ValueError, match="data.num_proc must be >= 1"):
        TrajectoryDataModule("x.jsonl", tiny_tokenizer, StructuredSpans(), num_proc=0)
