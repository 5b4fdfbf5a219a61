"""Which agent steps are bad: the kinds a training set can mask (``data.mask_steps``).

- ``parse_error``: the turn has neither a valid action nor a final answer (the agent's parser
  recorded ``parse_error``); learning it teaches the student to end a turn with no action.
- ``tool_error``: a well-formed action whose tool run failed (``tool_ok`` false).
- ``repeated_action``: the same tool with the same input as an earlier step of the trajectory.

Kinds come from the steps the agent recorded; a turn without a step record (an imported
transcript) has none.
"""

from __future__ import annotations

from collections.abc import Collection

from deepcoder.records.schema import TrajectoryRecord

STEP_KINDS = ("parse_error", "tool_error", "repeated_action")


def step_kinds(record: TrajectoryRecord) -> tuple[tuple[str, ...], ...]:
    """The kinds (:data:`STEP_KINDS`) of every recorded step of ``record``, in turn order."""
    kinds, seen = [], set()
    for step in record.get("steps") or []:
        found = []
        if step.get("parse_error"):
            found.append("parse_error")
        elif step.get("tool_ok") is False:
            found.append("tool_error")
        action = step.get("action")
        if action:
            key = (action.get("tool"), action.get("input"))
            if key in seen:
                found.append("repeated_action")
            seen.add(key)
        kinds.append(tuple(found))
    return tuple(kinds)


def check_kinds(mask_steps: Collection[str]) -> frozenset[str]:
    """``data.mask_steps`` as a set, refusing a kind that does not exist."""
    unknown = sorted(set(mask_steps) - set(STEP_KINDS))
    if unknown:
        raise ValueError(f"data.mask_steps: unknown kind(s) {unknown}; choose from {list(STEP_KINDS)}")
    return frozenset(mask_steps)
