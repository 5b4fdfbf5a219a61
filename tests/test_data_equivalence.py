"""The memory-mapped store gives the batches of the eager pipeline it replaced, for the same seed.

``reference`` is that pipeline as it was (the JSON cache's path, cache aside): render every usable
trajectory, truncate, filter on the rendered examples, relabel with ``supervise``, shuffle, split;
normalisers, lengths and curriculum scores from the example lists. The data: trajectories of the
reference teacher on sample problems, the FireAct fixture's transcripts, records with bad steps,
and failed duplicates.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from functools import partial

import pytest
import torch
from test_span_options import bad_record

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX, SPAN_NAMES, TRAINED_SPANS
from deepcoder.data.curriculum import Curriculum
from deepcoder.data.datamodule import TrajectoryDataModule, collate_tagged
from deepcoder.data.example_info import describe
from deepcoder.data.filters import Filters
from deepcoder.data.packing import pack
from deepcoder.data.windows import WindowBatchSampler, WindowTagged, weight_sum
from deepcoder.losses import SpanLoss
from deepcoder.records.trajectories import load_trajectories
from deepcoder.run.generate import generate
from deepcoder.spans.importers import import_file
from deepcoder.spans.render import render_trajectory
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.spans.supervision import masked_steps, supervise

from conftest import ROOT, compose_config

FIREACT = ROOT / "tests" / "fixtures" / "fireact" / "hotpotqa_gpt.jsonl"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    generate(compose_config("generate", "problems.limit=4", f"output_dir={out / 'generate'}"))
    sample = [json.loads(line) for line in (out / "generate" / "trajectories.jsonl").read_text().splitlines()]
    records = sample + import_file(FIREACT) + [bad_record(f"bad{i}") for i in range(3)]
    failed = [{**r, "trajectory_id": f"dup{i}", "passed": i % 2 == 0} for i, r in enumerate(records[:6])]
    path = out / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records + failed))
    return path


def drop_reason(example, info, only_passed, filters, seen):
    """The old ``Filters._drop_reason`` on a rendered example."""
    if only_passed and info.passed is not True:
        return "not_passed"
    if filters.max_tokens is not None and info.full_length > filters.max_tokens:
        return "too_long"
    counts = Counter(SPAN_NAMES[s] for s in example.span_ids)
    trained = sum(counts[span] for span in TRAINED_SPANS)
    if counts["reason"] < filters.min_reason_tokens or counts["reason"] < filters.min_reason_share * trained:
        return "little_reasoning"
    if filters.dedupe:
        digest = info.program_digest or info.assistant_digest
        key = (info.problem_id, digest) if filters.dedupe == "program" else (info.assistant_digest,)
        if key in seen:
            return "duplicate"
        seen.add(key)
    return None


def reference(path, tokenizer, seed, val_fraction, max_length, filters, loss, mask_steps, on_masked_step, **_):
    """Train and val examples (with infos), drops and masked steps, as the eager pipeline made them."""
    items = []
    for _, record in load_trajectories(path, only_passed=False):
        full = render_trajectory(tokenizer, record, StructuredSpans())
        items.append((full.truncated(max_length), describe(record, len(full))))
    dropped = dict.fromkeys(("not_passed", "too_long", "little_reasoning", "duplicate"), 0)
    kept, seen = [], set()
    for example, info in items:
        reason = drop_reason(example, info, True, filters, seen)
        if reason:
            dropped[reason] += 1
        else:
            kept.append((example, info))
    labelled, masked, bad_kinds, kinds = [], Counter(), Counter(), set(mask_steps)
    for example, info in kept:
        bad = masked_steps(example, kinds)
        if on_masked_step == "drop" and bad:
            bad_kinds.update({kind for found in bad.values() for kind in found})
            continue
        example, counts = supervise(example, loss.supervised_spans, kinds)
        masked.update(counts)
        labelled.append((example, info))
    dropped.update(bad_kinds)
    random.Random(seed).shuffle(labelled)
    n_val = int(len(labelled) * val_fraction)
    return labelled[n_val:], labelled[:n_val], dropped, masked


def norm(example, loss):
    if loss.normalize == "weights":
        return weight_sum(example, loss)
    return sum(1 for label in example.labels[1:] if label != IGNORE_INDEX)


def score(curriculum, example, info):
    counts = Counter(SPAN_NAMES[s] for s in example.span_ids)
    return (
        curriculum.reason * counts["reason"]
        + curriculum.action * (counts["action"] + counts["answer"])
        + curriculum.steps * info.steps
    )


CONFIGS = {
    "padded": {},
    "packed_filtered": dict(
        packing=True, pack_length=900, max_length=700, filters=Filters(max_tokens=1500, min_reason_tokens=5)
    ),
    "curriculum_dedupe": dict(
        group_by_length=True,
        curriculum=Curriculum(pacing="root", full_at_step=3, steps=2.0),
        filters=Filters(dedupe="program", min_reason_share=0.05),
    ),
    "weights_masked": dict(
        loss=SpanLoss("sad", reason=0.5, observation=0.1, step_decay=0.9, normalize="weights"),
        mask_steps=["tool_error", "repeated_action", "parse_error"],
        filters=Filters(dedupe="assistant"),
    ),
    "drop": dict(mask_steps=["repeated_action"], on_masked_step="drop"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_the_store_gives_the_eager_pipelines_examples_and_batches(name, mixed, tiny_tokenizer):
    settings = {
        "seed": 5,
        "val_fraction": 0.2,
        "max_length": 2048,
        "filters": Filters(),
        "loss": SpanLoss("sft"),
        "mask_steps": ["parse_error"],
        "on_masked_step": "mask",
        **CONFIGS[name],
    }
    module = TrajectoryDataModule(str(mixed), tiny_tokenizer, StructuredSpans(), batch_size=3, **settings)
    module.setup("fit")
    train, val, dropped, masked = reference(mixed, tiny_tokenizer, **settings)
    examples = [example for example, _ in train]
    assert list(module.train_set) == examples and list(module.val_set) == [e for e, _ in val]
    assert module.dropped == dropped
    assert module.masked == {k: masked[k] for k in module.mask_steps} and module.masked_tokens == masked["tokens"]
    rows = (
        pack([len(e) for e in examples], module.pack_length, seed=5)
        if module.packing
        else [[i] for i in range(len(examples))]
    )
    curriculum = settings.get("curriculum")
    sampler = WindowBatchSampler(
        [sum(norm(examples[i], settings["loss"]) for i in row) for row in rows],
        3,
        seed=5,
        lengths=[sum(len(examples[i]) for i in row) for row in rows],
        group_by_length=settings.get("group_by_length", False),
        curriculum=curriculum,
        scores=[max(score(curriculum, *train[i]) for i in row) for row in rows] if curriculum else None,
    )
    expected = WindowTagged(examples, rows)
    collate = partial(collate_tagged, pad_id=tiny_tokenizer.pad_token_id, packed=module.packing)
    loader = module.train_dataloader()
    for epoch in (0, 1):
        loader.batch_sampler.set_epoch(epoch)
        sampler.set_epoch(epoch)
        ours = list(loader)
        theirs = [collate([expected[key] for key in keys]) for keys in sampler]
        assert len(ours) == len(theirs) > 0
        for a, b in zip(ours, theirs):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), (name, epoch, key)
    assert module.stats()["span_tokens"] == {
        span: sum(e.span_ids.count(SPAN_INDEX[span]) for e in examples) for span in SPAN_NAMES
    }
