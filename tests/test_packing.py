"""Packing: the same per-example loss as unpacked batches, and more real tokens per batch."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from deepcoder.core.names import IGNORE_INDEX
from deepcoder.data.datamodule import TrajectoryDataModule, collate
from deepcoder.data.packing import collate_packed, pack
from deepcoder.losses import SpanLoss
from deepcoder.models.tiny import TinyModel
from deepcoder.run.generate import generate
from deepcoder.spans.render import RenderedExample
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.training.chunked_loss import chunked_span_loss
from deepcoder.training.module import MODEL_INPUTS, DistillationModule

from conftest import ROOT


@pytest.fixture(scope="module")
def sample_trajectories(tmp_path_factory):
    """The reference teacher's trajectories of the 16 built-in sample problems."""
    out = tmp_path_factory.mktemp("sample")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        generate(compose("generate", ["num_workers=2", f"output_dir={out}"]))
    return out / "trajectories.jsonl"


def datamodule(path, tokenizer, **kwargs) -> TrajectoryDataModule:
    module = TrajectoryDataModule(str(path), tokenizer, StructuredSpans(), val_fraction=0.0, cache=False, **kwargs)
    module.setup("fit")
    return module


def test_balanced_packing_places_every_index_once_within_capacity_in_even_rows():
    lengths = [5, 9, 3, 7, 2, 2, 8, 1, 12]
    rows = pack(lengths, capacity=10, seed=0)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 10 for row in rows if len(row) > 1)
    assert [8] in rows  # longer than the capacity: a row of its own
    assert len(rows) == 5 and rows == pack(lengths, capacity=10, seed=0)  # 37 tokens besides [8]: 4 rows
    assert sorted(sum(lengths[i] for i in row) for row in rows if row != [8]) == [9, 9, 9, 10]
    with pytest.raises(ValueError, match="capacity"):
        pack(lengths, capacity=0)


def test_packed_rows_restart_positions_and_never_supervise_across_a_boundary():
    a = RenderedExample("a", [5, 6, 7], [5, 6, 7], [1, 1, 1])
    b = RenderedExample("b", [8, 9], [8, 9], [2, 2])
    batch = collate_packed([[a, b], [b]], pad_id=0)
    assert "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [8, 9, 0, 0, 0]]
    # b's first token (position 3) would be predicted from a's last token: unsupervised
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9], [IGNORE_INDEX, 9] + [IGNORE_INDEX] * 3]


def per_token_losses(model, batch, weights) -> torch.Tensor:
    """Each supervised token's CE through the module's path: backbone → chunked_span_loss."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(**{k: batch[k] for k in MODEL_INPUTS if k in batch}, use_cache=False).last_hidden_state
    return chunked_span_loss(
        hidden[:, :-1], model.get_output_embeddings().weight, batch["labels"][:, 1:], batch["span_ids"][:, 1:], weights
    ).token_loss


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_packing_gives_each_example_the_loss_it_has_alone(sample_trajectories, tiny_tokenizer):
    data = datamodule(sample_trajectories, tiny_tokenizer, packing=True, max_length=400, pack_length=800)
    row = next(row for row in data.train_rows() if len(row) > 1)
    examples = [data.train_set[i] for i in row]
    model, _ = TinyModel().load(seed=0)
    model.eval()
    loss = SpanLoss(name="sft")
    packed = collate_packed([examples], tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        together = per_token_losses(model, packed, loss.weights)
        alone = [per_token_losses(model, collate([e], tiny_tokenizer.pad_token_id), loss.weights) for e in examples]
        assert all(len(part) > 50 for part in alone)
        torch.testing.assert_close(together, torch.cat(alone), rtol=1e-4, atol=1e-4)
        # the module's own training step on the packed row: the token-weighted mean of the examples alone
        step = DistillationModule(model, loss, optimizer=torch.optim.SGD)._step(packed, "val")
        torch.testing.assert_close(step, torch.cat(alone).mean(), rtol=1e-4, atol=1e-5)


def test_the_packed_training_loader_carries_positions_and_no_mask(sample_trajectories, tiny_tokenizer):
    data = datamodule(sample_trajectories, tiny_tokenizer, packing=True, batch_size=2)
    batch = next(iter(data.train_dataloader()))
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["labels"].shape
    assert (batch["position_ids"][:, 1:] == 0).sum() >= 2  # each row holds several examples
    assert int(batch["window_norm"]) == (batch["labels"][:, 1:] != IGNORE_INDEX).sum()


def test_packing_raises_the_share_of_real_tokens(sample_trajectories, tiny_tokenizer):
    """Measured on the sample data, batch 4, rows of max_length (2048) tokens, with and without grouping."""
    for grouped in (False, True):
        padded, packed = (
            datamodule(
                sample_trajectories, tiny_tokenizer, batch_size=4, packing=packing, group_by_length=grouped
            ).stats()["real_token_share"]
            for packing in (False, True)
        )
        assert padded < packed <= 1.0, (grouped, padded, packed)
