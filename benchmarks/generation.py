"""Benchmark generation throughput against a tokens/min limit: 1, 4 and 16 workers.

Each row runs ``generate_trajectories`` with the Groq teacher (real SDK, real HTTP) against the
local chat server, which answers after ``--latency`` seconds and enforces ``--tokens-per-minute``
as a token bucket holding ``--bucket-s`` seconds of tokens, with Groq's ``x-ratelimit-*``
headers and 429s. The teacher is told no limit: it learns it from the headers.

Fraction of the limit = tokens the server admitted / the most it could admit in the same
window (a full bucket at the start + refill rate × time from the first to the last admitted
request). A row is "limit" bound when the limiter had to hold requests back, else "latency"
bound: one worker waits for every answer in turn, so it cannot reach the limit ("held s": the
seconds workers were held back by the limiter, summed over workers). Acceptance
(issue #3): 16 workers reach >= 90% of the limit with no more than a handful of 429s.
HumanEval problems, scripted two-turn episodes (one python action, one final answer).
Usage: python benchmarks/generation.py [--latency 0.5] [--tokens-per-minute 240000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

from deepcoder.agent.factory import build_agent
from deepcoder.generation import generate_trajectories
from deepcoder.policies.groq import GroqTeacher
from deepcoder.problems import load_humaneval
from deepcoder.testing.chat_server import ChatServer

KEY = "gsk_benchmark_local_server"


def run(problems: list, workers: int, args: argparse.Namespace, agent) -> dict[str, float]:
    """One row: generate ``problems`` with ``workers`` threads against a fresh server and limiter."""
    with (
        ChatServer(
            latency_s=args.latency, tokens_per_minute=args.tokens_per_minute, bucket_s=args.bucket_s, api_key=KEY
        ) as chat,
        tempfile.TemporaryDirectory() as out,
    ):
        teacher = GroqTeacher("openai/gpt-oss-120b", base_url=chat.url, max_tokens=1024)
        started = time.perf_counter()
        generate_trajectories(problems, teacher, agent, out, num_workers=workers)
        seconds = time.perf_counter() - started
        admitted = chat.stats.admitted
        window = admitted[-1][0] - admitted[0][0]
        rate = args.tokens_per_minute / 60
        served = sum(tokens for _, tokens in admitted)
        return {
            "workers": workers,
            "problems": len(problems),
            "requests": len(admitted),
            "seconds": seconds,
            "tokens_per_s": served / window if window > 0 else math.nan,
            "fraction": served / (rate * args.bucket_s + rate * window),
            "n_429": chat.stats.statuses[429],
            "held_s": teacher.limiter.waited_s,
            "tokens_per_problem": served / len(problems),
            "seconds_per_problem": seconds / len(problems),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the server takes per answer")
    parser.add_argument("--tokens-per-minute", type=float, default=240_000)
    parser.add_argument("--bucket-s", type=float, default=2.0, help="seconds of tokens the bucket holds")
    parser.add_argument("--seconds", type=float, default=20.0, help="target duration of each row")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    os.environ["GROQ_API_KEY"] = KEY  # the local server's key, for this process only
    problems = load_humaneval()
    agent = build_agent(tools=("python",), max_steps=3)
    rows, per_problem = [], None
    for workers in args.workers:
        if per_problem is None:  # first row: a few problems, to learn the cost of one
            count = 8
        else:
            by_latency = workers / per_problem["seconds_per_problem"]
            by_limit = args.tokens_per_minute / 60 / per_problem["tokens_per_problem"]
            count = math.ceil(args.seconds * min(by_latency, by_limit))
        row = run(problems[: min(count, len(problems))], workers, args, agent)
        per_problem = per_problem or row
        rows.append(row)

    limit_per_s = args.tokens_per_minute / 60
    print(
        f"limit {args.tokens_per_minute:,.0f} tokens/min ({limit_per_s:,.0f}/s, bucket {args.bucket_s:g} s), "
        f"latency {args.latency:g} s per answer"
    )
    print(
        f"{'workers':>8}{'problems':>10}{'requests':>10}{'seconds':>9}{'tokens/s':>10}{'of limit':>10}"
        f"{'429s':>6}{'held s':>8}  bound by"
    )
    for row in rows:
        bound = "limit" if row["held_s"] > 0 or row["fraction"] >= 0.9 else "latency"
        print(
            f"{row['workers']:>8}{row['problems']:>10}{row['requests']:>10}{row['seconds']:>9.1f}"
            f"{row['tokens_per_s']:>10,.0f}{row['fraction']:>10.0%}{row['n_429']:>6}{row['held_s']:>8.1f}  {bound}"
        )
    best = max(rows, key=lambda r: r["workers"])
    verdict = "meets" if best["fraction"] >= 0.9 and best["n_429"] <= 5 else "misses"
    print(
        f"{best['workers']} workers {verdict} the target (>= 90% of the limit, <= 5 429s); "
        f"1 worker is latency-bound: it waits {args.latency:g} s for every answer in turn."
    )


if __name__ == "__main__":
    main()
