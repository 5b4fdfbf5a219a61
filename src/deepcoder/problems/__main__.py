"""``python -m deepcoder.problems stats [sample|humaneval|FILE]``: a stats table of a problem set."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from deepcoder.problems.loaders import ProblemFormatError, load_file, load_humaneval, load_sample
from deepcoder.problems.stats import format_stats, stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepcoder.problems")
    sub = parser.add_subparsers(dest="command", required=True)
    p_stats = sub.add_parser("stats", help="print a stats table for a problem set")
    p_stats.add_argument(
        "which", nargs="?", default="sample", help="'sample', 'humaneval' or a path to a .jsonl/.json file"
    )
    args = parser.parse_args(argv)

    from rich.console import Console

    if args.which == "sample":
        problems = load_sample()
    elif args.which == "humaneval":
        problems = load_humaneval()
    else:
        try:
            problems = load_file(args.which)
        except ProblemFormatError as exc:
            print(f"ProblemFormatError: {exc}")
            return 1
    Console().print(format_stats(stats(problems), title=f"Problems: {args.which}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
