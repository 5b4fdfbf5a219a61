"""Render a trajectory file into a store directory, streaming, in ``num_proc`` processes.

The file is read line by line and cut into chunks of ``CHUNK`` lines whatever ``num_proc`` is;
workers parse, check and render whole chunks and the chunks are written in file order, so the
store is byte-identical for any process count. At most ``2 · num_proc`` chunks are in flight:
memory does not grow with the file. ``start`` continues a store whose source file has only
grown since (:mod:`deepcoder.data.cache`): rendering resumes at that byte and line.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from deepcoder.data.columns import Columns, concat, example_columns
from deepcoder.data.example_info import describe
from deepcoder.data.store import LAYOUT
from deepcoder.records.schema import as_record, check_record
from deepcoder.spans.labels import SpanStrategy
from deepcoder.spans.render import render_trajectory
from deepcoder.spans.token_map import TokenMap

CHUNK = 64  # lines per task: big enough to amortise the inter-process transfer, small enough to balance


@dataclass(frozen=True)
class Renderer:
    """What decides an example's tokens: tokenizer, span strategy, ``max_length``, teacher token map."""

    tokenizer: PreTrainedTokenizerBase
    span: SpanStrategy
    max_length: int
    token_map: TokenMap | None = None

    def chunk(self, path: str, lines: list[tuple[int, bytes]]) -> tuple[Columns, str]:
        """The store rows of the usable records among ``lines`` (``(line number, raw line)``), and the
        first badly aligned teacher step among them (``""``: none)."""
        parts, example = [], ""
        for number, line in lines:
            where = f"{path}:{number}"
            record = _parse(line, where)
            check_record(record, where)
            if record.get("error"):
                continue
            try:
                full = render_trajectory(self.tokenizer, as_record(record), self.span, token_map=self.token_map)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise ValueError(f"{where}: cannot render: {exc}") from exc
            parts.append(example_columns(full.truncated(self.max_length), describe(as_record(record), len(full))))
            example = example or (full.teacher.counts.example if full.teacher is not None else "")
        return concat(parts), example


def _parse(line: bytes, where: str) -> dict[str, Any]:
    """One JSONL record, with :func:`deepcoder.utils.jsonl.read_jsonl`'s errors."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: invalid JSON: {exc.msg} (col {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8: {exc.reason}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def line_chunks(path: Path, start: int, first_line: int, end: int) -> Iterator[list[tuple[int, bytes]]]:
    """The non-blank lines between bytes ``start`` and ``end`` (numbered from ``first_line``), ``CHUNK``
    at a time; ``end`` is the size the file was hashed at, so lines appended since wait for the next run."""
    chunk: list[tuple[int, bytes]] = []
    with path.open("rb") as handle:
        handle.seek(start)
        position = start
        for number, line in enumerate(handle, start=first_line):
            if position >= end:
                break
            position += len(line)
            if line.strip():
                chunk.append((number, line))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


_WORKER: Renderer | None = None  # the renderer of a pool process, set once by its initializer


def _init(renderer: Renderer) -> None:
    global _WORKER
    _WORKER = renderer


def _work(path: str, lines: list[tuple[int, bytes]]) -> tuple[Columns, str]:
    assert _WORKER is not None, "a pool process renders only after _init"
    return _WORKER.chunk(path, lines)


def rendered_chunks(
    renderer: Renderer, path: Path, num_proc: int, start: int, first_line: int, end: int
) -> Iterator[tuple[Columns, str]]:
    """Each chunk's rows, in file order; with ``num_proc`` > 1 rendered by forked processes."""
    chunks = line_chunks(path, start, first_line, end)
    if num_proc == 1:
        yield from (renderer.chunk(str(path), lines) for lines in chunks)
        return
    # fork: the workers inherit the loaded tokenizer instead of importing torch and transformers again
    with multiprocessing.get_context("fork").Pool(num_proc, initializer=_init, initargs=(renderer,)) as pool:
        pending: deque = deque()
        for lines in chunks:
            pending.append(pool.apply_async(_work, (str(path), lines)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


class StoreWriter:
    """Appends chunks of rows to the store's files in ``root``; :meth:`finish` writes ``order`` and ``meta.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.handles = {name: (root / f"{name}.bin").open("ab") for name in LAYOUT if name != "order"}

    def append(self, columns: Columns) -> None:
        for name, array in columns.items():
            self.handles[name].write(np.ascontiguousarray(array).tobytes())

    def finish(self, meta: dict[str, Any]) -> None:
        for handle in self.handles.values():
            handle.close()
        ids = np.fromfile(self.root / "trajectory_id.bin", dtype=np.uint8)
        bounds = np.concatenate([[0], np.cumsum(np.fromfile(self.root / "trajectory_id_len.bin", dtype="<i8"))])
        names = [bytes(ids[a:b]).decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]
        order = np.array(sorted(range(len(names)), key=names.__getitem__), dtype="<i8")  # stable: file order on ties
        order.tofile(self.root / "order.bin")
        (self.root / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
