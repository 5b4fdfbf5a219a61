"""Views of a rendered trajectory token by token, coloured by span: rich text for the terminal,
an HTML fragment for notebooks and W&B, and the legend with counts per span.

Underlined tokens straddle two spans and take the label of their first character (the rule of
:mod:`deepcoder.spans.render`); struck-through tokens belong to a masked step (``data.mask_steps``,
:mod:`deepcoder.spans.step_kinds`): in the input, never trained. The ``python -m deepcoder.show``
CLI and the W&B trajectory table both draw with these functions.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table
from rich.text import Text

from deepcoder.core.names import SPAN_NAMES, TRAINED_SPANS
from deepcoder.records.schema import TrajectoryRecord, as_record, check_record
from deepcoder.spans.importers import convert, read_records
from deepcoder.spans.labels import SpanStrategy
from deepcoder.spans.render import label_tokens
from deepcoder.spans.step_kinds import check_kinds, step_kinds
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.spans.text_spans import ReactSpans, ThinkSpans

STRATEGIES = {"structured": StructuredSpans, "react": ReactSpans, "think": ThinkSpans}
COLOURS = {"prompt": "#8a8a8a", "reason": "#3b8eea", "action": "#23a55a", "observation": "#d7a400", "answer": "#c850c0"}
BOUNDARY_NOTE = (
    "underlined: a token that straddles two spans (labelled by its first character); "
    "struck through: a masked step's token (data.mask_steps), in the input but not trained"
)
TRAINED = {**{name: "yes" if name in TRAINED_SPANS else "no" for name in SPAN_NAMES}, "observation": "loss.observation"}


@dataclass(frozen=True)
class Token:
    """One token's decoded text, its span, whether its characters belong to two spans, and whether it
    belongs to a masked step."""

    text: str
    span: str
    boundary: bool = False
    masked: bool = False


def load_record(path: str | Path, index: int) -> tuple[TrajectoryRecord, bool]:
    """Record ``index`` (0-based) of ``path`` and whether it was imported from a FireAct file."""
    rows = read_records(path)
    if not 0 <= index < len(rows):
        raise IndexError(f"{path}: no trajectory at index {index} (the file has {len(rows)} trajectories)")
    where, record = rows[index]
    if "trajectory_id" in record:
        check_record(record, where)
        return as_record(record), False
    return convert(record, path, index, where), True


def strategy_for(span: str | None, imported: bool) -> SpanStrategy:
    """The named span strategy, by default ``react`` for imported records, else ``structured``."""
    return STRATEGIES[span or ("react" if imported else "structured")]()


def token_texts(tokenizer, ids: Sequence[int]) -> list[str]:
    """Decoded text per token; a character split over several byte-level tokens is given to the
    token that completes it (the others get ``""``), so the texts concatenate to the decoded ids."""
    texts, pending = [], 0
    for i in range(len(ids)):
        piece = tokenizer.decode(ids[pending : i + 1])
        if piece.endswith("\ufffd") and i + 1 < len(ids):
            texts.append("")
            continue
        texts.append(piece)
        pending = i + 1
    return texts


def render_tokens(
    tokenizer, record: TrajectoryRecord, strategy: SpanStrategy, mask_steps: Collection[str] = ("parse_error",)
) -> list[Token]:
    """Every token of the rendered trajectory with its span label, boundary flag and whether
    ``mask_steps`` (default: the training default) takes its label away."""
    tokens = label_tokens(tokenizer, record, strategy)
    kinds = check_kinds(mask_steps)
    masked = {step for step, found in enumerate(step_kinds(record)) if kinds & set(found)}
    return [
        Token(
            piece,
            SPAN_NAMES[span],
            len(set(tokens.char_spans[start:end])) > 1,
            step in masked and SPAN_NAMES[span] in TRAINED_SPANS,
        )
        for piece, span, step, (start, end) in zip(
            token_texts(tokenizer, tokens.input_ids), tokens.span_ids, tokens.step_ids, tokens.offsets
        )
    ]


def style(token: Token) -> str:
    """The token's rich style: its span's colour, underlined at a boundary, struck through when masked."""
    return COLOURS[token.span] + (" underline" if token.boundary else "") + (" strike" if token.masked else "")


def to_rich(tokens: Sequence[Token]) -> Text:
    """The chat, each token in its span's colour, boundary tokens underlined."""
    text = Text()
    for token in tokens:
        text.append(token.text, style=style(token))
    return text


def summary_table(tokens: Sequence[Token]) -> Table:
    """Token counts per span, coloured as in the text: the legend."""
    counts = Counter(t.span for t in tokens)
    table = Table(title="tokens per span", caption=BOUNDARY_NOTE)
    for column in ("span", "tokens", "boundary", "masked", "trained"):
        table.add_column(column, justify="left" if column == "span" else "right")
    for name in SPAN_NAMES:
        boundary = sum(t.boundary for t in tokens if t.span == name)
        masked = sum(t.masked for t in tokens if t.span == name)
        table.add_row(Text(name, style=COLOURS[name]), str(counts[name]), str(boundary), str(masked), TRAINED[name])
    table.add_row(
        "total", str(len(tokens)), str(sum(t.boundary for t in tokens)), str(sum(t.masked for t in tokens)), ""
    )
    return table


def _decoration(token: Token) -> str:
    lines = [name for name, on in (("underline", token.boundary), ("line-through", token.masked)) if on]
    return f";text-decoration:{' '.join(lines)}" if lines else ""


def to_html(tokens: Sequence[Token]) -> str:
    """The coloured view as one HTML fragment: a legend with counts, then the tokens."""
    counts = Counter(t.span for t in tokens)
    legend = " · ".join(f'<span style="color:{COLOURS[s]}">■ {s} ({counts[s]})</span>' for s in SPAN_NAMES)
    body = "".join(
        f'<span title="{t.span}{" (masked)" if t.masked else ""}" style="color:{COLOURS[t.span]}'
        f'{_decoration(t)}">{html.escape(t.text)}</span>'
        for t in tokens
    )
    return (
        f'<div class="deepcoder-show"><div>{legend}<br><small>{BOUNDARY_NOTE}</small></div>'
        f'<pre style="white-space:pre-wrap">{body}</pre></div>'
    )
