"""Show one rendered trajectory token by token, coloured by span: what the student is trained on.

``python -m deepcoder.show FILE [--index N] [--json] [--span structured|react|think] [--model tiny|PATH]
[--mask-steps KIND,…]``

FILE is our trajectories JSONL or a FireAct file (imported on the fly, see
:mod:`deepcoder.spans.importers`). The default span strategy is ``structured`` for our records
and ``react`` for imported ones. ``--json`` prints only ``[{"text": …, "span": …}, …]``, one
entry per token, whose texts concatenate to the decoded chat (``"masked": true`` added on the
tokens of a masked step). Otherwise the chat is printed in colour with token counts per span and
a legend; underlined tokens straddle two spans and take the label of their first character (the
rule of :mod:`deepcoder.spans.render`); struck-through tokens belong to a step of a kind in
``--mask-steps`` (as ``data.mask_steps``, default ``parse_error``): in the input, not trained.
The views themselves (also HTML for notebooks and W&B) are in :mod:`deepcoder.spans.view`.
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

from rich.console import Console
from rich.text import Text

from deepcoder.spans.view import STRATEGIES, Token, load_record, render_tokens, strategy_for, summary_table, to_rich


def load_tokenizer(model: str):
    """The tiny tokenizer (built locally) or any Hugging Face tokenizer by hub id or path."""
    if model == "tiny":
        from deepcoder.models.tiny import TinyModel

        return TinyModel().load_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def load_tokens(path: str | Path, index: int = 0, span: str | None = None, model: str = "tiny") -> list[Token]:
    """The tokens of trajectory ``index`` of ``path`` (for notebooks: ``to_html(load_tokens(...))``)."""
    record, imported = load_record(path, index)
    return render_tokens(load_tokenizer(model), record, strategy_for(span, imported))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepcoder.show", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="trajectories JSONL, or a FireAct JSON/JSONL file")
    parser.add_argument("--index", type=int, default=0, help="which trajectory (0-based)")
    parser.add_argument("--json", action="store_true", help='print [{"text", "span"}, ...] only')
    parser.add_argument("--span", choices=sorted(STRATEGIES), help="default: structured, react for imports")
    parser.add_argument("--model", default="tiny", help="tokenizer: tiny, or a Hugging Face id or path")
    parser.add_argument(
        "--mask-steps",
        default="parse_error",
        help="steps drawn as masked, as data.mask_steps: comma-separated parse_error,tool_error,repeated_action "
        "or '' for none",
    )
    args = parser.parse_args(argv)
    mask_steps = [kind for kind in args.mask_steps.split(",") if kind]
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `… --json | head` ends quietly, like any Unix filter
    if Path(args.file).is_dir():
        inside = Path(args.file) / "trajectories.jsonl"
        hint = f" (e.g. {inside})" if inside.exists() else ""
        raise SystemExit(f"error: {args.file} is a directory: pass a trajectories .jsonl file{hint}")
    try:
        record, imported = load_record(args.file, args.index)
    except (OSError, ValueError, IndexError) as exc:
        raise SystemExit(f"error: {exc}") from None
    strategy = strategy_for(args.span, imported)
    try:
        tokens = render_tokens(load_tokenizer(args.model), record, strategy, mask_steps)
    except ValueError as exc:
        raise SystemExit(f"error: {args.file} index {args.index}: cannot render: {exc}") from None
    if args.json:
        rows = [{"text": t.text, "span": t.span, **({"masked": True} if t.masked else {})} for t in tokens]
        print(json.dumps(rows, ensure_ascii=False))
        return
    console = Console()
    teacher = record.get("teacher") or {}
    console.print(
        Text.assemble(
            (str(args.file), "bold"),
            f" index {args.index}: trajectory {record['trajectory_id']}, "
            f"problem {record['problem_id']}, teacher {teacher.get('provider')}/"
            f"{teacher.get('model')}, passed {record.get('passed')}, spans {strategy.name}",
        )
    )
    console.print(to_rich(tokens))
    console.print(summary_table(tokens))


if __name__ == "__main__":
    main()
