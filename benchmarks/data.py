"""Benchmark training data at scale: prepare and load 5k → 50k (→ 200k) replicated trajectories.

The FireAct transcripts (``/work/shared/data/fireact`` when present, else the test fixture's)
are imported and replicated (fresh trajectory and problem ids) to each count. Every measurement
runs in a fresh Python process, so its peak RSS is that of one training process:

- ``cold``: an empty cache: render (``--num-proc``, 1 by default: rendering in the training
  process itself, its worst case), store, map, then one AdamW step of the ``tiny`` model on the
  first batch (4 packed rows of ≤ 1,024 tokens: the same shape at every count); ``cached``: the
  same again, the store already built;
- ``render``: prepare only, on ``--render-n`` trajectories, with ``num_proc`` = 1 and 2 in turn:
  rendering tokens/s, and the ratio (issue #19 asks ≥ 1.7× on 2 idle cores).

Reported per run: setup seconds (the data module's ``setup``: render + store + map, or map),
seconds from process start to the loaded data (imports included), tokens/s per rendering process
and per CPU second (the pool's processes included: on a loaded machine the wall-clock speed-up
cannot show, the CPU cost per token still does), the process's
peak RSS (``VmHWM``), the store's size on disk. Ratios: peak RSS at each count over the
smallest's, cold and cached. Usage:

    python benchmarks/data.py [--counts 5000,50000] [--full] [--num-proc 1] [--render-n 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.time()  # before the heavy imports: "since start" counts them
SHARED = Path("/work/shared/data/fireact/hotpotqa_gpt.jsonl")
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fireact" / "hotpotqa_gpt.jsonl"


def peak_rss_mib() -> float:
    """This process's peak resident set (``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the rendering pool's processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def replicate(out: Path, count: int) -> Path:
    """``count`` imported FireAct trajectories, the source's cycled with fresh ids."""
    from deepcoder.spans.importers import import_file

    path = out / f"trajectories-{count}.jsonl"
    if path.exists():
        return path
    source = import_file(SHARED if SHARED.exists() else FIXTURE)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            record = dict(source[i % len(source)])
            record["trajectory_id"] = f"{record['trajectory_id']}-{i}"
            record["problem_id"] = f"{record['problem_id']}-{i // len(source)}"
            handle.write(json.dumps(record) + "\n")
    return path


def child(args: argparse.Namespace) -> None:
    """One measured process: set the data module up (and take one training step unless ``--prepare-only``)."""
    import torch

    from deepcoder.data.datamodule import TrajectoryDataModule
    from deepcoder.models.tiny import TinyModel
    from deepcoder.spans.strategies import StructuredSpans

    torch.manual_seed(0)
    spec = TinyModel()
    tokenizer = spec.load_tokenizer()
    data = TrajectoryDataModule(  # packed rows: every run's step sees a batch of the same shape
        args.trajectories,
        tokenizer,
        StructuredSpans(),
        val_fraction=0.0,
        batch_size=4,
        packing=True,
        pack_length=1024,
        num_proc=args.num_proc,
    )
    began, cpu = time.perf_counter(), cpu_seconds()
    data.setup("fit")
    setup_s, setup_cpu = time.perf_counter() - began, cpu_seconds() - cpu
    loaded_s = time.time() - START
    assert data.store is not None
    result = {
        "setup_s": setup_s,
        "setup_cpu_s": setup_cpu,
        "since_start_s": loaded_s,
        "tokens": int(data.store["length"].sum()),
        "examples": len(data.store),
        "hit": data.cache_hit,
        "store_mib": sum(f.stat().st_size for f in data.store.root.iterdir()) / 2**20,
    }
    if not args.prepare_only:
        model, _ = spec.load(seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = next(iter(data.train_dataloader()))
        loss = model(**{key: batch[key] for key in ("input_ids", "position_ids", "labels")}).loss
        loss.backward()
        optimizer.step()
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def measure(trajectories: Path, cache: Path, num_proc: int, prepare_only: bool = False) -> dict:
    """Run :func:`child` in a fresh interpreter with ``cache`` as the cache root; its numbers."""
    command = [sys.executable, __file__, "--child", str(trajectories), "--num-proc", str(num_proc)]
    env = {**os.environ, "DEEPCODER_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        command + (["--prepare-only"] if prepare_only else []), env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="5000,50000", help="trajectory counts, comma-separated")
    parser.add_argument("--full", action="store_true", help="add 200,000 trajectories (minutes, ~70M tokens)")
    parser.add_argument("--num-proc", type=int, default=1, help="data.num_proc of the cold training runs")
    parser.add_argument("--render-n", type=int, default=5000, help="trajectories of the num_proc 1 vs 2 runs")
    parser.add_argument("--work", default=None, help="folder for the data and caches (default: a temp dir)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.trajectories = args.child
        child(args)
        return
    counts = [int(c) for c in args.counts.split(",")] + ([200_000] if args.full else [])
    with tempfile.TemporaryDirectory(prefix="bench-data-", dir=args.work) as work:
        root = Path(work)
        rows = []
        for count in counts:
            path = replicate(root, count)
            cache = root / f"cache-{count}"
            for kind in ("cold", "cached"):
                result = measure(path, cache, args.num_proc)
                rows.append({"count": count, "kind": kind, **result})
                print(json.dumps(rows[-1]), flush=True)
        render = []
        path = replicate(root, args.render_n)
        for num_proc in (1, 2):
            result = measure(path, root / f"cache-render-{num_proc}", num_proc, prepare_only=True)
            render.append({"num_proc": num_proc, **result})
            print(json.dumps(render[-1]), flush=True)
    print(f"\nload average at the end: {os.getloadavg()} on {os.cpu_count()} CPUs\n")
    print("| trajectories | tokens | run | setup s | setup CPU s | since start s | peak RSS MiB | store MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['count']:,} | {row['tokens'] / 1e6:.1f} M | {row['kind']} | {row['setup_s']:.1f} | "
            f"{row['setup_cpu_s']:.1f} | {row['since_start_s']:.1f} | {row['peak_rss_mib']:.0f} | "
            f"{row['store_mib']:.0f} |"
        )
    for kind in ("cold", "cached"):
        runs = [row for row in rows if row["kind"] == kind]
        ratios = ", ".join(f"{r['count']:,}: {r['peak_rss_mib'] / runs[0]['peak_rss_mib']:.2f}×" for r in runs[1:])
        print(f"peak RSS over {runs[0]['count']:,} trajectories, {kind}: {ratios}")
    print("\n| num_proc | tokens | render s | tokens/s | tokens/s per process | CPU s | tokens per CPU s |")
    print("|---|---|---|---|---|---|---|")
    for row in render:
        rate = row["tokens"] / row["setup_s"]
        print(
            f"| {row['num_proc']} | {row['tokens'] / 1e6:.2f} M | {row['setup_s']:.1f} | {rate:,.0f} | "
            f"{rate / row['num_proc']:,.0f} | {row['setup_cpu_s']:.1f} | {row['tokens'] / row['setup_cpu_s']:,.0f} |"
        )
    speedup = (render[1]["tokens"] / render[1]["setup_s"]) / (render[0]["tokens"] / render[0]["setup_s"])
    efficiency = render[0]["setup_cpu_s"] / render[1]["setup_cpu_s"]
    print(f"render tokens/s, num_proc=2 over num_proc=1: {speedup:.2f}× (wall clock; needs 2 idle cores)")
    print(f"CPU per token, num_proc=1 over num_proc=2: {efficiency:.2f} (1.00: the pool adds no work)")


if __name__ == "__main__":
    main()
