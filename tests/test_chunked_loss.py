"""The chunked loss from hidden states agrees with the reference span_loss, value and gradients."""

from __future__ import annotations

import pytest
import torch

from deepcoder.losses import span_loss
from deepcoder.training.chunked_loss import chunked_span_loss

B, T, H, V = 3, 9, 8, 13


def inputs(all_masked: bool = False):
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(B, T, H, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(V, H, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, V, (B, T), generator=generator)
    spans = torch.randint(0, 5, (B, T), generator=generator)
    labels[(spans == 0) | (spans == 3) | torch.tensor(all_masked)] = -100
    return hidden, weight, labels, spans


@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_matches_span_loss_and_its_gradients(chunk_size):
    weights = torch.tensor([0.0, 0.5, 1.0, 0.0, 2.0])
    hidden, weight, labels, spans = inputs()
    reference = span_loss(hidden @ weight.T, labels, spans, weights)
    ref_grads = torch.autograd.grad(reference, (hidden, weight))
    result = chunked_span_loss(hidden, weight, labels, spans, weights, chunk_size=chunk_size)
    grads = torch.autograd.grad(result.loss, (hidden, weight))
    torch.testing.assert_close(result.loss.double(), reference.double(), rtol=1e-5, atol=1e-7)
    for ours, theirs in zip(grads, ref_grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    assert result.token_loss.shape == result.span_ids.shape == result.correct.shape == ((labels != -100).sum(),)


def test_all_masked_batch_is_zero_with_a_gradient():
    hidden, weight, labels, spans = inputs(all_masked=True)
    result = chunked_span_loss(hidden, weight, labels, spans, torch.ones(5))
    result.loss.backward()
    assert result.loss.item() == 0.0 and hidden.grad is not None and result.token_loss.numel() == 0


def test_training_path_of_the_tiny_model_agrees_with_full_logits():
    from deepcoder.losses import SpanLoss
    from deepcoder.models.tiny import TinyModel
    from deepcoder.training.module import DistillationModule

    model, _ = TinyModel(num_layers=1).load(seed=0)
    hidden, _, labels, spans = inputs()
    input_ids = torch.randint(0, 100, (B, T))
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels, "span_ids": spans}
    loss = SpanLoss(reason=0.5)
    module = DistillationModule(model, loss, optimizer=torch.optim.SGD, chunk_size=5)
    module.log = module.log_dict = lambda *args, **kwargs: None  # no trainer attached
    chunked = module._step(batch, "val")
    full = loss(model(input_ids=input_ids).logits[:, :-1], labels[:, 1:], spans[:, 1:])
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
