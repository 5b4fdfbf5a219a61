"""span_loss: the reference form, its normalisation, and the configured family members."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from deepcoder.core.names import SPAN_INDEX
from deepcoder.losses import SpanLoss, span_loss

from conftest import ROOT

B, T, V = 2, 7, 11


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(B, T, V, generator=generator, requires_grad=True)
    labels = torch.randint(0, V, (B, T), generator=generator)
    spans = torch.randint(0, 5, (B, T), generator=generator)
    labels[spans == SPAN_INDEX["prompt"]] = -100
    labels[spans == SPAN_INDEX["observation"]] = -100
    return logits, labels, spans


def test_unit_weights_equal_plain_cross_entropy(batch):
    logits, labels, spans = batch
    ours = span_loss(logits, labels, spans, torch.ones(5))
    reference = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(ours, reference)


def test_weights_scale_each_span_and_normalise_by_all_supervised_tokens(batch):
    logits, labels, spans = batch
    weights = torch.tensor([0.0, 0.25, 2.0, 0.0, 3.0])
    token = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100, reduction="none")
    mask = labels.reshape(-1) != -100
    expected = (weights[spans.reshape(-1)] * token * mask).sum() / mask.sum()
    torch.testing.assert_close(span_loss(logits, labels, spans, weights), expected)


def test_global_token_count_makes_accumulation_exact(batch):
    logits, labels, spans = batch
    weights = torch.tensor([0.0, 0.5, 1.0, 0.0, 1.0])
    total = (labels != -100).sum()
    halves = sum(
        span_loss(logits[i : i + 1], labels[i : i + 1], spans[i : i + 1], weights, num_tokens=total) for i in range(B)
    )
    torch.testing.assert_close(halves, span_loss(logits, labels, spans, weights))


def test_all_masked_batch_is_zero_with_a_gradient(batch):
    logits, labels, spans = batch
    loss = span_loss(logits, torch.full_like(labels, -100), spans, torch.ones(5))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None and torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_divergences_are_zero_for_identical_distributions_and_positive_otherwise(batch, divergence):
    logits, labels, spans = batch
    same = span_loss(logits, labels, spans, torch.ones(5), teacher_logits=logits.detach(), divergence=divergence)
    assert same.abs().item() < 1e-6
    other = span_loss(logits, labels, spans, torch.ones(5), teacher_logits=torch.zeros(B, T, V), divergence=divergence)
    assert other.item() > 0


def test_forward_kl_matches_torch_kl_div(batch):
    logits, labels, spans = batch
    teacher = torch.randn(B, T, V)
    mask = labels != -100
    expected = (
        F.kl_div(F.log_softmax(logits, -1)[mask], F.log_softmax(teacher, -1)[mask], log_target=True, reduction="sum")
        / mask.sum()
    )
    torch.testing.assert_close(span_loss(logits, labels, spans, torch.ones(5), teacher_logits=teacher), expected)


def test_mismatched_vocabularies_are_refused(batch):
    logits, labels, spans = batch
    with pytest.raises(ValueError, match="vocabularies must match"):
        span_loss(logits, labels, spans, torch.ones(5), teacher_logits=torch.zeros(B, T, V + 1))


def test_shipped_loss_configs():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        sft = instantiate(compose("train", ["loss=sft", "data.trajectories=x"]).loss)
        sad = instantiate(compose("train", ["loss=sad", "data.trajectories=x"]).loss)
    assert sft.weights.tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]
    assert sad.weights[SPAN_INDEX["reason"]] == 0.5 and sad.weights[SPAN_INDEX["answer"]] == 1.0
    with pytest.raises(ValueError, match=">= 0"):
        SpanLoss(reason=-1.0)


def test_masked_vocabulary_entries_and_garbage_at_unsupervised_positions_give_finite_loss(batch):
    logits, labels, spans = batch
    teacher = torch.randn(B, T, V)
    teacher[..., -1] = float("-inf")  # a padded vocabulary row
    teacher[labels == -100] = float("nan")  # never supervised, so never counted
    for divergence in ("forward_kl", "jsd"):
        logits.grad = None
        loss = span_loss(logits, labels, spans, torch.ones(5), teacher_logits=teacher, divergence=divergence)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all(), divergence
    # KL(student ‖ teacher) is infinite where the teacher has no mass: correct, and not NaN.
    reverse = span_loss(logits, labels, spans, torch.ones(5), teacher_logits=teacher, divergence="reverse_kl")
    assert reverse.item() == float("inf")
