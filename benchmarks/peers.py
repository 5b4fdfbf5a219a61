"""Side by side with the libraries a researcher would pick instead, in one run, one table (issue #17).

Three blocks of rows, each with its own base row (ratios ``×base`` divide by it, measured in this
same run):

1. loss, per supervised-token count (V = 151,936, H = 896; fp32; one forward + backward): ours
   (``sft``, ``sad``, ``kd`` with a live teacher, ``jsd``, ``kd_topk``) against plain
   ``F.cross_entropy`` on full logits (the base), torchtune's chunked output losses, TRL's
   ``generalized_jsd_loss`` on full logits, Liger's fused kernels (CUDA only: skipped here, said).
   Values of the same function are checked equal (see ``peer_losses.py``); a mismatch fails the run.
2. training step, per model (``tiny``; Qwen2.5-0.5B widths, 2 layers): TRL's ``SFTTrainer`` (the
   base) against our Lightning ``sft`` step on the same batch (``peer_train.py``).
3. generation for evaluation, per model: a plain HF ``generate`` loop (the base), one batched
   ``generate``, our evaluation path (``peer_generation.py``); vLLM only with CUDA.

Memory: peak extra resident memory (``VmHWM − VmRSS``, the kernel's counter reset once the inputs
exist; ``loss.py``'s method), each loss and training method in a fresh process whose address space
is capped at ``--memory-gb`` (a run that does not fit fails alone and says so). ``--quick`` (small
sizes, everything in this process; memory then less exact) is what the tests run. A peer library
that is not installed (``pip install -e '.[bench]'``) is skipped with the reason.

Usage: python benchmarks/peers.py [--quick] [--sections loss,train,generate] [--tokens 1024,4096]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import torch
from peer_common import Row, in_fresh_process, machine, needs_cuda, row_from
from peer_generation import measure_generation
from peer_losses import METHODS, SAME_FUNCTION, measure_loss
from peer_train import MODELS, measure_train, write_trajectories

SECTIONS = ("loss", "train", "generate")
WORKERS = {"loss": measure_loss, "train": measure_train}
TRAIN_METHODS = (("trl", "TRL SFTTrainer, assistant-only (base)"), ("ours", "ours Lightning sft step"))
QUICK = dict(tokens="64,128", vocab=2048, hidden=32, chunk_size=32, models="tiny", rows=2, max_length=256, steps=1)
QUICK |= dict(prompts=2, new_tokens=4)
BLOCK, METHOD = 28, 40  # the table's first two columns' widths
RTOL = 1e-4  # fp32 sums over up to 4,096 tokens in different orders


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, in this process (the tests)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="loss, train, generate (comma-separated)")
    parser.add_argument("--tokens", default="1024,4096", help="supervised tokens of the loss rows")
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--chunk-size", type=int, default=512, help="ours: positions per chunk (the training default)")
    parser.add_argument("--repeats", type=int, default=1, help="loss passes per method (the best is kept)")
    parser.add_argument("--models", default=",".join(MODELS), help="tiny, qwen-0.5b-2l (comma-separated)")
    parser.add_argument("--rows", type=int, default=2, help="rows of the training batch")
    parser.add_argument("--max-length", type=int, default=1024, help="tokens per training row at most")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up)")
    parser.add_argument("--prompts", type=int, default=4, help="generation: first turns of this many problems")
    parser.add_argument("--new-tokens", type=int, default=64, help="generation: at most this many new tokens each")
    parser.add_argument("--memory-gb", type=float, default=12.0, help="address-space cap of each fresh process")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    parser.add_argument("--jobs", type=int, default=1, help="fresh processes measuring at once (not with --quick)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    if "--quick" in (sys.argv[1:] if argv is None else argv):  # small defaults; explicit flags still win
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections {args.sections}: unknown {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        parser.error(f"--models {args.models}: unknown {sorted(unknown)}; choose from {', '.join(MODELS)}")
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error(f"--jobs {args.jobs} --threads {args.threads}: both must be >= 1")
    if not all(t.isdigit() and int(t) > 0 for t in args.tokens.split(",")):
        parser.error(f"--tokens {args.tokens}: give positive token counts, comma-separated, e.g. 1024,4096")
    return args


def measure(args: argparse.Namespace, spec: dict) -> dict:
    """In a fresh process (the full run) or here (``--quick``); a skipped method starts no process."""
    spec = {**spec, "threads": args.threads}
    method = METHODS.get(spec["method"]) if spec["section"] == "loss" else None
    if args.quick or (method is not None and (method.loss is None or method.unavailable())):
        return WORKERS[spec["section"]](spec)
    return in_fresh_process(Path(__file__), {**spec, "memory_gb": args.memory_gb})


def loss_items(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    """(block, label, spec) of every loss measurement, the largest token count first."""
    items = []
    for tokens in sorted((int(t) for t in args.tokens.split(",")), reverse=True):
        for name, method in METHODS.items():
            spec = {"section": "loss", "method": name, "tokens": tokens, "vocab": args.vocab, "hidden": args.hidden}
            items.append(
                (f"loss {tokens}", method.label, {**spec, "chunk_size": args.chunk_size, "repeats": args.repeats})
            )
    return items


def train_items(args: argparse.Namespace, trajectories: Path) -> list[tuple[str, str, dict]]:
    items = []
    for model in args.models.split(","):
        for method, label in TRAIN_METHODS:
            spec = {"section": "train", "method": method, "model": model, "trajectories": str(trajectories)}
            items.append(
                (
                    f"train {model}",
                    label,
                    spec | {"rows": args.rows, "max_length": args.max_length, "steps": args.steps},
                )
            )
    return items


def measure_all(args: argparse.Namespace, items: list[tuple[str, str, dict]]) -> list[Row]:
    """Every item, ``--jobs`` at a time (each its own process), each result logged to stderr as it
    comes (a run cut short keeps them); rows in the items' order, train blocks named by their batch."""
    results: dict[int, dict] = {}
    with ThreadPoolExecutor(1 if args.quick else args.jobs) as pool:
        futures = {pool.submit(measure, args, spec): i for i, (_, _, spec) in enumerate(items)}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            print(f"  {items[i][0]} | {items[i][1]} | {json.dumps(results[i])}", file=sys.stderr, flush=True)
    rows = []
    for i, (block, label, spec) in enumerate(items):
        rows.append(
            row_from(block, label, {**results[i], "extra": {**results[i].get("extra", {}), "key": spec["method"]}})
        )
    for model in args.models.split(","):
        block = [row for row in rows if row.block == f"train {model}"]
        shape = next((row.extra for row in block if "rows" in row.extra), {})
        for row in block:
            row.block = f"train {model} {shape.get('rows', '?')}x{shape.get('length', '?')}"
    return rows


def generation_rows(args: argparse.Namespace) -> list[Row]:
    rows = []
    for model in args.models.split(","):
        print(f"  generate {model} ...", file=sys.stderr, flush=True)
        block = f"generate {model} {args.prompts}x{args.new_tokens}"
        results = measure_generation(model, args.prompts, args.new_tokens)
        labels = {"hf loop": "HF generate, one per prompt (base)", "hf batched": "HF generate, one batch (left pad)"}
        for name in ("hf loop", "hf batched", "ours"):
            rows.append(row_from(block, labels.get(name, "ours evaluation_generate (batched turn)"), results[name]))
        rows.append(Row(block, "vLLM", note=f"skipped: {needs_cuda('vllm')}"))
    return rows


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.3f}" if value is not None and base else "-"


def number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: list[Row]) -> str:
    """One table; each block's first measured row is its base."""
    header = (
        f"{'block':<{BLOCK}}{'method':<{METHOD}}{'peak MiB':>10}{'×base':>7}{'s':>9}{'×base':>7}"
        f"{'cpu s':>9}{'×base':>7}{'tokens/s':>10}  note"
    )
    lines = [header, "-" * len(header)]
    bases: dict[str, Row] = {}
    for row in rows:
        base = bases.setdefault(row.block, row)
        rate = row.tokens / row.seconds if row.tokens and row.seconds else None
        cells = (
            (number(row.peak_mib, 0), 10),
            (ratio(row.peak_mib, base.peak_mib), 7),
            (number(row.seconds, 2), 9),
            (ratio(row.seconds, base.seconds), 7),
            (number(row.cpu_seconds, 2), 9),
            (ratio(row.cpu_seconds, base.cpu_seconds), 7),
            (number(rate, 0), 10),
        )
        # a space before every cell, so a value wider than its column never runs into the previous one
        numbers = "".join(f" {text:>{width - 1}}" for text, width in cells)
        lines.append(f"{row.block:<{BLOCK}}{row.method[: METHOD - 1]:<{METHOD}}{numbers}  {row.note}")
    return "\n".join(lines)


def checks(rows: list[Row]) -> list[str]:
    """The same function gives the same value: one line per group and size; ``MISMATCH`` fails the run."""
    lines = []
    for block in dict.fromkeys(r.block for r in rows if r.block.startswith("loss")):
        values = {r.extra["key"]: r.value for r in rows if r.block == block and r.value is not None}
        for group in SAME_FUNCTION:
            present = {name: values[name] for name in group if name in values}
            if len(present) < 2:
                continue
            first = next(iter(present.values()))
            same = all(math.isclose(v, first, rel_tol=RTOL) for v in present.values())
            shown = ", ".join(f"{name} {v:.6f}" for name, v in present.items())
            lines.append(f"{block}: {shown}: {'equal' if same else 'MISMATCH'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        spec = json.loads(args.worker)
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        print(json.dumps(WORKERS[spec["section"]](spec)))
        return 0
    torch.manual_seed(0)
    sections = args.sections.split(",")
    with tempfile.TemporaryDirectory() as directory:
        items = []
        if "train" in sections:  # first: with the loss rows, what the acceptance is about
            items += train_items(args, write_trajectories(Path(directory), max(8, 2 * args.rows)))
        if "loss" in sections:
            items += loss_items(args)
        measured = measure_all(args, items)
    rows = sorted((row for row in measured if row.block.startswith("loss")), key=lambda row: int(row.block.split()[1]))
    rows += [row for row in measured if row.block.startswith("train")]
    if "generate" in sections:
        rows += generation_rows(args)
    print(f"Machine: {machine()}")
    print(
        f"loss: V={args.vocab} H={args.hidden} fp32, ours chunk {args.chunk_size}, best of {args.repeats}; "
        f"train: fp32, median of {args.steps} steps after a warm-up; {args.jobs} process(es) at a time; "
        "memory: peak extra RSS "
        + ("in this process (--quick)" if args.quick else f"of a fresh process per method (cap {args.memory_gb} GiB)")
    )
    print(table(rows))
    lines = checks(rows)
    print("\n".join(lines))
    return 1 if any("MISMATCH" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
