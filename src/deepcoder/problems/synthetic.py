"""``problems=synthetic``: a seeded, procedural family of small function-writing problems.

Each problem composes three parts (synthetic_parts.py) — a container, a modifier (filter or map)
and an operation — plus constants, with a paraphrased docstring and doctest examples, in the
HumanEval format. The reference solution is three lines, one per part, so a new combination is
new text whose solution is made of pieces seen in training.

Splits: the (operation, modifier) pairs are divided once, by a fixed seed independent of
``seed``, into training pairs and held-out pairs; ``split=heldout`` draws only from held-out
pairs, so no held-out combination of parts ever appears in training, while each of its parts does.
Problem ``index`` of a split is drawn from its own RNG seeded by ``(seed, split, index)``; its id
``synthetic/<split>/<seed>/<index>`` is enough to rebuild it (:func:`recover`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import cache, cached_property
from typing import Any

from deepcoder.problems.problem import Problem
from deepcoder.problems.synthetic_parts import (
    ANNOTATIONS,
    CONSTANTS,
    CONTAINERS,
    MODIFIERS,
    OPERATIONS,
    Container,
    Modifier,
    Operation,
    applies,
)

SPLITS = ("train", "heldout")
HOLDOUT_SEED = 15  # fixed: every seed and every run shares one train/held-out division of pairs
HOLDOUT_FRACTION = 0.15
MIN_TRAINING_USES = 3  # every part keeps at least this many training pairs
N_TESTS = 6


@dataclass(frozen=True)
class Synthetic:
    """One composed problem: its parts, constants, phrasing and test inputs; ``problem`` is its text."""

    id: str
    container: Container
    modifier: Modifier
    operation: Operation
    consts: dict[str, Any]
    phrasing: tuple[int, int, int]  # which phrase of (operation, modifier, container) the docstring uses
    inputs: tuple[Any, ...] = ()  # the first two are the docstring's examples

    @cached_property
    def problem(self) -> Problem:
        """The HumanEval-format problem: signature + docstring, ``check`` tests, the reference solution."""
        box, mod, op = self.container, self.modifier, self.operation
        name = f"{op.id}_{mod.word}"
        signature = f"def {name}({box.name}: {box.annotation}) -> {op.returns.format(t=ANNOTATIONS[mod.result])}:\n"
        examples = "".join(f"    >>> {name}({value!r})\n    {self.trace(value)[2]!r}\n" for value in self.inputs[:2])
        step = f"x for x in items if {self.condition()}" if mod.kind == "keep" else f"{self.condition()} for x in items"
        body = f"    items = {box.access}\n    values = [{step}]\n    return {self.returned()}\n"
        asserts = "".join(f"    assert candidate({value!r}) == {self.trace(value)[2]!r}\n" for value in self.inputs)
        return Problem(
            id=self.id,
            prompt=f'{signature}    """{self.statement(self.phrasing)}\n{examples}    """\n',
            entry_point=name,
            tests=f"def check(candidate):\n{asserts}",
            reference_solution=signature + body,
            category=box.name,
            difficulty=("easy", "medium", "hard")[len({mod.const, op.const} - {None})],
            source="synthetic",
        )

    def trace(self, value: Any) -> tuple[list, list, Any]:
        """(items, values, result) of the reference computation on ``value``: the meaning of the parts."""
        items = self.container.items(value)
        mod, op = self.modifier, self.operation
        args = [self.consts[mod.const]] if mod.const else []
        values = [x for x in items if mod.fn(x, *args)] if mod.kind == "keep" else [mod.fn(x, *args) for x in items]
        result = op.fn(values, self.consts[op.const]) if op.const else op.fn(values)
        return items, values, result

    def condition(self) -> str:
        """The modifier's expression in ``x`` with this problem's constant."""
        const = self.consts.get(self.modifier.const) if self.modifier.const else None
        return self.modifier.code.format(k=const, c=const)

    def returned(self) -> str:
        """The operation's returned expression with this problem's constant."""
        return self.operation.code.replace("{sep}", self.consts.get("sep", ""))

    def statement(self, phrasing: tuple[int, int, int] = (0, 0, 0)) -> str:
        """What the function returns, in the given phrasing of (operation, modifier, container);
        (0, 0, 0) is the canonical one."""
        mod, op, box = self.modifier, self.operation, self.container
        const = self.consts.get(mod.const) if mod.const else None
        things = mod.phrases[phrasing[1]].format(noun=box.noun, src=box.sources[phrasing[2]], k=const, c=const)
        return op.phrases[phrasing[0]].format(things=things, sep=self.consts.get("sep"))


@cache
def pairs(split: str) -> tuple[tuple[Operation, Modifier], ...]:
    """The (operation, modifier) pairs of ``split``; the two splits are disjoint and fixed."""
    if split not in SPLITS:
        raise ValueError(f"problems.split={split!r} is not a split; use one of {list(SPLITS)}")
    every = [(op, mod) for op in OPERATIONS for mod in MODIFIERS if applies(op, mod)]
    order = list(range(len(every)))
    random.Random(HOLDOUT_SEED).shuffle(order)
    uses: dict[str, int] = {}
    for op, mod in every:
        uses[op.id] = uses.get(op.id, 0) + 1
        uses[mod.id] = uses.get(mod.id, 0) + 1
    heldout: set[int] = set()
    for i in order:
        if len(heldout) >= HOLDOUT_FRACTION * len(every):
            break
        op, mod = every[i]
        if uses[op.id] > MIN_TRAINING_USES and uses[mod.id] > MIN_TRAINING_USES:
            heldout.add(i)
            uses[op.id] -= 1
            uses[mod.id] -= 1
    keep = (lambda i: i in heldout) if split == "heldout" else (lambda i: i not in heldout)
    return tuple(pair for i, pair in enumerate(every) if keep(i))


def build(split: str, seed: int, index: int) -> Synthetic:
    """Problem ``index`` of ``split`` under ``seed``: parts, constants, phrasing and tests from one RNG."""
    rng = random.Random(f"synthetic/{split}/{seed}/{index}")
    operation, modifier = rng.choice(pairs(split))
    container = rng.choice([c for c in CONTAINERS if c.element == modifier.element])
    consts = {name: CONSTANTS[name](rng) for name in (modifier.const, operation.const) if name}
    if modifier.const:
        consts["k"] = consts[modifier.const]
    phrasing = (
        rng.randrange(len(operation.phrases)),
        rng.randrange(len(modifier.phrases)),
        rng.randrange(len(container.sources)),
    )
    parts = Synthetic(f"synthetic/{split}/{seed}/{index}", container, modifier, operation, consts, phrasing)
    return replace(parts, inputs=_inputs(rng, parts))


def _inputs(rng: random.Random, parts: Synthetic) -> tuple:
    """Two docstring examples whose answer is informative (not None, something kept), then the empty
    container and random inputs."""
    candidates = [parts.container.make(rng) for _ in range(12)]
    informative = [v for v in candidates if parts.trace(v)[1] and parts.trace(v)[2] is not None]
    examples = (informative + [v for v in candidates if parts.trace(v)[2] is not None])[:2]
    empty = type(parts.container.make(rng))()
    rest = [v for v in candidates if v not in examples][: N_TESTS - 3]
    return (*examples, empty, *rest)


def generate(split: str = "train", n: int = 100, seed: int = 0) -> list[Problem]:
    """``n`` distinct problems of ``split``; a draw whose prompt repeats an earlier one is skipped."""
    if int(n) < 0:
        raise ValueError(f"problems.n must be >= 0, got {n}")
    problems: list[Problem] = []
    seen: set[str] = set()
    index = 0
    while len(problems) < int(n):
        problem = build(split, int(seed), index).problem
        index += 1
        if problem.prompt not in seen:
            seen.add(problem.prompt)
            problems.append(problem)
        if index > 20 * int(n) + 100:
            raise RuntimeError(f"could not draw {n} distinct synthetic {split} problems (got {len(problems)})")
    return problems


def recover(problem: Problem) -> Synthetic | None:
    """The composition behind a synthetic problem (None for any other problem, or an edited one)."""
    parts = problem.id.split("/")
    if len(parts) != 4 or parts[0] != "synthetic" or parts[1] not in SPLITS:
        return None
    try:
        built = build(parts[1], int(parts[2]), int(parts[3]))
    except ValueError:
        return None
    return built if built.problem.prompt == problem.prompt else None
