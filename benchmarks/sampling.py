"""Benchmark the batched first turn of sampled evaluation against one generate call per sample.

``evaluate.py samples=n`` draws the ``n`` first turns of a problem (which share the prompt) in one
``generate`` call with ``num_return_sequences=n`` (:meth:`HFPolicy.complete_batch`); the baseline
asks ``n`` times. Uses a randomly initialised tiny Qwen2 (or ``--model PATH``) on the agent's real
first prompt; prints seconds per problem and the ratio. Asserts nothing about speed.
Usage: python benchmarks/sampling.py [--samples N] [--tokens T] [--model PATH] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

from deepcoder.agent.factory import build_agent
from deepcoder.models.tiny import TinyModel
from deepcoder.policies.hf import HFPolicy
from deepcoder.problems import load_humaneval


def timed(run, repeats: int) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up call)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--model", default=None, help="a student dir or hub id (default: untrained tiny)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    settings = {"max_new_tokens": args.tokens, "temperature": 1.0, "stop": []}  # no early stop: equal work
    if args.model:
        policy = HFPolicy(args.model, **settings)
    else:
        model, tokenizer = TinyModel().load(seed=0)
        policy = HFPolicy.from_model(model, tokenizer, name="tiny-untrained", **settings)
    problem = load_humaneval()[0]
    messages = build_agent(tools=["python"]).initial_messages(problem)
    n = args.samples
    separate = timed(lambda: [policy.complete(messages, problem=problem, seed=i) for i in range(n)], args.repeats)
    batched = timed(lambda: policy.complete_batch(messages, n, problem=problem, seed=0), args.repeats)
    print(f"{policy.model} on {policy.device}: {n} samples × {args.tokens} new tokens, first turn of {problem.id}")
    print(f"  {n} generate calls : {separate:8.3f} s")
    print(f"  1 batched call    : {batched:8.3f} s")
    print(f"  batched / separate: {batched / separate:8.3f}")


if __name__ == "__main__":
    main()
