"""mode=on_policy: the config group and its refusals, GKD's λ (λ = 0 is off-policy training bit for bit),
the on-policy loss, and the student's own episodes trained through train() with observations and
prompts never supervised (checked token by token on the batches the module trained on)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hydra.utils import instantiate

import deepcoder.training.on_policy as on_policy_module
from deepcoder.agent.factory import build_agent
from deepcoder.core.names import IGNORE_INDEX, TRAINED_SPANS
from deepcoder.losses import SpanLoss
from deepcoder.policies.base import Completion
from deepcoder.problems import load_problems
from deepcoder.run.train import train
from deepcoder.spans.render import label_tokens
from deepcoder.training.on_policy import OnPolicy, build_mode, on_policy_loss, on_policy_teacher

from conftest import compose_config as config
from reporting_fixtures import torch_threads

FIRST_TURN = "Thought: Run it.\nAction: python\nAction Input:\n```python\nprint(1)\n```"
SMALL = (
    "model.num_layers=1",
    "model.hidden_size=64",
    "model.intermediate_size=128",
    "data.val_fraction=0",
    "data.batch_size=2",
    "callbacks=none",
    "logger=none",
)


class ShortTeacher:
    """A scripted teacher with a short first turn (a tool call) and the reference solution as its
    answer: trajectories a tiny model learns in seconds on a CPU."""

    provider, model = "scripted", "short-teacher"

    def complete(self, messages, *, problem) -> Completion:
        if len(messages) == 2:
            return Completion(FIRST_TURN, 0, 0, 0.0)
        return Completion(
            f"Thought: Done.\nFinal Answer:\n```python\n{problem.reference_solution.strip()}\n```", 0, 0, 0.0
        )


def write_trajectories(path, limit: int, max_steps: int = 2):
    """Episodes of :class:`ShortTeacher` on the first ``limit`` sample problems, through the agent loop
    (with ``max_steps=1``: its first turns only, which do not pass)."""
    agent = build_agent(max_steps=max_steps)
    records = [agent.run(ShortTeacher(), problem) for problem in load_problems("sample", limit=limit)]
    assert all(record["passed"] == (max_steps > 1) for record in records)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    return write_trajectories(tmp_path_factory.mktemp("on_policy") / "trajectories.jsonl", limit=4)


@pytest.fixture
def one_thread():
    """One intra-op thread: token-by-token generation on a shared 2-core CPU is many times slower with
    two threads that contend (see reporting_fixtures.torch_threads)."""
    with torch_threads(1):
        yield


def mode_of(*overrides: str):
    return config("train", "data.trajectories=x.jsonl", "mode=on_policy", *overrides).mode


def test_off_policy_is_the_default_and_on_policy_composes(tiny_tokenizer):
    default = config("train", "data.trajectories=x.jsonl")
    assert default.mode.name == "off_policy" and default.optimized_metric == "train/loss"
    assert mode_of().name == "on_policy"
    assert config("train", "data.trajectories=x.jsonl", "mode=on_policy").optimized_metric == "on_policy/loss"
    swept = config("train", "data.trajectories=x.jsonl", "mode=on_policy", "hparams_search=optuna")
    assert swept.optimized_metric == "val/loss"  # a sweep's own metric still wins
    kwargs = {"loss": SpanLoss("sad", reason=0.5), "tokenizer": tiny_tokenizer, "span": None, "max_length": 64}
    assert build_mode(config("train", "data.trajectories=x.jsonl").mode, seed=0, **kwargs) is None
    mode = build_mode(mode_of("mode.problems.limit=3", "mode.lambda=0.5"), seed=0, **kwargs)
    try:
        assert isinstance(mode, OnPolicy) and len(mode.problems) == 3 and mode.mix == 0.5
        assert mode.agent.max_steps == 4 and mode.loss.divergence == "reverse_kl"
    finally:
        mode.close()


@pytest.mark.parametrize(
    "override,message",
    [
        ("mode.lambda=1.5", "mode.lambda=1.5"),
        ("mode.episodes=0", "mode.episodes=0"),
        ("mode.batch_size=0", "mode.batch_size=0"),
        ("mode.temperature=-1", "mode.temperature=-1"),
        ("mode.max_new_tokens=0", "mode.max_new_tokens=0"),
        ("mode.divergence=kl", "mode.divergence='kl'"),
        ("mode.name=offpolicy", "mode.name='offpolicy'"),
        ("+mode.episode=3", "unknown key(s) ['episode']"),
        ("mode.problems.ids=[nope]", "mode.problems: unknown ids ['nope']"),
    ],
)
def test_bad_on_policy_settings_are_refused_by_name(tiny_tokenizer, override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_mode(mode_of(override), loss=SpanLoss("sad"), tokenizer=tiny_tokenizer, span=None, max_length=64, seed=0)


def test_on_policy_needs_a_live_teacher(tiny_tokenizer):
    with pytest.raises(ValueError, match="mode=on_policy needs a live teacher.*distill_teacher.name_or_path"):
        on_policy_teacher(None, None, tiny_tokenizer, "tiny")


def test_lambda_is_the_seeded_share_of_on_policy_steps():
    problems = load_problems("sample", limit=2)

    def mode(mix: float, seed: int = 0) -> OnPolicy:
        return OnPolicy(mix, problems, None, SpanLoss("sad"), None, None, 8, episodes=2, seed=seed)

    draws = [mode(0.3).is_on_policy(step) for step in range(4000)]
    assert abs(sum(draws) / len(draws) - 0.3) < 0.03
    assert draws == [mode(0.3).is_on_policy(step) for step in range(4000)]  # the same on every rank and resume
    assert draws != [mode(0.3, seed=1).is_on_policy(step) for step in range(4000)]
    with pytest.raises(ValueError, match="mode.problems selects no problem"):
        OnPolicy(1.0, [], None, SpanLoss("sad"), None, None, 8)
    assert not any(mode(0.0).is_on_policy(step) for step in range(100))
    assert all(mode(1.0).is_on_policy(step) for step in range(100))
    problems, seed = mode(1.0).draw(step=3, micro_batch=0)
    assert len({p.id for p in problems}) == 2 and (problems, seed) == mode(1.0).draw(step=3, micro_batch=0)
    assert mode(1.0).draw(step=3, micro_batch=1)[1] != seed and mode(1.0).draw(step=3, micro_batch=0, rank=1)[1] != seed
    assert mode(1.0).batch_size == 2 and OnPolicy(1.0, problems, None, SpanLoss("sad"), None, None, 8, batch_size=1)


def test_rollouts_are_batched_and_depend_on_the_seed_only(tiny_tokenizer, one_thread):
    """The batched runner plays the step's episodes: the same seed gives the same episodes at any batch
    size (what makes a step's rollouts the same after a resume), a repeated problem gets distinct
    samples, and the student's train/eval mode is restored."""
    from deepcoder.models.tiny import TinyModel
    from deepcoder.training.rollouts import collect_rollouts

    student, _ = TinyModel().load(seed=0)
    sample = load_problems("sample", limit=3)
    problems = [sample[2], sample[0], sample[2], sample[1]]  # more episodes than problems: one repeats
    agent = build_agent(tools=["python"], max_steps=2)

    def play(seed: int, batch_size: int | None, training: bool) -> list[dict]:
        student.train(training)
        records = collect_rollouts(
            student,
            tiny_tokenizer,
            problems,
            agent=agent,
            temperature=1.0,
            max_new_tokens=8,
            seed=seed,
            batch_size=batch_size,
        )
        assert student.training == training
        return records

    records = play(5, None, True)
    assert [(r["problem_id"], r["sample"]) for r in records] == [(p.id, s) for p, s in zip(problems, [0, 0, 1, 0])]
    turns = [[m["content"] for m in r["messages"]] for r in records]
    assert turns[0][2] != turns[2][2]  # two samples of one problem differ
    assert [[m["content"] for m in r["messages"]] for r in play(5, 1, False)] == turns
    assert [[m["content"] for m in r["messages"]] for r in play(5, 3, True)] == turns
    assert [[m["content"] for m in r["messages"]] for r in play(6, None, True)] != turns
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        play(5, 0, True)


def test_on_policy_loss_keeps_the_span_weights_without_ce_or_observations():
    loss = SpanLoss("sad_kd", reason=0.25, action=1.0, answer=2.0, observation=0.5, step_decay=0.9)
    loss = SpanLoss(
        "sad_kd", reason=0.25, answer=2.0, observation=0.5, step_decay=0.9, divergence="forward_kl", temperature=2.0
    )
    ours = on_policy_loss(loss, "jsd", beta=0.2)
    assert ours.weights.tolist() == [0.0, 0.25, 1.0, 0.0, 2.0]
    assert ours.supervised_spans == TRAINED_SPANS and ours.step_decay == 0.9
    assert ours.distillation.kind == "jsd" and ours.distillation.beta == 0.2
    assert ours.distillation.temperature == 2.0 and ours.distillation.ce_weight == 0.0
    assert on_policy_loss(SpanLoss("sft")).distillation.kind == "reverse_kl"


def run(trajectories, out, *overrides: str) -> dict:
    return train(
        config(
            "train",
            f"data.trajectories={trajectories}",
            *SMALL,
            "trainer.max_steps=3",
            "distill_teacher.spec=${model}",  # a random teacher of the student's architecture
            *overrides,
            f"output_dir={out}",
        )
    )


def student_weights(out) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(out / "student").state_dict()


@pytest.mark.parametrize("loss", ["sad_kd", "sad"])
def test_lambda_zero_reproduces_off_policy_training_bit_for_bit(trajectories, tmp_path, monkeypatch, loss, one_thread):
    played = []
    collect = on_policy_module.collect_rollouts
    monkeypatch.setattr(on_policy_module, "collect_rollouts", lambda *a, **k: played.append(1) or collect(*a, **k))
    off = run(trajectories, tmp_path / "off", f"loss={loss}")
    on = run(trajectories, tmp_path / "on", f"loss={loss}", "mode=on_policy", "mode.lambda=0")
    assert not played
    assert on["start"] == off["start"] and on["end"] == off["end"] and "train/loss" in on["end"]
    a, b = student_weights(tmp_path / "off"), student_weights(tmp_path / "on")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rollouts_train_only_the_students_turns_token_by_token(
    trajectories, tmp_path, monkeypatch, tiny_tokenizer, one_thread
):
    """Through train(): the episodes the student played and the batches made of them. Every token the
    loss sees as supervised lies in one of the student's own turns (or is the end-of-turn token that
    closes it) and is the student's token; no token of the system prompt, the task, an observation or
    the template between messages is."""
    played, batches = [], []
    collect, batch_of = on_policy_module.collect_rollouts, on_policy_module.rollout_batch

    def spy_collect(*args, **kwargs):
        records = collect(*args, **kwargs)
        played.append(records)
        return records

    def spy_batch(examples, pad_id, device):
        batches.append(batch_of(examples, pad_id, device))
        return batches[-1]

    monkeypatch.setattr(on_policy_module, "collect_rollouts", spy_collect)
    monkeypatch.setattr(on_policy_module, "rollout_batch", spy_batch)
    metrics = run(
        trajectories,
        tmp_path,
        "loss=sad_kd",
        "mode=on_policy",
        "mode.max_steps=2",  # a second turn: every episode has an Observation (a tool's output or a reminder)
        "mode.max_new_tokens=12",
        "mode.episodes=2",
        "mode.problems.limit=4",
        "trainer.max_steps=2",
    )
    assert [len(records) for records in played] == [2, 2] and len(batches) == 2
    logged = {"on_policy/loss", "on_policy/kl_reason", "on_policy/pass_rate", "on_policy/valid_actions"}
    assert logged <= set(metrics["end"])
    span = instantiate(config("train", "data.trajectories=x.jsonl").span)
    eos = len(tiny_tokenizer.eos_token)
    observation = trained = 0
    for records, batch in zip(played, batches):
        for row, record in enumerate(records):
            tokens = label_tokens(tiny_tokenizer, record, span)
            n = len(tokens.input_ids)
            assert batch["input_ids"][row, :n].tolist() == tokens.input_ids
            assert set(batch["labels"][row, n:].tolist()) <= {IGNORE_INDEX}  # padding
            roles = [message["role"] for message in record["messages"]]
            assert roles[:3] == ["system", "user", "assistant"] and roles[3] == "user"
            ranges = list(zip(roles, tokens.message_starts, tokens.message_ends))
            turns = [(start, end + eos) for role, start, end in ranges if role == "assistant"]
            observations = [(start, end) for role, start, end in ranges[2:] if role == "user"]
            for token, label, (first, _) in zip(tokens.input_ids, batch["labels"][row, :n].tolist(), tokens.offsets):
                in_observation = any(start <= first < end for start, end in observations)
                observation += in_observation
                if label != IGNORE_INDEX:
                    trained += 1
                    assert label == token and any(start <= first < end for start, end in turns)
                    assert not in_observation and first >= tokens.message_starts[2]
    assert trained > 0 and observation > 0


ARCH = ("model.num_layers=2", "model.hidden_size=128", "model.intermediate_size=256")  # teacher and student
ROLLOUTS = ("mode.max_steps=1", "mode.max_new_tokens=32", "mode.episodes=4", "mode.problems.limit=8")


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A tiny model trained until it plays :class:`ShortTeacher`'s first turn (40 steps; checked below)."""
    out = tmp_path_factory.mktemp("tiny_teacher")
    path = write_trajectories(out / "first_turns.jsonl", limit=8, max_steps=1)
    with torch_threads(1):
        train(
            config(
                "train",
                "loss=sft",
                f"data.trajectories={path}",
                "data.only_passed=false",
                "data.val_fraction=0",
                "data.batch_size=8",
                "optimizer.lr=3e-3",
                "scheduler.num_warmup_steps=5",
                "trainer.max_steps=40",
                "callbacks=none",
                "logger=none",
                *ARCH,
                f"output_dir={out}",
            )
        )
    return path, out / "student"


def agreement(model, tokenizer, reference: list[dict]) -> dict:
    """evaluate.py's first-action agreement of ``model`` (greedy) with the teacher's episodes."""
    from deepcoder.evaluation.teacher_forced import first_action_agreement
    from deepcoder.policies.hf import HFPolicy

    policy = HFPolicy.from_model(model, tokenizer, max_new_tokens=32)
    return first_action_agreement(policy, reference, {"python", "retrieve"})


def teacher_episodes(teacher_dir) -> tuple[list[dict], object]:
    """The tiny teacher's own greedy episodes (one turn) on the 8 problems (played batched, as rollouts)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deepcoder.training.rollouts import collect_rollouts

    tokenizer, model = AutoTokenizer.from_pretrained(teacher_dir), AutoModelForCausalLM.from_pretrained(teacher_dir)
    problems = load_problems("sample", limit=8)
    records = collect_rollouts(
        model, tokenizer, problems, agent=build_agent(max_steps=1), temperature=0.0, max_new_tokens=32, seed=0
    )
    assert agreement(model, tokenizer, records)["first_action_agreement"] == 1.0
    return records, tokenizer


@pytest.mark.slow
def test_on_policy_distillation_moves_a_fresh_student_to_the_teacher(tiny_teacher, tmp_path, one_thread):
    """GKD with λ = 0.5 from a random student: about half the steps are its own episodes graded by the
    teacher (reverse KL), the others the teacher's trajectories (kd mixed half and half with CE). The
    divergence on its own episodes falls and its first action comes to agree with the teacher's.
    (Measured while writing this: from a random start, λ = 1 alone moved the divergence 2.1 → 1.5 in
    100 steps but not the greedy first turn; GKD starts from a fine-tuned student.)"""
    from transformers import AutoModelForCausalLM

    from deepcoder.models.tiny import TinyModel

    trajectories, teacher_dir = tiny_teacher
    reference, tokenizer = teacher_episodes(teacher_dir)
    fresh, _ = TinyModel(num_layers=2, hidden_size=128, intermediate_size=256).load(seed=1)  # train()'s start
    before = agreement(fresh, tokenizer, reference)
    metrics = train(
        config(
            "train",
            "loss=kd",  # every span weighted 1: on_policy/loss is the mean divergence per token
            "loss.ce_weight=0.5",  # off-policy steps only: on-policy ones never take CE
            "mode=on_policy",
            "mode.lambda=0.5",
            *ROLLOUTS,
            f"distill_teacher.name_or_path={teacher_dir}",
            f"data.trajectories={trajectories}",
            "data.only_passed=false",
            "data.val_fraction=0",
            "data.batch_size=8",
            "optimizer.lr=3e-3",
            "scheduler.num_warmup_steps=0",
            "trainer.max_steps=120",
            "callbacks=none",
            "logger=csv",
            "seed=1",
            *ARCH,
            f"output_dir={tmp_path}",
        )
    )
    after = agreement(AutoModelForCausalLM.from_pretrained(tmp_path / "student"), tokenizer, reference)
    start, end = metrics["start"]["on_policy/loss"], metrics["end"]["on_policy/loss"]
    print(f"on-policy divergence {start:.3f} → {end:.3f}; first-action agreement {before} → {after}")
    assert end < 0.25 * start
    assert before["first_tool_agreement"] == before["first_action_agreement"] == 0.0
    assert after["first_tool_agreement"] == 1.0 and after["first_action_agreement"] >= 0.75
    csv = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert {"on_policy/kl_reason", "on_policy/pass_rate", "on_policy/valid_actions"} <= set(csv.split(","))


@pytest.mark.slow
@pytest.mark.e2e
def test_train_py_on_policy_with_a_tiny_teacher_directory(tiny_teacher, tmp_path):
    """The README's command, shrunk: train.py mode=on_policy loss=sad_kd distill_teacher.name_or_path=DIR."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    trajectories, teacher_dir = tiny_teacher
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "mode=on_policy",
        "loss=sad_kd",
        f"distill_teacher.name_or_path={teacher_dir}",
        f"data.trajectories={trajectories}",
        "data.only_passed=false",
        *ROLLOUTS,
        "trainer.max_steps=2",
        "callbacks=none",
        *ARCH,
        f"output_dir={tmp_path}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see one_thread
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    logged = {**metrics["start"], **metrics["end"]}
    assert metrics["steps"] == 2 and not any(key.startswith("train/") for key in logged)  # λ = 1: all on-policy
    assert {"on_policy/loss", "on_policy/pass_rate", "on_policy/valid_actions"} <= set(logged)
    assert (tmp_path / "student" / "config.json").exists()
