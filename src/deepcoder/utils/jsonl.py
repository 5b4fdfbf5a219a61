"""Durable JSONL: whole lines appended and flushed, torn tails detected on read."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; a bad file raises ``ValueError`` naming file and line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)``; a bad line raises ``ValueError`` naming file and line."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: invalid JSON: {exc.msg} (col {exc.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def repair_torn_tail(path: str | Path) -> int:
    """Cut a partial last line left by a killed writer; returns the number of bytes removed.

    Only the bytes after the last newline are removed, and only when they do not parse as JSON:
    every complete line already written is kept.
    """
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    tail = data[keep:]
    try:
        json.loads(tail)
    except ValueError:
        with path.open("r+b") as handle:
            handle.truncate(keep)
        log.warning("%s: removed a torn last line (%d bytes) left by an interrupted run", path, len(tail))
        return len(tail)
    with path.open("ab") as handle:  # a complete record that only lacks its newline
        handle.write(b"\n")
    return 0


class JsonlAppender:
    """Appends one record per call as one ``write`` of a whole line, flushed and fsynced.

    Thread-safe, so a pool of workers can share one file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)
        self._handle = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, so a reader never sees half a report."""
    replace_atomically(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(records: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Write a whole JSONL file atomically."""
    replace_atomically(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def replace_atomically(path: str | Path, text: str) -> None:
    """``path`` holds the old content or ``text``, never a mix, even after a crash or power loss:
    a temp file is written and fsynced, renamed over ``path``, and the rename fsynced (the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: DDP ranks may write the same file
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def save_config(cfg: Any, output_dir: str | Path) -> None:
    """The resolved config of a stage, beside its outputs (keys are never in configs: env only); the
    first thing a stage writes, so a sweep job whose ``output_dir`` another job holds stops here."""
    from omegaconf import OmegaConf

    from deepcoder.utils.sweep_dirs import claim_for_sweep_job

    claim_for_sweep_job(output_dir)
    path = Path(output_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
