"""GPU training benchmark on the real Qwen2.5 widths, random weights (nothing downloaded).

Where CUDA is present: ``model=qwen-0.5b`` and ``qwen-1.5b`` architectures (all layers, V = 151,936)
train a few optimiser steps through Lightning in ``bf16-mixed`` (fp32 master weights) with the
shipped ``sft``, ``sad`` and ``sad_kd`` losses (``sad_kd``: a live teacher, a second random model
of the same size and vocabulary, frozen in bf16), and against them plain Hugging Face CE
(``model(input_ids, labels).loss``) in the same trainer. Printed per run: tokens/s, MFU
(tokens/s × (6·N + 12·L·H·T) FLOPs per token, PaLM's formula, over the GPU's dense bf16 peak; the
teacher's forward is not counted), peak CUDA memory, and the step time against HF CE. Then a
one-GPU FSDP smoke run (``trainer=fsdp``'s wrapping: one unit per decoder layer) of ``sad``.

Without CUDA it runs the same code on the CPU at a tiny width (``--tiny``, fp32; tests use this),
where the numbers say nothing about a GPU. Usage:
    python benchmarks/gpu.py [--sizes 0.5b,1.5b] [--steps 5] [--batch 4] [--length 2048] [--tiny]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from transformers import Qwen2Config, Qwen2ForCausalLM

from deepcoder.models.qwen import qwen_config
from deepcoder.training.distill_teacher import FrozenTeacher
from deepcoder.training.module import DistillationModule

CONF = Path(__file__).resolve().parents[1] / "conf"
# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of torch.cuda.get_device_name().
BF16_PEAK = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "RTX 4090": 165e12,
}


def gpu_peak(name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def tiny_config() -> Qwen2Config:
    """Qwen2.5's vocabulary at a tiny width: the CPU stand-in."""
    config = Qwen2Config(
        vocab_size=151_936,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    config._attn_implementation = "sdpa"
    return config


def build(config: Qwen2Config, seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


def make_batch(vocab: int, rows: int, length: int, supervised: float = 0.6) -> dict[str, torch.Tensor]:
    """Random tokens; the first 40 % of each row is prompt (not trained), the rest alternates reason/action."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab - 300, (rows, length), generator=generator)
    labels = input_ids.clone()
    labels[:, : round(length * (1 - supervised))] = -100
    positions = torch.arange(length).expand(rows, length)
    span_ids = torch.where(labels == -100, 0, 1 + (positions // 64) % 2)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "span_ids": span_ids,
    }


class HFCrossEntropy(L.LightningModule):
    """The baseline: Hugging Face's own loss on full logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        ).loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=1e-5)


class StepTimer(L.Callback):
    """Wall time of each optimiser step (micro-batch = step here), CUDA synchronised."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started = 0.0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, *args) -> None:
        self._sync()
        self._started = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self._sync()
        self.seconds.append(time.perf_counter() - self._started)


def span_loss(name: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return instantiate(compose("train", [f"loss={name}", "data.trajectories=unused"]).loss)


def fit(module: L.LightningModule, batch: dict, steps: int, cuda: bool, strategy: object = "auto") -> float:
    """Median seconds per step after one warm-up step."""
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        strategy=strategy,
        precision="bf16-mixed" if cuda else "32-true",
        max_steps=steps + 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch] * (steps + 1), batch_size=None))
    return statistics.median(timer.seconds[1:])


def flops_per_token(config: Qwen2Config, params: int, length: int) -> float:
    lookup = 0 if config.tie_word_embeddings else config.vocab_size * config.hidden_size
    return 6 * (params - lookup) + 12 * config.num_hidden_layers * config.hidden_size * length


def run_size(label: str, config: Qwen2Config, args: argparse.Namespace, cuda: bool, peak: float | None) -> None:
    batch = make_batch(config.vocab_size, args.batch, args.length)
    tokens = args.batch * args.length
    results = {}
    for name in ("hf", "sft", "sad", "sad_kd"):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        student = build(config, seed=0)
        if name == "hf":
            module: L.LightningModule = HFCrossEntropy(student)
        else:
            teacher = None
            if name == "sad_kd":
                device = "cuda" if cuda else "cpu"
                frozen = build(config, seed=1).to(device, torch.bfloat16 if cuda else torch.float32)
                teacher = FrozenTeacher(frozen, "random teacher", config.vocab_size)
            module = DistillationModule(student, span_loss(name), torch.optim.AdamW, teacher=teacher)
        seconds = fit(module, batch, args.steps, cuda)
        memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        params = sum(p.numel() for p in student.parameters())
        results[name] = (seconds, memory, params)
        del module, student
    print(f"\n{label}: {results['hf'][2] / 1e6:.0f} M parameters, batch {args.batch} x {args.length}")
    print(f"{'loss':<8}{'s/step':>8}{'tokens/s':>10}{'MFU':>8}{'peak GiB':>10}{'vs HF CE':>10}")
    for name, (seconds, memory, params) in results.items():
        rate = tokens / seconds
        mfu = f"{rate * flops_per_token(config, params, args.length) / peak:.1%}" if peak else "n/a"
        print(f"{name:<8}{seconds:>8.3f}{rate:>10.0f}{mfu:>8}{memory:>10.2f}{seconds / results['hf'][0]:>10.3f}")


def fsdp_smoke(config: Qwen2Config, args: argparse.Namespace) -> None:
    """``sad`` for a few steps under one-GPU FSDP, one unit per decoder layer (trainer=fsdp's policy)."""
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

    strategy = FSDPStrategy(auto_wrap_policy=ModuleWrapPolicy({Qwen2DecoderLayer}))
    module = DistillationModule(build(config, seed=0), span_loss("sad"), torch.optim.AdamW)
    seconds = fit(module, make_batch(config.vocab_size, args.batch, args.length), args.steps, True, strategy)
    print(f"\nFSDP (1 GPU) sad: {seconds:.3f} s/step, {args.batch * args.length / seconds:.0f} tokens/s: ok")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0.5b,1.5b")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--tiny", action="store_true", help="tiny width (the default without CUDA)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if cuda and not args.tiny:
        name = torch.cuda.get_device_name(0)
        peak = gpu_peak(name)
        print(f"{name}, bf16-mixed, peak {peak / 1e12:.0f} TFLOP/s" if peak else f"{name}: bf16 peak unknown, no MFU")
        for size in args.sizes.split(","):
            run_size(f"qwen-{size}", qwen_config(size), args, cuda, peak)
        fsdp_smoke(qwen_config(args.sizes.split(",")[0]), args)
    else:
        print("no CUDA: tiny width on the CPU, fp32 (these numbers say nothing about a GPU); FSDP smoke skipped")
        run_size("tiny (hidden 64, 2 layers, V = 151,936)", tiny_config(), args, cuda=False, peak=None)


if __name__ == "__main__":
    main()
