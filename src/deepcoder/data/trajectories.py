"""Reading trajectory files: validation of the fields training needs, and the usual filters."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from deepcoder.utils.jsonl import read_jsonl

log = logging.getLogger(__name__)

ROLES = {"system", "user", "assistant"}


def validate_record(record: dict[str, Any], where: str) -> None:
    """Raise ``ValueError`` naming ``where`` (file:line) and the field for a record training cannot use."""
    for key in ("trajectory_id", "problem_id", "messages"):
        if key not in record:
            raise ValueError(f"{where}: field '{key}': missing")
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: field 'messages': expected a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise ValueError(f"{where}: field 'messages[{i}]': expected {{'role': one of {sorted(ROLES)}, "
                             "'content': str}")


def load_trajectories(path: str | Path, only_passed: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """``(file:line, record)`` of the usable records, ordered by ``trajectory_id``.

    Usable: valid, no ``error``, and by default ``passed``. The order does not depend on the
    order in which parallel workers appended the file, so the same seed gives the same batches.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: trajectory file not found (run generate.py first, or set data.trajectories)")
    rows = []
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        validate_record(record, where)
        if record.get("error") or (only_passed and record.get("passed") is not True):
            continue
        rows.append((where, record))
    rows.sort(key=lambda row: row[1]["trajectory_id"])
    log.info("%s: %d usable trajectories%s", path, len(rows), " (passed only)" if only_passed else "")
    return rows
