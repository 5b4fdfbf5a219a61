"""Span options (issue #20): loss.observation, data.mask_steps, loss.step_decay, loss.normalize.

Each option changes exactly the tokens it names, token by token, on a trajectory with a failed
tool run, a repeated action, an unparseable turn and observations; zero values are today's loss
exactly; the chunked path equals the reference; accumulation and DDP stay exact."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from deepcoder.core.names import IGNORE_INDEX, SPAN_INDEX, SPAN_NAMES, TRAINED_SPANS
from deepcoder.data.datamodule import TrajectoryDataModule, collate
from deepcoder.data.supervision import relabel, supervision_counts
from deepcoder.losses import Divergence, SpanLoss, TopKLogprobs, span_loss, token_weights
from deepcoder.models.tiny import TinyModel
from deepcoder.protocol.parsing import parse_turn
from deepcoder.protocol.prompts import observation_message
from deepcoder.show import main as show_main
from deepcoder.spans.render import render_trajectory
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.spans.supervision import supervise
from deepcoder.spans.view import render_tokens
from deepcoder.training.chunked_loss import TeacherHead, chunked_span_loss
from deepcoder.training.distill_teacher import LiveTeacher
from deepcoder.training.module import DistillationModule

from conftest import compose_config

OBS = SPAN_INDEX["observation"]
TRAINED = {SPAN_INDEX[s] for s in TRAINED_SPANS}


def action(thought: str, code: str) -> str:
    return f"Thought: {thought}\nAction: python\nAction Input:\n```python\n{code}\n```"


# (turn, observation, tool_ok): step 0 fails, step 2 repeats step 1, step 3 does not parse
STEPS = [
    (action("Try it.", "print(undefined)"), "Error: NameError: name 'undefined' is not defined", False),
    (action("Check add.", "print(add(1, 2))"), "3", True),
    (action("Once more.", "print(add(1, 2))"), "3", True),
    ("Thought: I am not sure what to do.", "Error: no action. Reply with 'Thought:' then 'Action:'", False),
    ("Thought: Done.\nFinal Answer:\n```python\ndef add(a, b):\n    return a + b\n```", None, None),
]
KIND_STEP = {"tool_error": 0, "repeated_action": 2, "parse_error": 3}


def bad_record(trajectory_id: str = "t0") -> dict:
    messages = [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "Write add(a, b)."},
    ]
    steps = []
    for raw, observation, ok in STEPS:
        turn = parse_turn(raw)
        messages.append({"role": "assistant", "content": turn.text})
        steps.append(
            {
                "thought": turn.thought,
                "action": {"tool": turn.tool, "input": turn.tool_input} if turn.is_action else None,
                "observation": observation,
                "tool_ok": ok,
                "parse_error": turn.error,
                "segments": [dataclasses.astuple(s) for s in turn.segments],
            }
        )
        if observation is not None:
            messages.append({"role": "user", "content": observation_message(observation)})
    return {
        "schema_version": 1,
        "trajectory_id": trajectory_id,
        "problem_id": f"p-{trajectory_id}",
        "teacher": {"provider": "test", "model": "hand-written"},
        "messages": messages,
        "steps": steps,
        "passed": True,
        "error": None,
    }


@pytest.fixture(scope="module")
def example(tiny_tokenizer):
    return render_trajectory(tiny_tokenizer, bad_record(), StructuredSpans())


def changed(a: list[int], b: list[int]) -> set[int]:
    return {i for i, (x, y) in enumerate(zip(a, b)) if x != y}


def test_the_record_has_one_step_of_each_kind(example):
    assert example.step_kinds == (("tool_error",), (), ("repeated_action",), ("parse_error",), ())


def test_observation_supervision_labels_exactly_the_observation_tokens(example, tiny_tokenizer):
    base, _ = supervise(example, TRAINED_SPANS)
    assert base.labels == example.labels  # no option: the rendered (today's) labels
    with_obs, _ = supervise(example, TRAINED_SPANS | {"observation"})
    observation = {i for i, s in enumerate(example.span_ids) if s == OBS}
    assert changed(base.labels, with_obs.labels) == observation and len(observation) > 10
    assert all(with_obs.labels[i] == example.input_ids[i] for i in observation)
    text = tiny_tokenizer.decode([example.input_ids[i] for i in sorted(observation)])
    assert text == "".join(observation_message(o) for _, o, _ in STEPS if o is not None)


@pytest.mark.parametrize("kind", sorted(KIND_STEP))
def test_masking_a_kind_unlabels_exactly_that_steps_own_tokens(example, tiny_tokenizer, kind):
    base, _ = supervise(example, TRAINED_SPANS | {"observation"})
    masked, counts = supervise(example, TRAINED_SPANS | {"observation"}, [kind])
    step = KIND_STEP[kind]
    own = {i for i, (s, k) in enumerate(zip(example.span_ids, example.step_ids)) if k == step and s in TRAINED}
    assert changed(base.labels, masked.labels) == own
    assert all(masked.labels[i] == IGNORE_INDEX for i in own)
    assert masked.input_ids == example.input_ids  # still in the input, as context
    assert tiny_tokenizer.decode([example.input_ids[i] for i in sorted(own)]) == (
        parse_turn(STEPS[step][0]).text + tiny_tokenizer.eos_token
    )
    assert counts == {kind: 1, "tokens": len(own)}
    # its observation (the environment's reply) keeps its label
    obs = [i for i, (s, k) in enumerate(zip(example.span_ids, example.step_ids)) if k == step and s == OBS]
    assert obs and all(masked.labels[i] == example.input_ids[i] for i in obs)


def test_step_decay_scales_each_token_by_gamma_to_its_step(example):
    labels, spans, steps = (torch.tensor(v) for v in (example.labels, example.span_ids, example.step_ids))
    weights = SpanLoss("sad", reason=0.5).weights
    plain = token_weights(labels, spans, weights)
    decayed = token_weights(labels, spans, weights, steps, step_decay=0.5)
    supervised = labels != IGNORE_INDEX
    assert torch.equal(decayed[supervised], plain[supervised] * 0.5 ** steps[supervised].double())
    assert torch.equal(decayed[~supervised], plain[~supervised]) and set(steps[supervised].tolist()) == set(range(5))


def test_zero_values_are_exactly_todays_loss(example, tiny_tokenizer):
    """observation=0, step_decay=1, normalize=tokens, mask_steps=[]: the old Σ w·CE / N, bitwise."""
    batch = collate([supervise(example, SpanLoss("sad").supervised_spans)[0]], 0)
    assert torch.equal(batch["labels"], torch.tensor([example.labels]))
    labels, spans, steps = batch["labels"][:, 1:], batch["span_ids"][:, 1:], batch["step_ids"][:, 1:]
    logits = torch.randn(*labels.shape, len(tiny_tokenizer), generator=torch.Generator().manual_seed(0))
    loss = SpanLoss("sad", reason=0.5, observation=0.0, step_decay=1.0, normalize="tokens")
    mask = labels != IGNORE_INDEX
    ce = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    today = (loss.weights[spans] * mask * ce).sum() / mask.sum()
    ours = loss(logits, labels, spans, step_ids=steps)
    torch.testing.assert_close(ours, today, rtol=1e-6, atol=0)
    assert torch.equal(ours, span_loss(logits, labels, spans, loss.weights))  # the step ids change nothing


def random_batch(seed: int = 0, V: int = 17, H: int = 6):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 9, H, generator=g, requires_grad=True)
    weight = torch.randn(V, H, generator=g, requires_grad=True)
    spans = torch.randint(0, 5, (2, 9), generator=g)
    labels = torch.randint(0, V, (2, 9), generator=g).masked_fill(spans == 0, IGNORE_INDEX)  # observations labelled
    steps = torch.randint(-1, 4, (2, 9), generator=g)
    teacher = (torch.randn(2, 9, H, generator=g), torch.randn(V, H, generator=g))
    return hidden, weight, labels, spans, steps, teacher


@pytest.mark.parametrize("normalize", ["tokens", "weights"])
@pytest.mark.parametrize("teacher_kind", [None, "dense", "topk"])
def test_chunked_equals_the_reference_with_the_new_weights(normalize, teacher_kind):
    hidden, weight, labels, spans, steps, (t_hidden, t_weight) = random_batch()
    weights = torch.tensor([0.0, 0.5, 1.0, 0.3, 2.0])  # observation 0.3
    options = {"step_ids": steps, "step_decay": 0.7, "normalize": normalize}
    t_logits = t_hidden @ t_weight.T
    top = F.log_softmax(t_logits, -1).topk(4, -1)
    reference_teacher = {"dense": {"teacher_logits": t_logits}, "topk": {"teacher_topk": TopKLogprobs(*top[::-1])}}
    chunked_teacher = {"dense": TeacherHead(t_hidden, t_weight), "topk": TopKLogprobs(top.indices, top.values)}
    divergence = Divergence("jsd", beta=0.3, ce_weight=0.1)
    full = span_loss(
        hidden @ weight.T,
        labels,
        spans,
        weights,
        divergence="jsd",
        beta=0.3,
        ce_weight=0.1,
        **reference_teacher.get(teacher_kind, {}),
        **options,
    )
    result = chunked_span_loss(
        hidden,
        weight,
        labels,
        spans,
        weights,
        chunk_size=4,
        teacher=chunked_teacher.get(teacher_kind),
        divergence=divergence,
        **options,
    )
    torch.testing.assert_close(result.loss, full, rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(
        torch.autograd.grad(result.loss, (hidden, weight)), torch.autograd.grad(full, (hidden, weight))
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    # observations took CE, never the divergence: the teacher is irrelevant there
    obs = result.span_ids == OBS
    assert obs.any() and (teacher_kind is None or torch.equal(result.divergence[obs], result.token_loss[obs]))
    mask = labels != IGNORE_INDEX
    expected = weights[spans] * 0.7 ** steps.clamp(min=0).float()
    torch.testing.assert_close(result.weight, expected[mask])
    norm = mask.sum() if normalize == "tokens" else expected[mask].sum()
    torch.testing.assert_close(result.loss * norm, result.total, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_pair():
    """A student and a live teacher: two tiny Qwen2s with one tokenizer and different seeds."""
    spec = TinyModel(num_layers=1, hidden_size=64, intermediate_size=128)
    student, tokenizer = spec.load(seed=0)
    return student, LiveTeacher(spec=spec, seed=1).load(student, tokenizer, "tiny")


def module_gradient(student, teacher, loss, micro_batches, window, accumulate, world_size=1):
    module = DistillationModule(student, loss, optimizer=torch.optim.SGD, chunk_size=7, teacher=teacher)
    module.log = module.log_dict = lambda *args, **kwargs: None
    module.trainer = SimpleNamespace(accumulate_grad_batches=accumulate, world_size=world_size)
    student.zero_grad()
    for micro in micro_batches:
        (module._step({**micro, "window_norm": torch.tensor(window)}, "train") / accumulate).backward()
    return [p.grad.clone() / world_size for p in student.parameters()], module.history


@pytest.mark.parametrize("name,divergence", [("sad", None), ("sad_kd", "forward_kl")])
def test_accumulation_and_ddp_stay_exact_with_observation_decay_and_weight_normalisation(tiny_pair, name, divergence):
    student, teacher = tiny_pair
    loss = SpanLoss(name, reason=0.5, observation=0.2, step_decay=0.8, normalize="weights", divergence=divergence)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 500, (8, 12), generator=g)
    spans = torch.randint(0, 5, (8, 12), generator=g)
    big = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": ids.masked_fill(spans == 0, IGNORE_INDEX),
        "span_ids": spans,
        "step_ids": torch.randint(-1, 5, (8, 12), generator=g),
    }
    window = float(token_weights(big["labels"][:, 1:], spans[:, 1:], loss.weights, big["step_ids"][:, 1:], 0.8).sum())
    micro = [{key: value[i : i + 2] for key, value in big.items()} for i in range(0, 8, 2)]
    one, history = module_gradient(student, teacher, loss, [big], window, accumulate=1)
    four, _ = module_gradient(student, teacher, loss, micro, window, accumulate=4)
    ranks = [module_gradient(student, teacher, loss, micro[r * 2 : r * 2 + 2], window, 2, 2)[0] for r in range(2)]
    for big_grad, accumulated, averaged in zip(one, four, [sum(grads) for grads in zip(*ranks)]):
        torch.testing.assert_close(accumulated, big_grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(averaged, big_grad, rtol=1e-5, atol=1e-7)
    assert {"train/loss_observation", "train/acc_observation"} <= history[0].keys()
    assert "train/kl_observation" not in history[0]


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_data_module_relabels_counts_and_normalises_windows(tmp_path, tiny_tokenizer):
    path = write(tmp_path / "t.jsonl", [bad_record(f"t{i}") for i in range(4)])
    loss = SpanLoss("sad", reason=0.5, observation=0.1, step_decay=0.9, normalize="weights")
    data = TrajectoryDataModule(
        str(path),
        tiny_tokenizer,
        StructuredSpans(),
        val_fraction=0.0,
        batch_size=2,
        loss=loss,
        mask_steps=["tool_error"],
    )
    data.setup("fit")
    example = data.train_set[0]
    step0 = [i for i, k in enumerate(example.step_ids) if k == 0 and example.span_ids[i] in TRAINED]
    assert all(example.labels[i] == IGNORE_INDEX for i in step0)
    assert any(example.labels[i] != IGNORE_INDEX for i, s in enumerate(example.span_ids) if s == OBS)
    stats = data.stats()
    assert stats["masked_steps"] == {"tool_error": 4} and stats["masked_tokens"] == 4 * len(step0)
    (batch,) = [b for b, _ in zip(data.train_dataloader(), range(1))]
    labels, spans, steps = batch["labels"][:, 1:], batch["span_ids"][:, 1:], batch["step_ids"][:, 1:]
    expected = float(token_weights(labels, spans, loss.weights, steps, 0.9).sum())
    assert float(batch["window_norm"]) == pytest.approx(expected, rel=1e-6)  # no accumulation: the batch's own
    dropping = TrajectoryDataModule(
        str(path),
        tiny_tokenizer,
        StructuredSpans(),
        val_fraction=0.0,
        mask_steps=["parse_error"],
        on_masked_step="drop",
    )
    with pytest.raises(ValueError, match="no usable trajectories"):
        dropping.setup("fit")
    counts = supervision_counts(data.store, TRAINED_SPANS, ["repeated_action"])
    kept, masked, tokens, dropped = relabel(data.train_index, counts, "drop")
    assert len(kept) == 0 and dropped == {"repeated_action": 4} and masked == {"repeated_action": 0} and tokens == 0


def test_bad_options_fail_with_the_fix(tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"data.mask_steps: unknown kind\(s\) \['tool_errors'\]; choose from"):
        TrajectoryDataModule("x", tiny_tokenizer, StructuredSpans(), mask_steps=["tool_errors"])
    with pytest.raises(ValueError, match="data.on_masked_step must be one of"):
        TrajectoryDataModule("x", tiny_tokenizer, StructuredSpans(), on_masked_step="skip")
    with pytest.raises(ValueError, match="loss.normalize must be one of"):
        SpanLoss(normalize="mean")
    with pytest.raises(ValueError, match="loss.step_decay must be > 0"):
        SpanLoss(step_decay=0)
    with pytest.raises(ValueError, match=">= 0"):
        SpanLoss(observation=-0.1)


def test_show_draws_masked_steps(tiny_tokenizer):
    tokens = render_tokens(tiny_tokenizer, bad_record(), StructuredSpans(), ["parse_error", "repeated_action"])
    example = render_trajectory(tiny_tokenizer, bad_record(), StructuredSpans())
    expected = [k in (2, 3) and s in TRAINED for s, k in zip(example.span_ids, example.step_ids)]
    assert [t.masked for t in tokens] == expected and any(expected)
    assert [t.span for t in tokens] == [SPAN_NAMES[s] for s in example.span_ids]
    assert not any(t.masked for t in render_tokens(tiny_tokenizer, bad_record(), StructuredSpans(), []))


def test_the_observation_overlay_sweeps_sad_over_three_observation_weights():
    cfg = compose_config("train", "experiment=observation_supervision", "data.trajectories=x.jsonl", hydra=True)
    params = cfg.hydra.sweeper.params
    assert params.loss == "sad" and [float(w) for w in str(params["loss.observation"]).split(",")] == [0, 0.1, 0.5]
    for weight in (0.0, 0.1, 0.5):  # each job composes to the loss it names
        job = compose_config(
            "train",
            "experiment=observation_supervision",
            "loss=sad",
            f"loss.observation={weight}",
            "data.trajectories=x",
        )
        loss = instantiate(job.loss)
        assert loss.name == "sad" and float(loss.weights[OBS]) == pytest.approx(weight)
        assert ("observation" in loss.supervised_spans) == (weight > 0)
        assert job.optimized_metric == "val/loss_action"


def test_by_default_parse_error_steps_are_masked(tmp_path, tiny_tokenizer):
    """Issue #18: a malformed teacher turn is no longer trained on (data.mask_steps=[parse_error])."""
    path = write(tmp_path / "t.jsonl", [bad_record(f"t{i}") for i in range(2)])
    cfg = compose_config("train", f"data.trajectories={path}", "data.val_fraction=0", "data.cache=false")
    data = instantiate(cfg.data, tokenizer=tiny_tokenizer, span=StructuredSpans(), loss=instantiate(cfg.loss))
    data.setup("fit")
    example = data.train_set[0]
    parse_error = [i for i, k in enumerate(example.step_ids) if k == KIND_STEP["parse_error"]]
    assert all(example.labels[i] == IGNORE_INDEX for i in parse_error if example.span_ids[i] in TRAINED)
    assert data.stats()["masked_steps"] == {"parse_error": 2}
    others = [i for i, (s, k) in enumerate(zip(example.span_ids, example.step_ids)) if s in TRAINED and k != 3]
    assert all(example.labels[i] == example.input_ids[i] for i in others)


def test_show_json_marks_masked_tokens(tmp_path, capsys):
    path = write(tmp_path / "t.jsonl", [bad_record()])
    show_main([str(path), "--json", "--mask-steps", "repeated_action"])
    tokens = json.loads(capsys.readouterr().out)
    masked = "".join(t["text"] for t in tokens if t.get("masked"))
    assert masked.startswith("Thought: Once more.") and all(t["masked"] is True for t in tokens if "masked" in t)
    with pytest.raises(SystemExit, match=r"unknown kind\(s\) \['nope'\]"):
        show_main([str(path), "--mask-steps", "nope"])


def test_weight_normalisation_makes_the_loss_invariant_to_scaling_the_weights():
    """normalize=weights: Σw·ℓ/Σw, so sad at (0.5, 1) and at (1, 2) train at the same rate; tokens: twice."""
    hidden, weight, labels, spans, steps, _ = random_batch()
    logits = hidden @ weight.T
    for normalize, ratio in (("weights", 1.0), ("tokens", 2.0)):
        small = SpanLoss("sad", reason=0.5, normalize=normalize)(logits, labels, spans)
        large = SpanLoss("sad", reason=1.0, action=2.0, normalize=normalize)(logits, labels, spans)
        torch.testing.assert_close(large, ratio * small)
    with pytest.raises(ValueError, match=r"loss.step_decay=0.5 needs each token's step_ids"):
        SpanLoss("sad", step_decay=0.5)(logits, labels, spans)


def test_a_distillation_loss_says_observations_train_on_cross_entropy(caplog):
    with caplog.at_level("INFO", logger="deepcoder.losses"):
        SpanLoss("sad_kd", observation=0.1, divergence="jsd")
    assert "observation tokens (loss.observation=0.1) train on cross-entropy, not jsd" in caplog.text
