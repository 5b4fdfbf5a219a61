"""Show one rendered trajectory token by token, coloured by span: what the student is trained on.

``python -m deepcoder.show FILE [--index N] [--json] [--span structured|react|think] [--model tiny|PATH]``

FILE is our trajectories JSONL or a FireAct file (imported on the fly, see
:mod:`deepcoder.data.importers`). The default span strategy is ``structured`` for our records
and ``react`` for imported ones. ``--json`` prints only ``[{"text": …, "span": …}, …]``, one
entry per token, whose texts concatenate to the decoded chat. Otherwise the chat is printed in
colour with token counts per span and a legend; underlined tokens straddle two spans and take
the label of their first character (the rule of :mod:`deepcoder.data.render`).
:func:`to_html` gives the same view for notebooks and W&B.
"""

from __future__ import annotations

import argparse
import html
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from deepcoder.data.importers import convert, read_records
from deepcoder.data.render import SpanStrategy, label_tokens
from deepcoder.data.spans import SPAN_NAMES, TRAINED_SPANS, StructuredSpans
from deepcoder.data.text_spans import ReactSpans, ThinkSpans
from deepcoder.data.schema import check_record

STRATEGIES = {"structured": StructuredSpans, "react": ReactSpans, "think": ThinkSpans}
COLOURS = {"prompt": "#8a8a8a", "reason": "#3b8eea", "action": "#23a55a", "observation": "#d7a400",
           "answer": "#c850c0"}
BOUNDARY_NOTE = "underlined: a token that straddles two spans (labelled by its first character)"


@dataclass(frozen=True)
class Token:
    """One token's decoded text, its span, and whether its characters belong to two spans."""

    text: str
    span: str
    boundary: bool = False


def load_record(path: str | Path, index: int) -> tuple[dict[str, Any], bool]:
    """Record ``index`` (0-based) of ``path`` and whether it was imported from a FireAct file."""
    rows = read_records(path)
    if not 0 <= index < len(rows):
        raise IndexError(f"{path}: no trajectory at index {index} (the file has {len(rows)} trajectories)")
    where, record = rows[index]
    if "trajectory_id" in record:
        check_record(record, where)
        return record, False
    return convert(record, path, index, where), True


def strategy_for(span: str | None, imported: bool) -> SpanStrategy:
    """The named span strategy, by default ``react`` for imported records, else ``structured``."""
    return STRATEGIES[span or ("react" if imported else "structured")]()


def load_tokenizer(model: str):
    """The tiny tokenizer (built locally) or any Hugging Face tokenizer by hub id or path."""
    if model == "tiny":
        from deepcoder.models import TinyModel

        return TinyModel().load_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def token_texts(tokenizer, ids: Sequence[int]) -> list[str]:
    """Decoded text per token; a character split over several byte-level tokens is given to the
    token that completes it (the others get ``""``), so the texts concatenate to the decoded ids."""
    texts, pending = [], 0
    for i in range(len(ids)):
        piece = tokenizer.decode(ids[pending:i + 1])
        if piece.endswith("\ufffd") and i + 1 < len(ids):
            texts.append("")
            continue
        texts.append(piece)
        pending = i + 1
    return texts


def render_tokens(tokenizer, record: dict[str, Any], strategy: SpanStrategy) -> list[Token]:
    """Every token of the rendered trajectory with its span label and boundary flag."""
    tokens = label_tokens(tokenizer, record, strategy)
    return [Token(piece, SPAN_NAMES[span], len(set(tokens.char_spans[start:end])) > 1)
            for piece, span, (start, end) in zip(token_texts(tokenizer, tokens.input_ids), tokens.span_ids,
                                                 tokens.offsets)]


def load_tokens(path: str | Path, index: int = 0, span: str | None = None, model: str = "tiny") -> list[Token]:
    """The tokens of trajectory ``index`` of ``path`` (for notebooks: ``to_html(load_tokens(...))``)."""
    record, imported = load_record(path, index)
    return render_tokens(load_tokenizer(model), record, strategy_for(span, imported))


def to_rich(tokens: Sequence[Token]) -> Text:
    """The chat, each token in its span's colour, boundary tokens underlined."""
    text = Text()
    for token in tokens:
        text.append(token.text, style=COLOURS[token.span] + (" underline" if token.boundary else ""))
    return text


def summary_table(tokens: Sequence[Token]) -> Table:
    """Token counts per span, coloured as in the text: the legend."""
    counts = Counter(t.span for t in tokens)
    table = Table(title="tokens per span", caption=BOUNDARY_NOTE)
    for column in ("span", "tokens", "boundary", "trained"):
        table.add_column(column, justify="left" if column == "span" else "right")
    for name in SPAN_NAMES:
        boundary = sum(t.boundary for t in tokens if t.span == name)
        table.add_row(Text(name, style=COLOURS[name]), str(counts[name]), str(boundary),
                      "yes" if name in TRAINED_SPANS else "no")
    table.add_row("total", str(len(tokens)), str(sum(t.boundary for t in tokens)), "")
    return table


def to_html(tokens: Sequence[Token]) -> str:
    """The coloured view as one HTML fragment: a legend with counts, then the tokens."""
    counts = Counter(t.span for t in tokens)
    legend = " · ".join(f'<span style="color:{COLOURS[s]}">■ {s} ({counts[s]})</span>' for s in SPAN_NAMES)
    body = "".join(f'<span title="{t.span}" style="color:{COLOURS[t.span]}'
                   f'{";text-decoration:underline" if t.boundary else ""}">{html.escape(t.text)}</span>'
                   for t in tokens)
    return (f'<div class="deepcoder-show"><div>{legend}<br><small>{BOUNDARY_NOTE}</small></div>'
            f'<pre style="white-space:pre-wrap">{body}</pre></div>')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepcoder.show", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="trajectories JSONL, or a FireAct JSON/JSONL file")
    parser.add_argument("--index", type=int, default=0, help="which trajectory (0-based)")
    parser.add_argument("--json", action="store_true", help='print [{"text", "span"}, ...] only')
    parser.add_argument("--span", choices=sorted(STRATEGIES), help="default: structured, react for imports")
    parser.add_argument("--model", default="tiny", help="tokenizer: tiny, or a Hugging Face id or path")
    args = parser.parse_args(argv)
    try:
        record, imported = load_record(args.file, args.index)
    except (OSError, ValueError, IndexError) as exc:
        raise SystemExit(f"error: {exc}") from None
    strategy = strategy_for(args.span, imported)
    try:
        tokens = render_tokens(load_tokenizer(args.model), record, strategy)
    except ValueError as exc:
        raise SystemExit(f"error: {args.file} index {args.index}: cannot render: {exc}") from None
    if args.json:
        print(json.dumps([{"text": t.text, "span": t.span} for t in tokens], ensure_ascii=False))
        return
    console = Console()
    teacher = record.get("teacher") or {}
    console.print(Text.assemble((str(args.file), "bold"), f" index {args.index}: trajectory {record['trajectory_id']}, "
                                f"problem {record['problem_id']}, teacher {teacher.get('provider')}/"
                                f"{teacher.get('model')}, passed {record.get('passed')}, spans {strategy.name}"))
    console.print(to_rich(tokens))
    console.print(summary_table(tokens))


if __name__ == "__main__":
    main()
