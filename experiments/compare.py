"""Compare runs and the teacher: ``python experiments/compare.py RUN_DIR… [--teacher DIR] --out DIR``.

A RUN_DIR is laid out like ``outputs/demo/sad`` (``train/``, ``eval_train/``, ``eval_heldout/``,
any subset), is a ``train.py`` output_dir (its evaluations in subdirectories, e.g. ``RUN/eval``)
or is one ``evaluate.py`` output; ``--eval NAME=DIR`` adds an ``evaluate.py`` output_dir kept
elsewhere. Writes ``comparison.md`` (metrics with 95%
bootstrap CIs over problems), ``comparison.json`` and ``training_curves.png``,
``pass_at_k.png``, ``failures.png``; with ``--wandb-project`` also a W&B run. ``--experiment RUNS``
instead summarises an arms × seeds sweep (``make experiment``): CIs over problems and seeds, each
arm against sft, learning curves. Example, after ``make demo``::

    python experiments/compare.py outputs/demo/sad outputs/demo/sft --teacher outputs/demo/teacher \\
        --out outputs/demo/compare
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepcoder.reporting.compare import compare
from deepcoder.reporting.experiment import summarize_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run directories (e.g. outputs/demo/sad outputs/demo/sft)")
    parser.add_argument("--teacher", help="the teacher's directory (e.g. outputs/demo/teacher)")
    parser.add_argument(
        "--eval",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="an evaluate.py output_dir as the row NAME (repeatable)",
    )
    parser.add_argument(
        "--experiment",
        metavar="RUNS",
        help="an arms x seeds sweep (RUNS/<arm>/seed<N>/eval_heldout, as make experiment lays it out): "
        "pass@1 per arm with CIs over problems and seeds, and each arm against sft",
    )
    parser.add_argument("--out", required=True, help="where to write the table and plots")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument(
        "--wandb-project",
        help="also log the table and plots to a new W&B run in this project "
        "(WANDB_MODE=offline works without a network)",
    )
    args = parser.parse_args(argv)
    bad = [item for item in args.eval if "=" not in item or not item.partition("=")[0]]
    if bad:
        parser.exit(2, f"compare.py: error: --eval {bad[0]}: expected NAME=DIR, e.g. --eval sad=outputs/sad/eval\n")
    try:
        if args.experiment:
            if args.runs or args.teacher or args.eval:
                parser.exit(2, "compare.py: error: --experiment RUNS takes no other runs, --teacher or --eval\n")
            summary = summarize_experiment(
                Path(args.experiment), Path(args.out), seed=args.seed, n_resamples=args.resamples
            )
            print(summary["table"])
            print(f"wrote {args.out}/results.md, results.json and learning_curves.png")
            return 0
        result = compare(
            args.runs,
            args.out,
            teacher=args.teacher,
            seed=args.seed,
            n_resamples=args.resamples,
            wandb_project=args.wandb_project,
            evaluations=dict(item.split("=", 1) for item in args.eval),
        )
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"compare.py: error: {exc}\n")
    print(result["table"])
    print(f"wrote {args.out}/comparison.md, comparison.json and {', '.join(result['figures'])} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
