"""Benchmark the chunked SAD / KD loss against the naive full-logits implementation.

At Qwen's vocabulary (V = 151,936) and a Qwen2.5-0.5B hidden size (896), for several counts of
supervised tokens: forward + backward of ``sad`` (span-weighted CE), ``kd`` (forward KL to a
teacher's logits, teacher projection included) and ``kd_topk`` (forward KL to stored top-20
logprobs + the sampled token, as ``teacher=vllm-qwen`` stores them), naive = full ``[N, V]`` fp32 logits through
:func:`deepcoder.losses.span_loss` (the reference form), chunked = the training path
:func:`deepcoder.training.chunked_loss.chunked_span_loss`. Issue #6 asks, at 4,096 tokens, for at most a
quarter of the naive peak extra memory and at most 1.3× its time.

Memory method: every configuration runs in a fresh subprocess; after building the inputs (and
a small warm-up) it resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` = 5) and
reports ``VmHWM − VmRSS`` after one forward + backward: the peak extra resident memory, weight
gradient included (both methods create it). Each worker's address space is capped
(``--memory-gb``) so a naive run that does not fit fails alone (reported as such) instead of
waking the kernel's OOM killer. Time: the best of ``--repeats`` forward + backward passes, as
wall-clock seconds and as the process's CPU seconds (all threads; steadier than wall time on a
machine that others share).
Usage: python benchmarks/loss.py [--tokens 1024,4096] [--chunk-size 512] [--memory-gb 12]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from deepcoder.losses import TopKLogprobs, span_loss
from deepcoder.training.chunked_loss import TeacherHead, chunked_span_loss

MIB = 2**20
TOP_K = 21  # vLLM's top-20 logprobs plus the sampled token


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def inputs(tokens: int, vocab: int, hidden: int, loss: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    data = {
        "hidden": torch.randn(1, tokens, hidden, generator=generator, requires_grad=True),
        "weight": (torch.randn(vocab, hidden, generator=generator) * hidden**-0.5).requires_grad_(),
        "labels": torch.randint(0, vocab, (1, tokens), generator=generator),
        "spans": torch.randint(1, 3, (1, tokens), generator=generator),
    }  # reason / action
    if loss == "kd":
        data["teacher_hidden"] = torch.randn(1, tokens, hidden, generator=generator)
        data["teacher_weight"] = torch.randn(vocab, hidden, generator=generator) * hidden**-0.5
    if loss == "kd_topk":  # k distinct ids per token; logprobs of k of k + 1 outcomes: some mass left over
        data["teacher_ids"] = torch.randint(0, vocab - TOP_K, (1, tokens, 1), generator=generator) + torch.arange(TOP_K)
        data["teacher_logprobs"] = torch.log_softmax(torch.randn(1, tokens, TOP_K + 1, generator=generator), -1)[
            ..., :TOP_K
        ]
    return data


def run(method: str, data: dict[str, torch.Tensor], chunk_size: int) -> None:
    """One forward + backward of the loss."""
    weights = torch.tensor([0.0, 0.5, 1.0, 0.0, 1.0])
    kd = "teacher_weight" in data
    topk = TopKLogprobs(data["teacher_ids"], data["teacher_logprobs"]) if "teacher_ids" in data else None
    if method == "naive":
        logits = data["hidden"] @ data["weight"].T
        teacher = None
        if kd:
            with torch.no_grad():
                teacher = data["teacher_hidden"] @ data["teacher_weight"].T
        loss = span_loss(logits, data["labels"], data["spans"], weights, teacher_logits=teacher, teacher_topk=topk)
    else:
        teacher = TeacherHead(data["teacher_hidden"], data["teacher_weight"]) if kd else topk
        loss = chunked_span_loss(
            data["hidden"],
            data["weight"],
            data["labels"],
            data["spans"],
            weights,
            chunk_size=chunk_size,
            teacher=teacher,
        ).loss
    loss.backward()


def cap_address_space(gigabytes: float) -> None:
    """Cap this process's address space, so that a run that does not fit fails alone (MemoryError)."""
    limit = int(gigabytes * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def measured(step: Callable[[], object], reset: Callable[[], object], repeats: int) -> dict[str, float]:
    """Peak extra resident MiB of the first ``step()`` (VmHWM reset to the current RSS first), and the
    best wall and CPU seconds of ``repeats`` calls, ``reset()`` (untimed) before each."""
    before = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    result: dict[str, float] = {}
    seconds, cpu_seconds = [], []
    for repeat in range(repeats):
        reset()
        started, cpu_started = time.perf_counter(), time.process_time()
        step()
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
        if repeat == 0:
            result["peak_mib"] = (rss_kib("VmHWM") - before) / 1024
    result["seconds"], result["cpu_seconds"] = min(seconds), min(cpu_seconds)
    return result


def worker(args: argparse.Namespace) -> None:
    cap_address_space(args.memory_gb)
    torch.manual_seed(0)
    result: dict[str, float | str] = {}
    try:
        run(args.method, inputs(64, args.vocab, args.hidden, args.loss), args.chunk_size)  # warm-up
        data = inputs(args.tokens, args.vocab, args.hidden, args.loss)

        def reset() -> None:
            data["hidden"].grad = data["weight"].grad = None

        result.update(measured(lambda: run(args.method, data, args.chunk_size), reset, args.repeats))
    except (MemoryError, RuntimeError) as error:  # the address-space cap: this run does not fit
        result["error"] = f"over {args.memory_gb} GiB: {str(error).splitlines()[0][:80]}"
    print(json.dumps(result))


def measure(args: argparse.Namespace, loss: str, tokens: int, method: str) -> dict[str, float | str]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--loss",
        loss,
        "--tokens",
        str(tokens),
        "--method",
        method,
        "--vocab",
        str(args.vocab),
        "--hidden",
        str(args.hidden),
        "--chunk-size",
        str(args.chunk_size),
        "--repeats",
        str(args.repeats),
        "--memory-gb",
        str(args.memory_gb),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"worker exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def table_cells(naive: dict[str, float | str], chunked: dict[str, float | str]) -> str:
    """Memory, wall time and CPU time: naive, chunked and their ratio (``-`` where a run failed)."""
    cells = ""
    for key, widths, digits in (
        ("peak_mib", (11, 13, 14), 0),
        ("seconds", (9, 11, 12), 2),
        ("cpu_seconds", (13, 15, 11), 2),
    ):
        values = [row.get(key) for row in (naive, chunked)]
        cells += "".join(
            f"{value:>{width}.{digits}f}" if value is not None else f"{'failed':>{width}}"
            for value, width in zip(values, widths)
        )
        cells += f"{values[1] / values[0]:>{widths[2]}.3f}" if None not in values else f"{'-':>{widths[2]}}"
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", default="1024,4096", help="supervised-token counts, comma-separated")
    parser.add_argument("--losses", default="sad,kd", help="sad, kd, kd_topk (comma-separated)")
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--chunk-size", type=int, default=512, help="the training default (DistillationModule)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-gb", type=float, default=12.0, help="address-space cap of each worker")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loss", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.tokens = int(args.tokens)
        return worker(args)

    print(
        f"V={args.vocab} H={args.hidden} chunk={args.chunk_size} fp32, {torch.get_num_threads()} threads, "
        f"best of {args.repeats}; memory = peak extra RSS of a fresh process (cap {args.memory_gb} GiB)"
    )
    print(
        f"{'loss':<8}{'tokens':>8}{'naive MiB':>11}{'chunked MiB':>13}{'memory ratio':>14}"
        f"{'naive s':>9}{'chunked s':>11}{'time ratio':>12}{'naive cpu s':>13}{'chunked cpu s':>15}{'cpu ratio':>11}"
    )
    for loss in args.losses.split(","):
        for tokens in (int(t) for t in args.tokens.split(",")):
            naive, chunked = (measure(args, loss, tokens, method) for method in ("naive", "chunked"))
            for name, row in (("naive", naive), ("chunked", chunked)):
                if "error" in row:
                    print(f"  {loss} {tokens} {name}: {row['error']}")
            print(f"{loss:<8}{tokens:>8}{table_cells(naive, chunked)}")


if __name__ == "__main__":
    main()
