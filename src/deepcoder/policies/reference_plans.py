"""The reference teacher's reasoning on synthetic problems: the task and a plan, one step per part.

A synthetic problem is rebuilt from its id (``problems.synthetic.recover``), so the teacher knows
its parts: it restates the task in the family's canonical words (whatever paraphrase the docstring
used) and plans one step per part. The reasoning span thus carries what the action needs, in a
fixed form; the examples are then checked by running the code (the reference teacher's next turn
compares the Observation with the docstring). A worked example in the Thought was tried and
dropped: a tiny student copied it badly and looped on it.
"""

from __future__ import annotations

from deepcoder.problems import Problem
from deepcoder.problems.synthetic import recover


def synthetic_thought(problem: Problem) -> str | None:
    """The first Thought for a synthetic problem (None for any other problem)."""
    built = recover(problem)
    if built is None:
        return None
    statement = built.statement()
    box, mod = built.container, built.modifier
    step = f"keep each x where {built.condition()}" if mod.kind == "keep" else f"map each x to {built.condition()}"
    return (
        f"`{problem.entry_point}` should {statement[:1].lower()}{statement[1:]} "
        f"Plan: take the items of {box.name} as {box.access}, {step}, then return {built.returned()}."
    )
