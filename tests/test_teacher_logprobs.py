"""Stored top-k logprobs → batches: token strings to ids, alignment with the rendered chat (checked
against the serving model's own distribution), refusal of another tokenizer, the batches, and
``train.py loss=kd`` from an ``openai`` teacher's trajectories with no live teacher."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from test_kd import capture_logs, validate

from deepcoder.agent.factory import build_agent
from deepcoder.data.datamodule import TrajectoryDataModule, collate
from deepcoder.data.packing import collate_packed
from deepcoder.losses import SpanLoss, TopKLogprobs
from deepcoder.models.tiny import TinyModel
from deepcoder.policies.openai_compat import OpenAITeacher
from deepcoder.problems import load_sample
from deepcoder.spans.render import render_trajectory
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.spans.token_map import TokenMap
from deepcoder.testing.chat_server import DEFAULT_TURNS, ChatServer, Reply, turn_script
from deepcoder.testing.served_logprobs import ServedLogprobs
from deepcoder.training.distill_teacher import build_teacher
from deepcoder.training.module import DistillationModule

from conftest import compose_config

K = 5
REASONING = "I should try the tool first. Ünïcode 🙂 too."
THINKING = [Reply(DEFAULT_TURNS[0], reasoning=REASONING, reasoning_field="reasoning_content"), Reply(DEFAULT_TURNS[1])]
PLAIN = [Reply(DEFAULT_TURNS[0].replace("print(1 + 1)", "print('🙂')")), Reply(DEFAULT_TURNS[1])]
TEACHER_SPEC = TinyModel(num_layers=1, hidden_size=64, intermediate_size=128)


@pytest.fixture(scope="module")
def teacher():
    model, tokenizer = TEACHER_SPEC.load(seed=1)
    return model, tokenizer


@pytest.fixture(scope="module")
def agent():
    return build_agent(tools=("python",), max_steps=3)


def served_records(agent, model, tokenizer, replies, n: int = 1, **served) -> list[dict]:
    """Episodes of the ``openai`` teacher (real SDK, real HTTP) whose server returns ``model``'s top-k."""
    with ChatServer(turn_script(replies), logprobs=ServedLogprobs(model, tokenizer, **served)) as chat:
        policy = OpenAITeacher("test-model", base_url=chat.openai_url, top_logprobs=K)
        return [agent.run(policy, problem) for problem in load_sample()[:n]]


def write(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_token_map_reads_text_token_ids_and_bytes(tiny_tokenizer):
    token_map = TokenMap(tiny_tokenizer)
    def_id = tiny_tokenizer.encode(" def", add_special_tokens=False)[0]
    assert token_map.id_of(" def") == def_id and token_map.id_of(f"token_id:{def_id}") == def_id
    assert token_map.id_of("<|im_end|>") == tiny_tokenizer.eos_token_id
    smile = tiny_tokenizer.encode("🙂", add_special_tokens=False)
    assert len(smile) > 1 and tiny_tokenizer.decode(smile[:1]) == "\ufffd"  # a part of a character
    assert token_map.id_of("\ufffd") is None
    first_bytes = "🙂".encode()[: len(tiny_tokenizer.convert_ids_to_tokens(smile[0]))]
    assert token_map.id_of(f"bytes:{first_bytes.hex()}") == smile[0]
    assert token_map.id_of(f"token_id:{len(tiny_tokenizer)}") is None
    assert token_map.id_of(" not one token at all") is None


@pytest.mark.parametrize(
    "replies,served,uncovered",
    [
        (PLAIN, {}, ""),
        (THINKING, {}, "<think>\n"),  # vLLM: logprobs cover the reasoning; the template wrote <think>
        (THINKING, {"reasoning_logprobs": False}, f"<think>\n{REASONING}\n</think>\n\n"),
        (THINKING, {"as_token_ids": True}, "<think>\n"),
    ],
    ids=["plain", "reasoning_scored", "reasoning_hidden", "token_ids"],
)
def test_stored_top_k_aligns_with_the_rendered_tokens_and_is_the_models_own(agent, teacher, replies, served, uncovered):
    model, tokenizer = teacher
    record = served_records(agent, model, tokenizer, replies, **served)[0]
    tokens = [token for step in record["steps"] for token, _ in step["logprobs"][0]["top"]]
    assert tokens and all(token.startswith("token_id:") for token in tokens) == bool(served.get("as_token_ids"))
    example = render_trajectory(tokenizer, record, StructuredSpans(), token_map=TokenMap(tokenizer))
    top = example.teacher
    assert top.counts.aligned == top.counts.comparable == top.counts.teacher_tokens
    assert top.counts.mapped_alternatives == top.counts.alternatives == K * top.counts.teacher_tokens
    supervised = [i for i, label in enumerate(example.labels) if label != -100]
    covered = set(top.positions.tolist())
    assert covered <= set(supervised)
    assert tokenizer.decode([example.input_ids[i] for i in supervised if i not in covered]) == uncovered
    with torch.no_grad():
        log_probs = F.log_softmax(model(input_ids=torch.tensor([example.input_ids])).logits[0], -1)
    for row, position in enumerate(top.positions.tolist()):
        returned = top.logprobs[row] > float("-inf")
        ids = top.ids[row][returned]
        expected = log_probs[position - 1].topk(K).indices.tolist()
        assert set(ids.tolist()) == {*expected, example.input_ids[position]}  # top-k + the chosen token
        torch.testing.assert_close(top.logprobs[row][returned], log_probs[position - 1, ids], atol=1e-5, rtol=0)
        assert top.logprobs[row][returned].tolist() == sorted(top.logprobs[row][returned].tolist(), reverse=True)


def test_a_multi_byte_character_split_across_tokens_is_kept_through_its_bytes(agent, teacher):
    model, tokenizer = teacher
    record = served_records(agent, model, tokenizer, PLAIN)[0]
    stored = [entry["token"] for entry in record["steps"][0]["logprobs"]]
    assert any(token.startswith("bytes:") for token in stored) and not any("\ufffd" in token for token in stored)


def test_logprobs_of_another_tokenizer_are_refused_naming_the_cause(agent, tmp_path, tiny_tokenizer):
    foreign = TinyModel(vocab_size=1024, num_layers=1, hidden_size=64, intermediate_size=128)
    model, tokenizer = foreign.load(seed=1)
    path = write(tmp_path / "foreign.jsonl", served_records(agent, model, tokenizer, PLAIN, n=2))
    module = TrajectoryDataModule(
        str(path),
        tiny_tokenizer,
        StructuredSpans(),
        only_passed=False,
        val_fraction=0,
        cache=False,
        teacher_logprobs=True,
    )
    with pytest.raises(
        ValueError,
        match=rf"{path}: the stored logprobs do not match the student's tokenizer: "
        r"\d+\.\d% of \d+ tokens align.*e\.g\. trajectory .* the teacher has \[.*\] "
        r"where the student has \[",
    ):
        module.setup("fit")


def test_malformed_stored_logprobs_are_refused_naming_file_line_and_field(agent, teacher, tmp_path, tiny_tokenizer):
    model, tokenizer = teacher
    records = served_records(agent, model, tokenizer, PLAIN, n=2)
    del records[1]["steps"][0]["logprobs"][3]["token"]
    path = write(tmp_path / "bad.jsonl", records)
    module = TrajectoryDataModule(
        str(path), tiny_tokenizer, StructuredSpans(), only_passed=False, cache=False, teacher_logprobs=True
    )
    with pytest.raises(ValueError, match=rf"{path}:2: field 'steps.0.logprobs.3.token': Field required"):
        module.setup("fit")


def test_trajectories_without_logprobs_are_refused_by_the_data_module(tmp_path, tiny_tokenizer):
    from test_render import make_record

    path = write(tmp_path / "plain.jsonl", [{**make_record(), "passed": True}])
    module = TrajectoryDataModule(
        str(path), tiny_tokenizer, StructuredSpans(), val_fraction=0, cache=False, teacher_logprobs=True
    )
    with pytest.raises(ValueError, match="no step carries top-k logprobs"):
        module.setup("fit")


@pytest.fixture(scope="module")
def stored(agent, teacher, tmp_path_factory):
    """A trajectory file of three episodes with reasoning (hidden from the logprobs) and stored top-k."""
    model, tokenizer = teacher
    records = served_records(agent, model, tokenizer, THINKING, n=3, reasoning_logprobs=False)
    return write(tmp_path_factory.mktemp("stored") / "trajectories.jsonl", records)


def data_module(path, tokenizer, **kwargs):
    module = TrajectoryDataModule(
        str(path),
        tokenizer,
        StructuredSpans(),
        only_passed=False,
        val_fraction=0,
        batch_size=3,
        teacher_logprobs=True,
        **kwargs,
    )
    module.setup("fit")
    return module


def test_batches_carry_the_top_k_padded_or_packed_and_the_cache_keeps_them(stored, teacher):
    _, tokenizer = teacher
    module = data_module(stored, tokenizer)
    again = data_module(stored, tokenizer)
    assert not module.cache_hit and again.cache_hit
    examples = module.train_set
    for fresh, cached in zip(examples, again.train_set):
        for name in ("positions", "ids", "logprobs"):
            assert torch.equal(getattr(fresh.teacher, name), getattr(cached.teacher, name))
    padded = collate(examples, tokenizer.pad_token_id)
    packed = collate_packed([examples], tokenizer.pad_token_id)
    assert padded["teacher_ids"].shape[:2] == padded["input_ids"].shape
    assert packed["teacher_logprobs"].shape[:2] == packed["input_ids"].shape
    offset = 0
    for b, example in enumerate(examples):
        positions, k = example.teacher.positions, example.teacher.k
        assert torch.equal(padded["teacher_ids"][b, positions, :k], example.teacher.ids)
        assert torch.equal(packed["teacher_logprobs"][0, positions + offset, :k], example.teacher.logprobs)
        empty = torch.ones(len(example), dtype=torch.bool)
        empty[positions] = False
        assert (padded["teacher_logprobs"][b, : len(example)][empty] == float("-inf")).all()
        offset += len(example)
    stats = module.stats()["teacher_logprobs"]
    assert stats["aligned_share"] == 1.0 and 0.5 < stats["train_coverage"] < 1.0  # the reasoning has none
    cut = max(int(e.teacher.positions[5]) for e in examples) + 1  # inside every first assistant turn
    truncated = data_module(stored, tokenizer, max_length=cut, cache=False).train_set
    assert all(
        len(e) == cut and 5 < len(e.teacher.positions) < len(full.teacher.positions) and e.teacher.positions.max() < cut
        for e, full in zip(truncated, examples)
    )
    assert collate(truncated, tokenizer.pad_token_id)["teacher_ids"].shape[:2] == (3, cut)


@pytest.mark.e2e  # the rendering pool's processes
def test_the_top_k_rendered_by_two_processes_is_the_top_k_rendered_by_one(stored, teacher):
    _, tokenizer = teacher
    one = data_module(stored, tokenizer, cache=False).train_set
    two = data_module(stored, tokenizer, cache=False, num_proc=2).train_set
    assert list(one) == list(two)
    for a, b in zip(one, two):
        assert all(torch.equal(getattr(a.teacher, n), getattr(b.teacher, n)) for n in ("positions", "ids", "logprobs"))
        assert b.teacher.ids.dtype == torch.long and b.teacher.logprobs.dtype == torch.float32


def test_the_module_loss_from_stored_top_k_is_the_reference_on_the_teachers_own_top_k(stored, teacher):
    """Covered tokens: the divergence to the serving model's top-k (+ chosen token); the rest: CE."""
    model, tokenizer = teacher
    batch = collate(data_module(stored, tokenizer).train_set, tokenizer.pad_token_id)
    student, _ = TEACHER_SPEC.load(seed=0)
    loss = SpanLoss("kd", reason=0.5, divergence="jsd", ce_weight=0.1)
    module = DistillationModule(student, loss, optimizer=torch.optim.SGD, chunk_size=16)
    logged = capture_logs(module)
    ours = validate(module, batch)

    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    with torch.no_grad():
        teacher_log_probs = F.log_softmax(model(**inputs).logits[:, :-1], -1)
    labels, spans = batch["labels"][:, 1:], batch["span_ids"][:, 1:]
    covered = batch["teacher_logprobs"][:, 1:].max(-1).values > float("-inf")
    top = teacher_log_probs.topk(K, dim=-1)
    chosen = labels.clamp(min=0).unsqueeze(-1)
    ids = torch.cat([top.indices, chosen], -1)
    values = torch.cat([top.values, teacher_log_probs.gather(-1, chosen)], -1)
    values[..., K] = torch.where((top.indices == chosen).any(-1), float("-inf"), values[..., K])  # no duplicate
    values = values.masked_fill(~covered.unsqueeze(-1), float("-inf"))  # no teacher: CE
    reference = loss(student(**inputs).logits[:, :-1], labels, spans, teacher_topk=TopKLogprobs(ids, values))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    supervised = labels != -100
    assert logged["val/teacher_coverage"] == pytest.approx(float(covered[supervised].float().mean()))
    assert 0 < float(logged["val/teacher_coverage"]) < 1 and "val/jsd_reason" in logged


def test_build_teacher_uses_stored_logprobs_and_refuses_a_temperature(stored, teacher):
    model, tokenizer = teacher
    assert build_teacher(SpanLoss("kd", divergence="forward_kl"), None, model, tokenizer, "tiny", stored) is None
    with pytest.raises(ValueError, match="loss.temperature=2.0: the top-k logprobs stored in .* temperature 1 only"):
        build_teacher(SpanLoss("kd", divergence="forward_kl", temperature=2.0), None, model, tokenizer, "tiny", stored)


def test_train_with_kd_on_an_openai_teachers_stored_logprobs(tmp_path):
    """generate.py (teacher=openai, top_logprobs) → train.py loss=sad_kd with no live teacher."""
    from deepcoder.run.generate import generate
    from deepcoder.run.train import train

    student_spec = TinyModel()  # the train config's model=tiny: same tokenizer, other weights
    model, tokenizer = student_spec.load(seed=7)
    with ChatServer(turn_script(THINKING), logprobs=ServedLogprobs(model, tokenizer)) as chat:
        generate(
            compose_config(
                "generate",
                "teacher=openai",
                f"teacher.base_url={chat.openai_url}",
                "teacher.model=test-model",
                f"teacher.top_logprobs={K}",
                "problems.limit=3",
                f"output_dir={tmp_path / 'gen'}",
            )
        )
    metrics = train(
        compose_config(
            "train",
            "loss=sad_kd",
            "loss.ce_weight=0.2",
            "debug=fast",
            "data.batch_size=2",
            "data.val_fraction=0",
            "data.only_passed=false",
            "data.packing=true",
            f"data.trajectories={tmp_path / 'gen' / 'trajectories.jsonl'}",
            f"output_dir={tmp_path / 'train'}",
        )
    )
    assert metrics["loss"] == "sad_kd" and metrics["steps"] == 3
    assert metrics["teacher_logprobs"]["aligned_share"] == 1.0
    assert 0.5 < metrics["end"]["train/teacher_coverage"] < 1.0
    assert {"train/kl_reason", "train/kl_action"} <= metrics["end"].keys()
    assert all(value > 0 for key, value in metrics["end"].items() if key.startswith("train/kl_"))
