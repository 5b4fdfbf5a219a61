"""Stable names and seeds for episodes: the same (problem, sample) gets the same id and seed in every
process, whatever the order, the batch or the number of workers (``hash`` is salted per process)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def trajectory_id(problem_id: str, provider: str, model: str, sample: int) -> str:
    """Stable across reruns, so resumed and repeated runs name the same episode the same way."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"deepcoder:{problem_id}:{provider}:{model}:{sample}"))
