"""Benchmark a training step: the ``sad`` loss path against plain Hugging Face cross-entropy, and
the tiny model's tokens/s against this machine's measured matmul rate.

1. ``sad`` vs HF CE: one AdamW step on the same batch of a Qwen2 with Qwen2.5-0.5B's widths
   (hidden 896, 14 heads, 2 KV heads, MLP 4864, V = 151,936; ``--layers`` layers, 2 by default
   so it runs on a laptop CPU), fp32. HF CE is ``model(input_ids, attention_mask, labels).loss``
   (full-vocabulary logits for every position); ``sad`` is :class:`deepcoder.training.module.DistillationModule`'s
   step (hidden states, supervised positions only, chunked projection + span-weighted loss).
   Two batches: every position supervised (the chunked path's worst case) and a share like our
   trajectories' (``--supervised``; prompt and observations are not trained on). Issue #6 asks
   that ``sad`` add at most 5 %.
2. Model FLOPs utilisation of the ``tiny`` model (conf/model/tiny.yaml) under the ``sad`` step:
   tokens/s × (6·N + 12·L·H·T) FLOPs per token (N = parameters in matmuls, lm_head included;
   PaLM's formula) over the fp32 matmul rate measured here (a 2048³ matmul, best of 10).

Times are medians of ``--steps`` steps after one warm-up, the two methods alternating so that a
machine's load drifts over both alike. Usage: python benchmarks/train.py [--layers 2] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from deepcoder.losses import SpanLoss
from deepcoder.models.tiny import TinyModel
from deepcoder.training.module import DistillationModule


def make_model(vocab: int, hidden: int, layers: int, heads: int, kv_heads: int, mlp: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=True,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config)


def make_batch(vocab: int, rows: int, length: int, supervised: float) -> dict[str, torch.Tensor]:
    """Random tokens; the first ``1 − supervised`` of each row is prompt (label -100), the rest reasoning."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab, (rows, length), generator=generator)
    labels = input_ids.clone()
    labels[:, : round(length * (1 - supervised))] = -100
    span_ids = torch.where(labels == -100, 0, 1)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "span_ids": span_ids,
    }


def sad_step(model: torch.nn.Module) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """The training module's own loss path (logging off: no trainer attached)."""
    module = DistillationModule(model, SpanLoss("sad", reason=0.5), optimizer=torch.optim.AdamW)
    module.log = module.log_dict = lambda *args, **kwargs: None
    return lambda batch: module._step(batch, "train")


def hf_step(model: torch.nn.Module) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    return lambda batch: (
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    )


def time_steps(
    model: torch.nn.Module, losses: dict[str, Callable], batch: dict[str, torch.Tensor], steps: int
) -> dict[str, float]:
    """Median seconds of one optimiser step per method, methods alternating, after one warm-up each."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    seconds: dict[str, list[float]] = {name: [] for name in losses}
    for step in range(steps + 1):
        for name, loss_of in losses.items():
            started = time.perf_counter()
            loss_of(batch).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step:  # the first round warms up allocator and kernels
                seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


def matmul_flops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def flops_per_token(model: Qwen2ForCausalLM, length: int) -> float:
    """The embedding lookup is no matmul; a tied table is counted once, as the lm_head (which is one)."""
    config = model.config
    lookup = 0 if config.tie_word_embeddings else model.get_input_embeddings().weight.numel()
    matmul_params = sum(p.numel() for p in model.parameters()) - lookup
    return 6 * matmul_params + 12 * config.num_hidden_layers * config.hidden_size * length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--length", type=int, default=1024, help="tokens per row of the 0.5B-wide batch")
    parser.add_argument("--supervised", type=float, default=0.6, help="supervised share of the realistic batch")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tiny-batch", default="8x512", help="rows x length for the tiny model")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads, fp32, median of {args.steps} steps after a warm-up")

    vocab = 151_936
    model = make_model(vocab, 896, args.layers, 14, 2, 4864)
    losses = {"hf": hf_step(model), "sad": sad_step(model)}
    print(f"\n1. one AdamW step, Qwen2.5-0.5B widths, {args.layers} layers, V={vocab}, batch 1 x {args.length}")
    print(f"{'supervised':>10}{'HF CE s':>10}{'sad s':>8}{'sad / HF':>10}")
    for share in (1.0, args.supervised):
        seconds = time_steps(model, losses, make_batch(vocab, 1, args.length, share), args.steps)
        print(f"{share:>10.0%}{seconds['hf']:>10.2f}{seconds['sad']:>8.2f}{seconds['sad'] / seconds['hf']:>10.3f}")

    rows, length = (int(x) for x in args.tiny_batch.split("x"))
    spec = TinyModel()
    tiny = make_model(
        spec.vocab_size, spec.hidden_size, spec.num_layers, spec.num_heads, spec.num_kv_heads, spec.intermediate_size
    )
    batch = make_batch(spec.vocab_size, rows, length, 1.0)
    seconds = time_steps(tiny, {"hf": hf_step(tiny), "sad": sad_step(tiny)}, batch, args.steps)
    peak = matmul_flops()
    per_token = flops_per_token(tiny, length)
    print(
        f"\n2. tiny model ({sum(p.numel() for p in tiny.parameters()) / 1e6:.1f} M parameters), batch {rows} x "
        f"{length}, every position supervised; fp32 matmul rate measured here: {peak / 1e9:.0f} GFLOP/s"
    )
    print(f"{'loss':<6}{'tokens/s':>10}{'GFLOP/s':>10}{'MFU':>8}{'vs HF':>8}")
    for name in ("hf", "sad"):
        tokens_per_s = rows * length / seconds[name]
        print(
            f"{name:<6}{tokens_per_s:>10.0f}{tokens_per_s * per_token / 1e9:>10.1f}"
            f"{tokens_per_s * per_token / peak:>8.1%}{seconds['hf'] / seconds[name]:>8.2f}"
        )


if __name__ == "__main__":
    main()
