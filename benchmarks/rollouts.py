"""Benchmark batched agent rollouts against today's one-episode-at-a-time loop, in one process.

The baseline plays each episode alone (``Agent.run``: one ``generate`` per turn, tools in turn);
the batched runner (:func:`deepcoder.agent.batch_loop.run_episodes`) keeps 1, 4 or 16 episodes
live, one batched decode per turn over all of them (:mod:`deepcoder.policies.decode_loop`: stopped
rows leave the batch, each turn reuses the KV of the prompt it shares with earlier rows), their
tool calls in parallel and continuous batching. Greedy fp32 on held-out synthetic problems; every
batched run is checked to give the same episodes as the baseline.

Prints episodes per wall second and per CPU second of this process (steadier on a shared machine:
other processes' load does not count), the speed-ups, and the share of prompt tokens the batched
runs read from the KV cache instead of prefilling them. Every runner runs ``--repeats`` times,
interleaved; its fastest run counts (the machine's speed drifts). The default model is the
untrained tiny Qwen2 (every turn runs to ``--tokens``: equal work per row); ``--model DIR`` takes
a trained student (turns of their own lengths). Asserts nothing.
Usage: python benchmarks/rollouts.py [--episodes 32] [--tokens 64] [--steps 2] [--batches 1,4,16]
[--model DIR] [--threads N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from deepcoder.agent.batch_loop import run_episodes
from deepcoder.agent.factory import build_agent
from deepcoder.models.tiny import TinyModel
from deepcoder.policies.hf import HFPolicy
from deepcoder.problems.synthetic import generate

TIMING = ("wall_s", "latency_s")


def rates(run, episodes: int) -> tuple[list[dict], float, float]:
    """``run()``'s records, and episodes per wall second and per CPU second of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    records = run()
    return records, episodes / (time.perf_counter() - wall), episodes / (time.process_time() - cpu)


def same_episodes(a: list[dict], b: list[dict]) -> bool:
    """Equal records but for their timings."""
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in a + b]
    return strip[: len(a)] == strip[len(a) :]


def reused_share(before: dict[str, int] | None, after: dict[str, int] | None) -> str:
    """The share of prompt tokens read from the KV cache between two ``decode_counts``."""
    if before is None or after is None or after == before:  # not through our decode loop
        return "-"
    reused, prefilled = (after[k] - before[k] for k in ("reused", "prefilled"))
    return f"{reused / (reused + prefilled):.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64, help="policy.max_new_tokens")
    parser.add_argument("--steps", type=int, default=2, help="agent.max_steps")
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--model", default=None, help="a student dir (default: untrained tiny, seed 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every runner; the fastest of each is kept")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        policy = HFPolicy(args.model, max_new_tokens=args.tokens, device="cpu")
    else:
        model, tokenizer = TinyModel().load(seed=0)
        policy = HFPolicy.from_model(model, tokenizer, name="tiny-untrained", max_new_tokens=args.tokens)
    problems = generate("heldout", n=args.episodes, seed=0)
    agent = build_agent(tools=["python"], max_steps=args.steps)
    agent.run(policy, problems[0])  # warm-up: sandbox server, kernels
    n = len(problems)
    runners = {"one at a time (today)": lambda: [{**agent.run(policy, p), "sample": 0} for p in problems]}
    for batch in [int(b) for b in args.batches.split(",")]:
        runners[f"batched, {batch} live"] = partial(run_episodes, policy, problems, agent=agent, batch_size=batch)
    best: dict[str, tuple[float, float]] = {}
    same: dict[str, bool] = {}
    reused: dict[str, str] = {}
    baseline: list[dict] = []
    for _ in range(args.repeats):  # interleaved, so a drift of the machine's speed hits every runner alike
        for name, run in runners.items():
            before = policy.decode_counts
            records, wall, cpu = rates(run, n)
            baseline = baseline or records
            best[name] = tuple(max(pair) for pair in zip(best.get(name, (0.0, 0.0)), (wall, cpu)))
            same[name] = same.get(name, True) and same_episodes(baseline, records)
            reused.setdefault(name, reused_share(before, policy.decode_counts))
    print(
        f"{policy.model} on {policy.device}, {torch.get_num_threads()} threads: {n} greedy episodes, "
        f"max_steps {args.steps}, max_new_tokens {args.tokens}; "
        f"{sum(len(r['steps']) for r in baseline)} turns, "
        f"{sum(r['usage']['completion_tokens'] for r in baseline)} generated tokens; best of {args.repeats}"
    )
    header = f"{'runner':<24}{'episodes/s':>12}{'speed-up':>10}{'episodes/cpu-s':>16}{'speed-up':>10}"
    print(f"{header}  same episodes  prompt reused")
    base_wall, base_cpu = best["one at a time (today)"]
    for name, (wall, cpu) in best.items():
        check = "-" if name.startswith("one") else str(same[name])
        print(
            f"{name:<24}{wall:>12.3f}{wall / base_wall:>10.2f}{cpu:>16.3f}{cpu / base_cpu:>10.2f}"
            f"  {check:<13}  {reused[name]}"
        )


if __name__ == "__main__":
    main()
