"""Splitting a problem set across machines or SLURM jobs: ``shard=i num_shards=n``.

A problem's shard depends on its id only (a SHA-256 of the id, modulo ``n``), never on the
order, the shuffle or the other problems of the set, so every job computes the same split,
shards are disjoint and together cover the set, and a problem stays in its shard when the set
grows. The price: shard sizes are balanced only on average (±√(N/n) or so).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepcoder.problems import Problem


def shard_of(problem_id: str, num_shards: int) -> int:
    """The shard (``0 … num_shards-1``) that owns ``problem_id``."""
    digest = hashlib.sha256(problem_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def check_shard(shard: int, num_shards: int) -> None:
    """``ValueError`` naming the config keys when the pair cannot describe a shard."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in 0..{num_shards - 1} (num_shards={num_shards}), got {shard}")


def select_shard(problems: Sequence[Problem], shard: int, num_shards: int) -> list[Problem]:
    """The problems of shard ``shard`` of ``num_shards``, in their given order."""
    check_shard(shard, num_shards)
    return [p for p in problems if shard_of(p.id, num_shards) == shard]
