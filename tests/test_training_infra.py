"""Training options and scale-out configs: bf16, activation checkpointing, LoRA, trainers, SLURM,
early stopping and the warmup schedule, each on the tiny model in a few steps."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from transformers import AutoModelForCausalLM

from deepcoder.models.options import LoraOptions
from deepcoder.models.tiny import TinyModel
from deepcoder.run.generate import generate
from deepcoder.run.train import objective, train

from conftest import ROOT


def config(*overrides: str, name: str = "train", hydra: bool = False):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(name, list(overrides), return_hydra_config=hydra)


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    out = tmp_path_factory.mktemp("generate")
    generate(config("problems.limit=4", f"output_dir={out}", name="generate"))
    return out / "trajectories.jsonl"


def tiny_run(trajectories, out, *overrides: str) -> dict:
    return train(
        config(
            f"data.trajectories={trajectories}",
            "debug=fast",
            "data.val_fraction=0",
            "data.batch_size=2",
            "data.max_length=256",
            f"output_dir={out}",
            *overrides,
        )
    )


def test_one_bf16_mixed_step_runs_on_cpu(trajectories, tmp_path):
    # bf16 autocast is ~20x slower than fp32 on this CPU: one step of two short examples.
    metrics = tiny_run(trajectories, tmp_path, "trainer.precision=bf16-mixed", "trainer.max_steps=1")
    assert metrics["steps"] == 1 and math.isfinite(metrics["end"]["train/loss"])
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "student").dtype == torch.float32  # master weights


def test_activation_checkpointing_gives_the_same_gradients():
    ids = torch.randint(0, 4000, (2, 24), generator=torch.Generator().manual_seed(0))
    grads = []
    for checkpointing in (False, True):
        spec = TinyModel(gradient_checkpointing=checkpointing)
        model = spec.for_training(spec.load(seed=0)[0]).model.train()
        assert model.is_activation_checkpointing == checkpointing
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_lora_adapter_is_merged_into_a_plain_checkpoint(tmp_path, tiny_tokenizer):
    spec = TinyModel(lora={"r": 4, "alpha": 8, "dropout": 0.0})
    student = spec.for_training(spec.load(seed=0)[0], seed=0)
    trainable = {name for name, p in student.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    for name, parameter in student.model.named_parameters():
        if "lora_B" in name:  # B starts at 0 (the adapter is a no-op); make it do something
            torch.nn.init.normal_(parameter, std=0.05, generator=torch.Generator().manual_seed(1))
    ids = torch.randint(0, 4000, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapted = student.model.eval()(ids).logits
    student.save_pretrained(tmp_path, tiny_tokenizer)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert not any("lora" in key for key in plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, adapted, rtol=1e-4, atol=1e-4)


def test_lora_training_moves_only_the_adapted_layers(trajectories, tmp_path):
    tiny_run(
        trajectories,
        tmp_path,
        "model.lora={r:4,alpha:16,dropout:0.0}",
        "model.gradient_checkpointing=true",
        "trainer.max_steps=2",
        "optimizer.lr=0.05",
        "scheduler.num_warmup_steps=0",
    )
    initial = TinyModel().load(seed=0)[0].state_dict()
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "student").state_dict()
    assert trained.keys() == initial.keys()
    changed = {key for key in initial if not torch.equal(initial[key], trained[key])}
    assert any("q_proj.weight" in key for key in changed) and any("down_proj.weight" in key for key in changed)
    assert all(any(f"{m}.weight" in key for m in LoraOptions().target_modules) for key in changed), changed


def test_lora_option_errors_name_the_field():
    assert LoraOptions.parse(None) is None and LoraOptions.parse(True) == LoraOptions()
    assert LoraOptions.parse({"r": 8, "target_modules": ["q_proj"]}) == LoraOptions(r=8, target_modules=("q_proj",))
    with pytest.raises(ValueError, match=r"model\.lora: unknown field\(s\) \['rank'\]"):
        LoraOptions.parse({"rank": 8})
    with pytest.raises(ValueError, match="model.lora must be"):
        LoraOptions.parse("yes")


def test_early_stopping_on_val_loss_ends_a_run_that_does_not_improve(trajectories, tmp_path):
    metrics = tiny_run(
        trajectories,
        tmp_path,
        "callbacks=early_stopping",
        "callbacks.early_stopping.patience=1",
        "data.val_fraction=0.5",
        "data.batch_size=1",
        "optimizer.lr=0.0",
        "trainer.max_steps=40",
    )
    # lr 0: val/loss never improves, so training stops after 1 + patience validations (epochs of 2 steps)
    assert metrics["steps"] == 4 and "val/loss" in metrics["final"]


def test_warmup_cosine_schedule_is_what_the_lr_monitor_logs(trajectories, tmp_path):
    tiny_run(
        trajectories,
        tmp_path,
        "callbacks=default",
        "logger=csv",
        "trainer.max_steps=6",
        "scheduler.num_warmup_steps=2",
        "optimizer.lr=0.01",
    )
    rows = list(csv.DictReader(next((tmp_path / "csv").rglob("metrics.csv")).open()))
    logged = [float(row["lr-AdamW"]) for row in rows if row.get("lr-AdamW")]
    expected = [0.01 * (s / 2 if s < 2 else 0.5 * (1 + math.cos(math.pi * (s - 2) / 4))) for s in range(6)]
    assert logged == pytest.approx(expected, abs=1e-9)


def test_objective_is_the_named_metric_or_a_clear_error():
    metrics = {"end": {"train/loss": 2.0}, "final": {"val/loss": 3.0, "train/loss": 9.0}}
    assert objective(metrics, "train/loss") == 2.0 and objective(metrics, "val/loss") == 3.0
    with pytest.raises(ValueError, match="val/acc_action was not logged"):
        objective(metrics, "val/acc_action")


@pytest.mark.parametrize(
    "trainer,strategy",
    [("gpu", None), ("ddp", "ddp"), ("cpu_ddp", "ddp"), ("fsdp", "FSDPStrategy"), ("deepspeed", "DeepSpeedStrategy")],
)
def test_scale_out_trainer_configs_compose(trainer, strategy):
    cfg = config(f"trainer={trainer}", "data.trajectories=x.jsonl").trainer
    node = cfg.get("strategy")
    assert (node if isinstance(node, str) or node is None else node._target_.rsplit(".", 1)[-1]) == strategy
    assert cfg.precision == ("32-true" if trainer == "cpu_ddp" else "bf16-mixed")
    if strategy is not None:
        assert cfg.use_distributed_sampler is False  # the window sampler shards itself


def test_fsdp_wraps_each_qwen2_decoder_layer():
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

    policy = instantiate(config("trainer=fsdp", "data.trajectories=x.jsonl").trainer.strategy.auto_wrap_policy)
    assert isinstance(policy, ModuleWrapPolicy) and policy._module_classes == {Qwen2DecoderLayer}


def test_slurm_launcher_composes_with_the_trainer_geometry():
    cfg = config(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=a100",
        "trainer=ddp",
        "trainer.num_nodes=4",
        "hydra.launcher.gpus_per_node=4",
        "data.trajectories=x.jsonl",
        hydra=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher") and launcher.partition == "a100"
    assert launcher.nodes == 4 and launcher.tasks_per_node == 4 and launcher.timeout_min == 1440


@pytest.mark.e2e
@pytest.mark.slow
def test_two_process_cpu_ddp_equals_one_process_accumulating_the_same_batches(trajectories, tmp_path):
    """Real gloo DDP, 2 ranks × batch 1, against 1 process × batch 1 × accumulation 2: the same steps,
    weights and validation metrics (each rank validates its half; sums and counts are added up)."""
    common = [
        f"data.trajectories={trajectories}",
        "debug=fast",
        "data.val_fraction=0.5",
        "data.batch_size=1",
        "data.max_length=256",
        "trainer.max_steps=2",
    ]
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "trainer=cpu_ddp", *common, f"output_dir={tmp_path / 'ddp'}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    single = train(config(*common, "+trainer.accumulate_grad_batches=2", f"output_dir={tmp_path / 'one'}"))
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["steps"] == single["steps"] == 2 and ddp["n_val"] == single["n_val"] == 2
    validation = {key: value for key, value in single["final"].items() if key.startswith("val/")}
    assert {"val/loss", "val/loss_reason", "val/acc_reason"} <= validation.keys()  # 256 tokens: reasoning only
    for key, value in validation.items():
        assert ddp["final"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    expected = AutoModelForCausalLM.from_pretrained(tmp_path / "one" / "student").state_dict()
    for name, value in AutoModelForCausalLM.from_pretrained(tmp_path / "ddp" / "student").state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)
