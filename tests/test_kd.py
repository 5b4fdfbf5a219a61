"""Distillation losses: every divergence against a float64 torch.nn.functional reference on full
logits (span_loss and the chunked path, values and gradients), sparse top-k teachers, exact
zeros, masking, exact accumulation and DDP scaling, the live teacher and its refusals."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from deepcoder.losses import Divergence, SpanLoss, TopKLogprobs, span_loss
from deepcoder.models.tiny import TinyModel
from deepcoder.training.chunked_loss import TeacherHead, chunked_span_loss
from deepcoder.training.distill_teacher import FrozenTeacher, LiveTeacher, build_teacher, check_compatible
from deepcoder.training.module import DistillationModule

from conftest import ROOT

B, T, H, H_TEACHER, V = 3, 9, 8, 6, 13
WEIGHTS = torch.tensor([0.0, 0.5, 1.0, 0.0, 2.0])
CASES = [
    ("forward_kl", 1.0, 0.5, 0.0),
    ("forward_kl", 2.0, 0.5, 0.3),
    ("reverse_kl", 1.0, 0.5, 0.0),
    ("reverse_kl", 0.5, 0.5, 0.0),
    ("jsd", 1.0, 0.5, 0.0),
    ("jsd", 2.0, 0.1, 0.5),
    ("jsd", 1.0, 0.9, 0.0),
]


def batch(all_masked: bool = False):
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(B, T, H, generator=generator, requires_grad=True)
    weight = torch.randn(V, H, generator=generator, requires_grad=True)
    teacher_hidden = torch.randn(B, T, H_TEACHER, generator=generator)
    teacher_weight = torch.randn(V, H_TEACHER, generator=generator)
    labels = torch.randint(0, V, (B, T), generator=generator)
    spans = torch.randint(0, 5, (B, T), generator=generator)
    labels[(spans == 0) | (spans == 3) | torch.tensor(all_masked)] = -100
    return hidden, weight, teacher_hidden, teacher_weight, labels, spans


def reference_token_divergence(
    student: torch.Tensor, teacher: torch.Tensor, divergence: str, temperature: float, beta: float
) -> torch.Tensor:
    """The divergence per position, float64, written with torch.nn.functional only."""
    log_s = F.log_softmax(student.double() / temperature, -1)
    log_t = F.log_softmax(teacher.double() / temperature, -1)
    return reference_from_log_probs(log_s, log_t, divergence, beta)


def reference_from_log_probs(log_s, log_t, divergence, beta):
    def kl(log_p, log_q):  # KL(p ‖ q), with 0·log 0 = 0
        p = log_p.exp()
        return (torch.special.xlogy(p, p) - torch.special.xlogy(p, log_q.exp())).sum(-1)

    if divergence == "forward_kl":
        return kl(log_t, log_s)
    if divergence == "reverse_kl":
        return kl(log_s, log_t)
    log_m = (beta * log_t.exp() + (1 - beta) * log_s.exp()).log()
    return beta * kl(log_t, log_m) + (1 - beta) * kl(log_s, log_m)


def reference_loss(student, teacher_token, labels, spans, ce_weight):
    """Σ w·(α·CE + (1−α)·D) / N in float64, from the per-position divergence."""
    mask = labels != -100
    ce = F.cross_entropy(student.double().reshape(-1, V), labels.reshape(-1), ignore_index=-100, reduction="none").view(
        labels.shape
    )
    token = ce_weight * ce + (1 - ce_weight) * teacher_token
    return (WEIGHTS.double()[spans] * torch.where(mask, token, 0.0)).sum() / mask.sum()


def settings(divergence="forward_kl", temperature=1.0, beta=0.5, ce_weight=0.0) -> Divergence:
    """span_loss's flat keyword options as the chunked path's one settings object."""
    return Divergence(divergence, temperature, beta, ce_weight)


def assert_close(ours, reference):
    """fp32 against float64: 1e-5 relative, elementwise or to the tensor's largest entry."""
    reference = reference.double()
    torch.testing.assert_close(ours.double(), reference, rtol=1e-5, atol=1e-5 * float(reference.detach().abs().max()))


@pytest.mark.parametrize("divergence,temperature,beta,ce_weight", CASES)
def test_span_loss_and_the_chunked_path_match_a_float64_reference(divergence, temperature, beta, ce_weight):
    hidden, weight, teacher_hidden, teacher_weight, labels, spans = batch()
    student64, teacher64 = hidden.double() @ weight.double().T, teacher_hidden.double() @ teacher_weight.double().T
    reference = reference_loss(
        student64,
        reference_token_divergence(student64, teacher64, divergence, temperature, beta),
        labels,
        spans,
        ce_weight,
    )
    ref_grads = torch.autograd.grad(reference, (hidden, weight))
    options = {"divergence": divergence, "temperature": temperature, "beta": beta, "ce_weight": ce_weight}

    full = span_loss(
        hidden @ weight.T, labels, spans, WEIGHTS, teacher_logits=teacher_hidden @ teacher_weight.T, **options
    )
    assert_close(full, reference)
    for ours, theirs in zip(torch.autograd.grad(full, (hidden, weight)), ref_grads):
        assert_close(ours, theirs)

    for chunk_size in (2, 1000):
        result = chunked_span_loss(
            hidden,
            weight,
            labels,
            spans,
            WEIGHTS,
            chunk_size=chunk_size,
            teacher=TeacherHead(teacher_hidden, teacher_weight),
            divergence=settings(**options),
        )
        assert_close(result.loss, reference)
        for ours, theirs in zip(torch.autograd.grad(result.loss, (hidden, weight)), ref_grads):
            assert_close(ours, theirs)
        mask = labels != -100
        expected = reference_token_divergence(student64, teacher64, divergence, temperature, beta)[mask]
        assert_close(result.divergence, expected)


def topk_of(teacher_logits: torch.Tensor, k: int) -> TopKLogprobs:
    log_t = F.log_softmax(teacher_logits, -1)
    top = log_t.topk(k, dim=-1)
    return TopKLogprobs(top.indices, top.values)


def reference_topk(student64, topk: TopKLogprobs, divergence, beta):
    """Coarsened to the k ids + "any other token", float64, explicitly."""
    returned = topk.logprobs > float("-inf")
    t_k = topk.logprobs.double().exp() * returned
    s_k = F.softmax(student64, -1).gather(-1, topk.ids) * returned
    rest = 1 - t_k.sum(-1, keepdim=True)
    if divergence == "reverse_kl":  # at least the 1e-6 its rounding can hide, renormalised
        p = torch.cat([t_k, rest.clamp(min=1e-6)], -1)
        p = p / p.sum(-1, keepdim=True)
    else:  # below 1e-6 (or a rounding sum above 1) the rest is rounding: 0
        p = torch.cat([t_k, torch.where(rest < 1e-6, 0.0, rest)], -1)
    q = torch.cat([s_k, 1 - s_k.sum(-1, keepdim=True)], -1)
    keep = (p > 0) | (q > 0)  # outcomes with no mass on either side do not exist: log 1 − log 1 adds 0
    return reference_from_log_probs(torch.where(keep, q, 1.0).log(), torch.where(keep, p, 1.0).log(), divergence, beta)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_sparse_top_k_teacher_matches_its_float64_reference(divergence):
    hidden, weight, teacher_hidden, teacher_weight, labels, spans = batch()
    topk = topk_of(teacher_hidden @ teacher_weight.T, k=4)
    topk.logprobs[0, 0, 3] = float("-inf")  # a server that returned fewer than k alternatives
    student64 = hidden.double() @ weight.double().T
    reference = reference_loss(student64, reference_topk(student64, topk, divergence, 0.3), labels, spans, 0.0)
    ref_grads = torch.autograd.grad(reference, (hidden, weight))
    full = span_loss(hidden @ weight.T, labels, spans, WEIGHTS, teacher_topk=topk, divergence=divergence, beta=0.3)
    chunked = chunked_span_loss(
        hidden, weight, labels, spans, WEIGHTS, chunk_size=4, teacher=topk, divergence=Divergence(divergence, beta=0.3)
    ).loss
    for ours in (full, chunked):
        assert_close(ours, reference)
        for grad, theirs in zip(torch.autograd.grad(ours, (hidden, weight)), ref_grads):
            assert_close(grad, theirs)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_positions_without_a_top_k_teacher_train_on_cross_entropy(divergence):
    """All k logprobs -inf (stored logprobs that do not cover the token): α·CE + (1−α)·CE = CE there."""
    hidden, weight, teacher_hidden, teacher_weight, labels, spans = batch()
    topk = topk_of(teacher_hidden @ teacher_weight.T, k=4)
    absent = torch.zeros(B, T, dtype=torch.bool)
    absent[0, 1:6], absent[2, ::2] = True, True
    student64 = hidden.double() @ weight.double().T
    ce = F.cross_entropy(student64.reshape(-1, V), labels.clamp(min=0).reshape(-1), reduction="none").view(B, T)
    per_token = torch.where(absent, ce, reference_topk(student64, topk, divergence, 0.3))
    reference = reference_loss(student64, per_token, labels, spans, 0.25)
    ref_grads = torch.autograd.grad(reference, (hidden, weight))
    uncovered = TopKLogprobs(topk.ids, topk.logprobs.masked_fill(absent.unsqueeze(-1), float("-inf")))
    options = {"divergence": divergence, "beta": 0.3, "ce_weight": 0.25}
    full = span_loss(hidden @ weight.T, labels, spans, WEIGHTS, teacher_topk=uncovered, **options)
    chunked = chunked_span_loss(
        hidden, weight, labels, spans, WEIGHTS, chunk_size=4, teacher=uncovered, divergence=settings(**options)
    )
    for ours in (full, chunked.loss):
        assert_close(ours, reference)
        for grad, theirs in zip(torch.autograd.grad(ours, (hidden, weight)), ref_grads):
            assert torch.isfinite(grad).all()
            assert_close(grad, theirs)
    mask = labels != -100
    assert torch.equal(chunked.teacher_present, ~absent[mask])


@pytest.mark.parametrize("mass", [1 - 1e-9, 1 + 2e-6])
@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_a_confident_top_k_teacher_gives_a_finite_loss_and_gradients(divergence, mass):
    """Top-k mass of 1 − 1e-9 (a confident token) or a rounding sum of 1 + 2e-6: before the tail
    floor, reverse KL was inf with NaN gradients. Now finite, equal to the float64 reference,
    and chunked = reference; gradient descent moves student mass into the teacher's top-k."""
    hidden, weight, _, _, labels, spans = batch()
    ids = torch.stack([torch.randperm(V, generator=torch.Generator().manual_seed(i))[:3] for i in range(B * T)])
    probs = torch.tensor([0.9, 0.09, mass - 0.99], dtype=torch.float64)
    topk = TopKLogprobs(ids.view(B, T, 3), probs.log().float().expand(B, T, 3).clone())
    student64 = hidden.double() @ weight.double().T
    reference = reference_loss(student64, reference_topk(student64, topk, divergence, 0.5), labels, spans, 0.0)
    full = span_loss(hidden @ weight.T, labels, spans, WEIGHTS, teacher_topk=topk, divergence=divergence)
    chunked = chunked_span_loss(
        hidden, weight, labels, spans, WEIGHTS, chunk_size=4, teacher=topk, divergence=Divergence(divergence)
    ).loss
    ref_grads = torch.autograd.grad(reference, (hidden, weight))
    for ours in (full, chunked):
        assert torch.isfinite(ours)
        assert_close(ours, reference)
        grads = torch.autograd.grad(ours, (hidden, weight))
        for grad, theirs in zip(grads, ref_grads):
            assert torch.isfinite(grad).all()
            assert_close(grad, theirs)
    outside = ~torch.zeros(B, T, V, dtype=torch.bool).scatter_(-1, topk.ids, True)
    with torch.no_grad():
        rest = [(F.softmax(h @ weight.T, -1) * outside)[labels != -100].sum() for h in (hidden, hidden - grads[0])]
    assert rest[1] < rest[0]


def test_top_k_over_the_whole_vocabulary_is_the_dense_divergence():
    """Reverse KL too: its 1e-6 floor on the teacher's rest shifts it by about log(1 + 1e-6)."""
    hidden, weight, teacher_hidden, teacher_weight, labels, spans = batch()
    teacher = teacher_hidden @ teacher_weight.T
    for divergence in ("forward_kl", "reverse_kl", "jsd"):
        dense = span_loss(hidden @ weight.T, labels, spans, WEIGHTS, teacher_logits=teacher, divergence=divergence)
        sparse = span_loss(
            hidden @ weight.T, labels, spans, WEIGHTS, teacher_topk=topk_of(teacher, V), divergence=divergence
        )
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)


def test_top_k_teacher_refuses_temperature_and_foreign_ids():
    hidden, weight, teacher_hidden, teacher_weight, labels, spans = batch()
    topk = topk_of(teacher_hidden @ teacher_weight.T, k=3)
    with pytest.raises(ValueError, match="temperature 1"):
        span_loss(hidden @ weight.T, labels, spans, WEIGHTS, teacher_topk=topk, temperature=2.0)
    with pytest.raises(ValueError, match=r"vocabulary \[0, 13\)"):
        span_loss(hidden @ weight.T, labels, spans, WEIGHTS, teacher_topk=TopKLogprobs(topk.ids + V, topk.logprobs))


@pytest.mark.parametrize(
    "divergence,temperature", [("forward_kl", 1.0), ("reverse_kl", 2.0), ("jsd", 1.0), ("jsd", 0.7)]
)
def test_identical_distributions_give_exactly_zero(divergence, temperature):
    hidden, weight, _, _, labels, spans = batch()
    options = {"divergence": divergence, "temperature": temperature, "beta": 0.3}
    logits = hidden @ weight.T
    assert span_loss(logits, labels, spans, WEIGHTS, teacher_logits=logits.detach(), **options).item() == 0.0
    result = chunked_span_loss(
        hidden,
        weight,
        labels,
        spans,
        WEIGHTS,
        chunk_size=5,
        teacher=TeacherHead(hidden.detach(), weight.detach()),
        divergence=settings(**options),
    )
    assert result.loss.item() == 0.0 and torch.count_nonzero(result.divergence) == 0
    if temperature == 1.0:
        topk = topk_of(logits.detach(), k=V)  # the student's own distribution, as a server would return it
        sparse = span_loss(logits, labels, spans, WEIGHTS, teacher_topk=topk, divergence=divergence, beta=0.3)
        assert abs(sparse.item()) < 1e-6  # log_softmax then topk reorders: equal to rounding, not bitwise


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_all_masked_batch_is_zero_with_a_gradient(divergence):
    hidden, weight, teacher_hidden, teacher_weight, labels, spans = batch(all_masked=True)
    result = chunked_span_loss(
        hidden,
        weight,
        labels,
        spans,
        WEIGHTS,
        divergence=Divergence(divergence),
        teacher=TeacherHead(teacher_hidden, teacher_weight),
    )
    result.loss.backward()
    assert result.loss.item() == 0.0 and hidden.grad is not None and torch.count_nonzero(hidden.grad) == 0
    logits = (hidden @ weight.T).detach().requires_grad_()
    loss = span_loss(
        logits, labels, spans, WEIGHTS, teacher_logits=torch.full_like(logits, float("nan")), divergence=divergence
    )
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


@pytest.fixture(scope="module")
def tiny_pair():
    """A student and a live teacher: two tiny Qwen2s with one tokenizer and different seeds."""
    spec = TinyModel(num_layers=1, hidden_size=64, intermediate_size=128)
    student, tokenizer = spec.load(seed=0)
    teacher = LiveTeacher(spec=spec, seed=1).load(student, tokenizer, "tiny")
    return student, tokenizer, teacher


def token_batch(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 500, (n, 12), generator=generator)
    spans = torch.randint(0, 5, (n, 12), generator=generator)
    labels = input_ids.masked_fill((spans == 0) | (spans == 3), -100)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels, "span_ids": spans}


def supervised(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


def module_gradient(student, teacher, loss, micro_batches, window: int, accumulate: int, world_size: int = 1):
    """One rank's share of the step Lightning + DDP take: Σ of loss/accumulate, divided by the ranks."""
    module = DistillationModule(student, loss, optimizer=torch.optim.SGD, chunk_size=7, teacher=teacher)
    module.log = module.log_dict = lambda *args, **kwargs: None
    module.trainer = SimpleNamespace(accumulate_grad_batches=accumulate, world_size=world_size)
    student.zero_grad()
    for micro in micro_batches:
        (module._step({**micro, "window_norm": torch.tensor(window)}, "train") / accumulate).backward()
    return [p.grad.clone() / world_size for p in student.parameters()]


@pytest.mark.parametrize("name,divergence", [("sad", None), ("sad_kd", "jsd")])
def test_accumulation_and_ddp_give_the_big_batch_gradient(tiny_pair, name, divergence):
    student, _, teacher = tiny_pair
    loss = SpanLoss(name, reason=0.5, divergence=divergence, ce_weight=0.2 if divergence else 0.0)
    big = token_batch(8)
    micro = [{key: value[i : i + 2] for key, value in big.items()} for i in range(0, 8, 2)]
    window = supervised(big)
    one_by_eight = module_gradient(student, teacher, loss, [big], window, accumulate=1)
    four_by_two = module_gradient(student, teacher, loss, micro, window, accumulate=4)
    # Two DDP ranks, 2 × 2 each: every rank's window count is the global one; DDP averages the ranks.
    ranks = [
        module_gradient(student, teacher, loss, micro[r * 2 : r * 2 + 2], window, accumulate=2, world_size=2)
        for r in range(2)
    ]
    ddp = [sum(grads) for grads in zip(*ranks)]
    for big_grad, accumulated, averaged in zip(one_by_eight, four_by_two, ddp):
        torch.testing.assert_close(accumulated, big_grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(averaged, big_grad, rtol=1e-5, atol=1e-7)


def capture_logs(module: DistillationModule, others: list[torch.Tensor] = ()) -> dict:
    """What the module logs, on one device (or rank 0 of a world whose other ranks hold ``others``)."""
    logged = {}
    module.log_dict = lambda metrics, **kwargs: logged.update(metrics)
    module.log = lambda name, value, **kwargs: logged.update({name: value})
    module.trainer = SimpleNamespace(strategy=SimpleNamespace(reduce=lambda totals, reduce_op: totals + sum(others)))
    return logged


def validate(module: DistillationModule, *batches: dict[str, torch.Tensor]) -> torch.Tensor:
    """A validation epoch as Lightning runs it; returns the last batch's loss."""
    module.on_validation_epoch_start()
    losses = [module._step(batch, "val") for batch in batches]
    module.on_validation_epoch_end()
    return losses[-1]


def test_validation_metrics_are_token_means_over_all_batches_and_ranks(tiny_pair):
    """A batch with 2 supervised tokens and one with 30 count 2 : 30, not 1 : 1, on one device or two ranks."""
    student, _, teacher = tiny_pair
    loss = SpanLoss("sad_kd", reason=0.5, divergence="jsd", ce_weight=0.3)
    data = token_batch(4, seed=3)
    data["labels"][0, 3:] = -100
    first, rest = ({key: value[part] for key, value in data.items()} for part in (slice(0, 1), slice(1, 4)))
    module = DistillationModule(student, loss, optimizer=torch.optim.SGD, chunk_size=5, teacher=teacher)
    whole = capture_logs(module)
    validate(module, data)
    in_two = capture_logs(module)
    validate(module, first, rest)
    other_rank = DistillationModule(student, loss, optimizer=torch.optim.SGD, chunk_size=5, teacher=teacher)
    capture_logs(other_rank)
    validate(other_rank, rest)
    ranks = capture_logs(module, others=[other_rank._val_totals])
    validate(module, first)
    assert whole.keys() == in_two.keys() == ranks.keys() and {"val/loss", "val/jsd_reason"} <= whole.keys()
    for key, value in whole.items():
        assert in_two[key] == pytest.approx(value, rel=1e-6) and ranks[key] == pytest.approx(value, rel=1e-6), key
    per_batch = [float(validate(module, part)) for part in (first, rest)]
    assert abs(sum(per_batch) / 2 - whole["val/loss"]) > 0.01  # a mean of batch means would be another number


def test_module_with_a_live_teacher_agrees_with_span_loss_and_logs_per_span_divergence(tiny_pair):
    student, _, teacher = tiny_pair
    loss = SpanLoss("sad_kd", reason=0.5, divergence="reverse_kl", temperature=2.0)
    module = DistillationModule(student, loss, optimizer=torch.optim.SGD, chunk_size=5, teacher=teacher)
    logged = capture_logs(module)
    data = token_batch(3, seed=1)
    chunked = validate(module, data)
    inputs = {key: data[key] for key in ("input_ids", "attention_mask")}
    with torch.no_grad():
        teacher_logits = teacher.model(**inputs).logits[:, :-1]
    full = loss(
        student(**inputs).logits[:, :-1], data["labels"][:, 1:], data["span_ids"][:, 1:], teacher_logits=teacher_logits
    )
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    assert {"val/kl_reason", "val/kl_action", "val/loss_answer", "val/acc_reason"} <= logged.keys()
    assert not any(p.requires_grad for p in teacher.model.parameters()) and not teacher.model.training
    assert "teacher" not in dict(module.named_children())  # never in the student's checkpoint or optimiser


def test_top_k_logprobs_in_the_batch_feed_the_module(tiny_pair):
    student, _, _ = tiny_pair
    data = token_batch(2, seed=2)
    with torch.no_grad():
        logits = student(input_ids=data["input_ids"]).logits
    topk = topk_of(torch.roll(logits, 1, dims=1), k=5)  # labels-aligned: position t scores token t
    loss = SpanLoss("kd", divergence="forward_kl")
    module = DistillationModule(student, loss, optimizer=torch.optim.SGD, chunk_size=4)
    module.log = module.log_dict = lambda *args, **kwargs: None
    chunked = module._step({**data, "teacher_ids": topk.ids, "teacher_logprobs": topk.logprobs}, "val")
    full = loss(
        logits[:, :-1],
        data["labels"][:, 1:],
        data["span_ids"][:, 1:],
        teacher_topk=TopKLogprobs(topk.ids[:, 1:], topk.logprobs[:, 1:]),
    )
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs a teacher"):
        module._step(data, "val")


def test_teacher_with_another_tokenizer_or_vocabulary_is_refused(tiny_pair):
    student, tokenizer, teacher = tiny_pair
    other_tokenizer = copy.deepcopy(tokenizer)
    other_tokenizer.add_tokens(["<tool_call>"])
    with pytest.raises(ValueError, match="teacher 'big' has a different tokenizer than student 'small'"):
        check_compatible(teacher.model, other_tokenizer, "big", student, tokenizer, "small")
    smaller = copy.deepcopy(teacher.model)
    smaller.resize_token_embeddings(len(tokenizer) - 8)
    with pytest.raises(
        ValueError,
        match=f"teacher 'big' has a vocabulary of {len(tokenizer) - 8} and student 'small' of {len(tokenizer)}",
    ):
        check_compatible(smaller, tokenizer, "big", student, tokenizer, "small")
    padded = copy.deepcopy(teacher.model)
    padded.resize_token_embeddings(len(tokenizer) + 64)  # Qwen2.5-7B vs 0.5B: padding rows only
    assert check_compatible(padded, tokenizer, "big", student, tokenizer, "small") == len(tokenizer)
    assert FrozenTeacher(padded, "big", len(tokenizer)).weight.shape[0] == len(tokenizer)


def test_a_distillation_loss_without_a_teacher_fails_at_startup_naming_the_cause(tiny_pair, tmp_path):
    student, tokenizer, _ = tiny_pair
    path = tmp_path / "trajectories.jsonl"
    path.write_text(json.dumps({"teacher": {"provider": "groq", "model": "openai/gpt-oss-120b"}, "steps": []}) + "\n")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        from hydra.utils import instantiate

        kd = instantiate(compose("train", ["loss=sad_kd", f"data.trajectories={path}"]).loss)
    assert kd.name == "sad_kd" and kd.divergence == "forward_kl" and kd.weights.tolist() == [0, 0.5, 1, 0, 1]
    with pytest.raises(ValueError, match=r"loss=sad_kd .*no live teacher.*groq \(Groq returns no logprobs\)"):
        build_teacher(kd, None, student, tokenizer, "tiny", path)
    assert build_teacher(SpanLoss("sad"), None, student, tokenizer, "tiny", path) is None


def test_loss_options_are_checked():
    with pytest.raises(ValueError, match="divergence must be one of"):
        SpanLoss(divergence="kl")
    with pytest.raises(ValueError, match="ce_weight must be in"):
        SpanLoss(divergence="jsd", ce_weight=1.5)
    with pytest.raises(ValueError, match="jsd needs 0 < beta < 1"):
        SpanLoss(divergence="jsd", beta=1.0)


def test_one_sweep_sets_the_teacher_of_every_loss_and_only_kd_losses_load_it(tiny_pair, tmp_path, caplog):
    student, tokenizer, _ = tiny_pair
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        from hydra.utils import instantiate

        configs = [
            compose(
                "train",
                [
                    f"loss={name}",
                    "data.trajectories=x",
                    "distill_teacher.spec=${model}",
                    "distill_teacher.seed=2",
                    "model.num_layers=1",
                ],
            )
            for name in ("sft", "sad", "kd")
        ]
        losses = [instantiate(cfg.loss) for cfg in configs]
        live = [instantiate(cfg.distill_teacher) for cfg in configs]
    assert build_teacher(losses[1], live[1], student, tokenizer, "tiny", tmp_path / "none.jsonl") is None
    assert "loss=sad is cross-entropy: its teacher is not loaded" in caplog.text
    teacher = build_teacher(losses[2], live[2], student, tokenizer, "tiny", tmp_path / "none.jsonl")
    assert teacher.name == "tiny (seed 2)" and teacher.weight.shape[0] == len(tokenizer)  # its own hidden size


@pytest.mark.slow
def test_train_with_sad_kd_and_a_live_teacher_logs_divergence_per_span(tmp_path):
    """train.py end to end: the teacher is built from the config, loaded, frozen and used."""
    from deepcoder.run.generate import generate
    from deepcoder.run.train import train

    def config(name: str, *overrides: str):
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            return compose(name, list(overrides))

    generate(config("generate", "problems.limit=2", f"output_dir={tmp_path / 'gen'}"))
    metrics = train(
        config(
            "train",
            "loss=sad_kd",
            "distill_teacher.spec=${model}",
            "loss.ce_weight=0.5",
            "debug=fast",
            "trainer.max_steps=2",
            "data.batch_size=2",
            "data.val_fraction=0",
            f"data.trajectories={tmp_path / 'gen' / 'trajectories.jsonl'}",
            f"output_dir={tmp_path / 'train'}",
        )
    )
    assert metrics["loss"] == "sad_kd" and metrics["steps"] == 2
    assert {"train/kl_reason", "train/kl_action", "train/loss_action"} <= metrics["end"].keys()
    assert all(value > 0 for key, value in metrics["end"].items() if key.startswith("train/kl_"))
