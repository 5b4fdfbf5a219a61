"""Reading trajectory files for training: schema-checked records, filtered and ordered."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from deepcoder.records.schema import check_record
from deepcoder.utils.jsonl import read_jsonl

log = logging.getLogger(__name__)


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
        check_record(record, where)
        if record.get("error") or (only_passed and record.get("passed") is not True):
            continue
        rows.append((where, record))
    rows.sort(key=lambda row: row[1]["trajectory_id"])
    log.info("%s: %d usable trajectories%s", path, len(rows), " (passed only)" if only_passed else "")
    return rows
