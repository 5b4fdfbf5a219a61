"""Issue #18 on the real-model path, offline: ``model=qwen-*`` at real widths with random weights,
fp32 master weights under bf16-mixed, per-model defaults, ``trainer=auto``, the eos/turn-end check,
the hub check that fails fast, and the DeepSpeed guards."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import Qwen2Config, Qwen2ForCausalLM

from deepcoder.models.pretrained import PretrainedModel
from deepcoder.models.qwen_tokenizer import load_qwen_tokenizer
from deepcoder.run.generate import generate
from deepcoder.run.train import train
from deepcoder.training.hardware import resolve_trainer
from deepcoder.training.sharding import deepspeed_stage, loss_scale

from conftest import compose_config as config

QWEN = ["model=qwen-0.5b", "model.random_init=true", "model.num_layers=1"]


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    out = tmp_path_factory.mktemp("generate")
    generate(config("generate", "problems.limit=2", f"output_dir={out}"))
    return out / "trajectories.jsonl"


def last_checkpoint(out: Path) -> dict:
    return torch.load(max((out / "checkpoints").glob("*.ckpt")), map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_bf16_mixed_keeps_fp32_master_weights_and_rmsnorm_gains_move(trajectories, tmp_path):
    """#18.1: under bf16-mixed the parameters and AdamW state are fp32, so at lr 1e-5 the RMSNorm
    gains (1.0 at init) move; with bf16 weights none of them would (1e-5 is below bf16's step at 1.0)."""
    cfg = config(
        "train",
        *QWEN,
        "trainer=cpu",
        "trainer.precision=bf16-mixed",
        "optimizer.lr=1e-5",
        "scheduler.num_warmup_steps=0",
        "trainer.max_steps=2",
        "trainer.accumulate_grad_batches=1",
        "data.batch_size=1",
        "data.max_length=1024",
        "data.val_fraction=0",
        "logger=none",
        f"data.trajectories={trajectories}",
        f"output_dir={tmp_path}",
    )
    train(cfg)
    checkpoint = last_checkpoint(tmp_path)
    weights = checkpoint["state_dict"]
    assert {value.dtype for value in weights.values() if value.is_floating_point()} == {torch.float32}
    states = checkpoint["optimizer_states"][0]["state"].values()
    assert {state[key].dtype for state in states for key in ("exp_avg", "exp_avg_sq")} == {torch.float32}
    gains = torch.cat([value for key, value in weights.items() if key.endswith("norm.weight")])
    assert gains.numel() == 3 * 896 and (gains != 1.0).float().mean() > 0.9


def test_16_bit_weights_need_the_opt_in(trajectories, tmp_path):
    cfg = config(
        "train",
        *QWEN,
        "trainer=cpu",
        "trainer.precision=bf16-true",
        f"data.trajectories={trajectories}",
        f"output_dir={tmp_path}",
    )
    with pytest.raises(ValueError, match="low_precision_weights=true"):
        train(cfg)


def test_a_bf16_checkpoint_trains_fp32_master_weights():
    from deepcoder.models.tiny import TinyModel
    from deepcoder.training.precision import fp32_master_weights

    model = TinyModel().load(seed=0)[0].to(torch.bfloat16)
    model.model.layers[0].requires_grad_(False)  # frozen (a LoRA base): stays as loaded
    assert fp32_master_weights(model, "bf16-mixed") > 0
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert trainable == {torch.float32} and frozen == {torch.bfloat16}
    assert fp32_master_weights(model.to(torch.bfloat16), "bf16-true") == 0  # the opted-in 16-bit weights stay


def test_model_configs_carry_their_training_defaults():
    """#18.2: a pretrained Qwen fine-tunes at ~1e-5 (LoRA ~2e-4), not the tiny model's 2e-3."""
    for size in ("0.5b", "1.5b", "3b", "7b"):
        cfg = config("train", f"model=qwen-{size}", "data.trajectories=x")
        lora = config("train", f"model=qwen-{size}", "model.lora=true", "data.trajectories=x")
        assert OmegaConf.select(cfg, "optimizer.lr") <= 2e-5 and OmegaConf.select(lora, "optimizer.lr") == 2e-4
        assert cfg.data.max_length == 4096 and cfg.data.batch_size * cfg.trainer.accumulate_grad_batches == 32
        assert cfg.model.max_new_tokens == 2048 and cfg.model.torch_dtype == "float32"
    tiny = config("train", "data.trajectories=x")
    assert (tiny.optimizer.lr, tiny.scheduler.num_warmup_steps, tiny.data.batch_size) == (2e-3, 20, 8)
    assert (tiny.data.max_length, tiny.model.max_new_tokens) == (2048, 512)
    demo = config("train", "model=qwen-1.5b", "experiment=demo", "data.trajectories=x")
    assert demo.optimizer.lr == 3e-3  # experiments and the command line still override a model's defaults


def test_trainer_auto_is_the_default_and_picks_the_hardware(monkeypatch):
    """#18.3: the headline command takes GPU + bf16-mixed where CUDA is, and trainer=cpu's settings here."""
    cfg = config("train", "loss=sad", "model=qwen-1.5b", "data.trajectories=x")
    assert cfg.trainer.accelerator == "auto"
    on_cpu = resolve_trainer(cfg.trainer)
    cpu = config("train", "loss=sad", "model=qwen-1.5b", "trainer=cpu", "data.trajectories=x").trainer
    assert OmegaConf.to_container(on_cpu) == OmegaConf.to_container(resolve_trainer(cpu))
    assert (on_cpu.accelerator, on_cpu.precision, on_cpu.deterministic) == ("cpu", "32-true", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "a test GPU")
    on_gpu = resolve_trainer(cfg.trainer)
    assert (on_gpu.accelerator, on_gpu.precision, on_gpu.deterministic) == ("gpu", "bf16-mixed", False)


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """A local 'base' checkpoint: Qwen2.5's tokenizer and ChatML template, but eos <|endoftext|> (as
    Qwen2.5-1.5B's), on a narrow Qwen2 so that it builds in a moment."""
    path = tmp_path_factory.mktemp("base")
    tokenizer = load_qwen_tokenizer()
    tokenizer.eos_token = "<|endoftext|>"
    config = Qwen2Config(
        vocab_size=151_936,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_base_checkpoint_eos_is_refused_with_the_fix(base_checkpoint):
    """#18.5: eos <|endoftext|> with turns ending in <|im_end|> would train no end of turn."""
    spec = PretrainedModel(str(base_checkpoint), name="base")
    with pytest.raises(ValueError, match=r"model\.eos_token=<\|im_end\|>"):
        spec.load_tokenizer()


def test_eos_mapped_to_the_turn_end_trains_every_end_of_turn(base_checkpoint, trajectories):
    from deepcoder.core.names import IGNORE_INDEX
    from deepcoder.records.trajectories import load_trajectories
    from deepcoder.spans.render import render_trajectory

    tokenizer = PretrainedModel(str(base_checkpoint), eos_token="<|im_end|>").load_tokenizer()
    assert tokenizer.eos_token_id == 151645
    record = load_trajectories(trajectories)[0][1]
    example = render_trajectory(tokenizer, record, instantiate(config("train", "data.trajectories=x").span))
    turns = sum(message["role"] == "assistant" for message in record["messages"])
    trained_ends = sum(
        token == 151645 and label != IGNORE_INDEX for token, label in zip(example.input_ids, example.labels)
    )
    assert turns >= 2 and trained_ends == turns


def test_hf_policy_refuses_a_base_checkpoint_eos(base_checkpoint):
    from deepcoder.policies.hf import HFPolicy

    with pytest.raises(ValueError, match=r"policy\.eos_token=<\|im_end\|>"):
        HFPolicy(str(base_checkpoint), device="cpu")
    assert HFPolicy(str(base_checkpoint), device="cpu", eos_token="<|im_end|>").tokenizer.eos_token_id == 151645


def test_a_missing_download_fails_at_once_naming_the_options(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    spec = PretrainedModel("Qwen/Qwen2.5-0.5B-Instruct-not-cached", name="qwen-0.5b")
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        spec.load()
    message = str(error.value)
    assert time.perf_counter() - started < 2 and "\n" not in message
    assert all(part in message for part in ("qwen-0.5b", "model.name_or_path=", "model.random_init=true"))
    with pytest.raises(FileNotFoundError, match="not a local checkpoint"):
        PretrainedModel("/no/such/checkpoint", name="local").load()
    with pytest.raises(ValueError, match="random_init=true only"):
        PretrainedModel("Qwen/Qwen2.5-0.5B-Instruct", num_layers=2)


def test_random_init_builds_each_size_offline():
    spec = instantiate(config("train", "model=qwen-7b", "model.random_init=true", "model.num_layers=1").model)
    with torch.device("meta"):  # the real 7B widths without allocating them
        model, tokenizer = spec.load(seed=0)
    assert (model.config.hidden_size, model.config.vocab_size, model.config.tie_word_embeddings) == (
        3584,
        152064,
        False,
    )
    assert next(model.parameters()).dtype == torch.float32 and tokenizer.eos_token == "<|im_end|>"


def test_deepspeed_zero3_is_refused_before_anything_loads(trajectories, tmp_path):
    """#18.8: ZeRO-3 would hand the chunked loss an empty lm_head shard."""
    cfg = config(
        "train",
        "trainer=deepspeed",
        "trainer.strategy.stage=3",
        f"data.trajectories={trajectories}",
        f"output_dir={tmp_path}",
    )
    with pytest.raises(ValueError, match="ZeRO-3 partitions lm_head.weight"):
        train(cfg)
    assert deepspeed_stage(cfg.trainer.strategy) == 3
    assert [deepspeed_stage(s) for s in ("deepspeed", "deepspeed_stage_3_offload", "ddp", None)] == [2, 3, None, None]


def test_deepspeed_accumulation_is_undone_once_per_division():
    """Lightning divides by the accumulation steps; DeepSpeed's engine divides again."""
    assert loss_scale(4, 2, window_normalised=True, engine_divides=False) == 8
    assert loss_scale(4, 2, window_normalised=True, engine_divides=True) == 32
    assert loss_scale(4, 2, window_normalised=False, engine_divides=True) == 4
    assert loss_scale(4, 2, window_normalised=False, engine_divides=False) == 1
