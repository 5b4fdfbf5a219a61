"""The reference teacher's reasoning on synthetic problems: the task, the plan, a worked example.

A synthetic problem is rebuilt from its id (``problems.synthetic.recover``), so the teacher knows
its parts: it restates the task in the family's canonical words (whatever paraphrase the docstring
used), plans one step per part, and works the first docstring example through the parts' meaning
before any code is run. The reasoning span thus carries what the action needs, in a fixed form.
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
    example = built.inputs[0]
    _, values, result = built.trace(example)
    return (
        f"`{problem.entry_point}` should {statement[:1].lower()}{statement[1:]} "
        f"Plan: take the items of {box.name} as {box.access}, {step}, then return {built.returned()}. "
        f"Check: for {example!r} the values are {values!r}, so the result is {result!r}."
    )
