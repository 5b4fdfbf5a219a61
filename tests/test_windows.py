"""The window sampler: exact accumulation windows, DDP shards, length grouping, mid-epoch resume."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from test_render import make_record

from deepcoder.data.datamodule import TrajectoryDataModule
from deepcoder.data.windows import WindowBatchSampler
from deepcoder.losses import SpanLoss
from deepcoder.models.tiny import TinyModel
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.training.module import DistillationModule

COUNTS = [3, 5, 2, 8, 1, 9, 4, 7, 6, 10, 11]  # supervised tokens per row; distinct, so windows are identifiable
LENGTHS = [30, 12, 50, 8, 41, 22, 19, 60, 5, 33, 27]


@pytest.fixture
def trajectories(tmp_path):
    """Ten distinct trajectories (each observation differs)."""
    path = tmp_path / "trajectories.jsonl"
    records = []
    for i in range(10):
        record = make_record(observation=str(10**i))
        record.update(trajectory_id=f"t{i}", problem_id=f"p{i}", passed=True, error=None)
        records.append(json.dumps(record))
    path.write_text("\n".join(records) + "\n")
    return path


def rank_batches(sampler: WindowBatchSampler) -> list[list[tuple[int, int]]]:
    return list(sampler)


def test_every_batch_carries_its_windows_token_count():
    sampler = WindowBatchSampler(COUNTS, batch_size=2, accumulate=2, seed=1)
    batches = rank_batches(sampler)
    assert len(batches) == len(sampler) == 6 and sorted(i for b in batches for i, _ in b) == list(range(11))
    for start in range(0, 6, 2):
        window = batches[start : start + 2]
        assert {t for b in window for _, t in b} == {sum(COUNTS[i] for b in window for i, _ in b)}


@pytest.mark.parametrize("group_by_length", [False, True])
def test_k_accumulated_batches_hold_the_same_examples_as_one_big_batch(group_by_length):
    big = WindowBatchSampler(COUNTS, batch_size=4, accumulate=1, lengths=LENGTHS, group_by_length=group_by_length)
    small = WindowBatchSampler(COUNTS, batch_size=2, accumulate=2, lengths=LENGTHS, group_by_length=group_by_length)
    for epoch in (0, 1):
        big.set_epoch(epoch), small.set_epoch(epoch)
        assert [sorted(i for b in w for i in b) for w in big.plan(epoch)] == [
            sorted(i for b in w for i in b) for w in small.plan(epoch)
        ]
    assert big.plan(0) != big.plan(1)


def test_grouping_by_length_cuts_padding_and_keeps_the_short_window_last():
    grouped = WindowBatchSampler(COUNTS, batch_size=2, lengths=LENGTHS, group_by_length=True, accumulate=4)
    plain = WindowBatchSampler(COUNTS, batch_size=2, lengths=LENGTHS, accumulate=4)

    def padded(sampler, epoch):
        return sum(len(b) * max(LENGTHS[i] for i in b) for w in sampler.plan(epoch) for b in w)

    for epoch in range(3):
        assert padded(grouped, epoch) < padded(plain, epoch)
        windows = grouped.plan(epoch)
        assert [len(w) for w in windows] == [4, 2]  # 6 batches: one full window, then the short one
        assert sorted(i for b in windows[-1] for i in b) == [1, 3, 8]  # the three shortest rows


def test_ranks_share_each_window_and_count_its_tokens_globally():
    world = 2
    samplers = [
        WindowBatchSampler(COUNTS, batch_size=2, accumulate=2, world_size=world, rank=r, seed=3) for r in range(world)
    ]
    plan = samplers[0].plan(0)
    assert [len(w) for w in plan] == [4, 2]  # 6 batches → 2 windows of 2 per rank (last: 1 per rank)
    per_rank = [rank_batches(s) for s in samplers]
    assert len(per_rank[0]) == len(per_rank[1]) == len(samplers[0]) == 3
    seen = [i for batches in per_rank for b in batches for i, _ in b]
    assert len(seen) == len(set(seen)) == 11
    for w, window in enumerate(plan):
        total = sum(COUNTS[i] for b in window for i in b)
        k = 2 if w == 0 else 1
        mine = [per_rank[r][w * 2 + j] for r in range(world) for j in range(k)]
        assert sorted(i for b in mine for i, _ in b) == sorted(i for b in window for i in b)
        assert {t for b in mine for _, t in b} == {total}
    with pytest.raises(ValueError, match="ranks"):
        WindowBatchSampler(COUNTS, batch_size=8, world_size=3, rank=0)


def test_loader_resumes_the_identical_batch_sequence(trajectories, tiny_tokenizer):
    def loader():
        module = TrajectoryDataModule(
            str(trajectories), tiny_tokenizer, StructuredSpans(), val_fraction=0.0, batch_size=3, cache=False
        )
        module.setup("fit")
        return module.train_dataloader()

    reference = loader()
    expected = []
    for epoch in (0, 1):
        _set_sampler_epoch(reference, epoch)  # what Lightning calls every epoch
        expected += [batch["input_ids"] for batch in reference]
    first = loader()
    _set_sampler_epoch(first, 1)
    iterator = iter(first)
    for _ in range(2):
        next(iterator)
    state = first.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    resumed = loader()
    resumed.load_state_dict(state)
    rest = [batch["input_ids"] for batch in resumed]
    assert len(rest) == 2 and all(torch.equal(a, b) for a, b in zip(rest, expected[6:]))
    finished = loader()
    finished.load_state_dict({"epoch": 0, "batches": 4})  # saved at the end of epoch 0: epoch 1 from its start
    assert all(torch.equal(a["input_ids"], b) for a, b in zip(finished, expected[4:]))


class RecordBatches(Callback):
    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(batch["input_ids"].clone())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lightning_checkpoints_the_loader_and_resumes_mid_epoch(trajectories, tiny_tokenizer, tmp_path):
    """Through Lightning: a run resumed from a mid-epoch checkpoint sees the uninterrupted run's batches."""

    def fit(max_steps: int, ckpt_path=None, checkpoint: ModelCheckpoint | None = None) -> RecordBatches:
        model, _ = TinyModel(num_layers=1, hidden_size=64, intermediate_size=128).load(seed=0)
        module = DistillationModule(model, SpanLoss(name="sft"), optimizer=torch.optim.SGD)
        data = TrajectoryDataModule(
            str(trajectories),
            tiny_tokenizer,
            StructuredSpans(),
            val_fraction=0.0,
            batch_size=2,
            max_length=128,
            cache=False,
        )
        recorder = RecordBatches()
        trainer = L.Trainer(
            accelerator="cpu",
            max_steps=max_steps,
            accumulate_grad_batches=2,
            logger=False,
            callbacks=[recorder] + ([checkpoint] if checkpoint else []),
            enable_checkpointing=checkpoint is not None,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(tmp_path),
        )
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        return recorder

    uninterrupted = fit(max_steps=4).batches  # 5 batches and 3 steps an epoch: step 4 is in epoch 1
    fit(max_steps=2, checkpoint=ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1))
    saved = torch.load(tmp_path / "epoch=0-step=2.ckpt", weights_only=False)
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batches": 4}]
    resumed = fit(max_steps=4, ckpt_path=tmp_path / "epoch=0-step=2.ckpt").batches
    assert len(uninterrupted) == 7 and len(resumed) == 3
    assert all(torch.equal(a, b) for a, b in zip(resumed, uninterrupted[4:]))
