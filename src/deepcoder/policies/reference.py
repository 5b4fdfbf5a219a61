"""The offline, deterministic stand-in teacher.

It is not a language model: it writes the turns a careful agent would write around a problem's
reference solution — state the task, run the solution on the docstring's examples, read the
Observation, compare it with the expected values, give the final answer. On synthetic problems
it also restates the task in canonical words and plans one step per part (reference_plans.py).
Its turns go through the same agent loop, parser and sandbox as a real teacher's, so the whole
pipeline runs with no network and no key, and every ``passed`` is still measured by the tests.
"""

from __future__ import annotations

import io
import re
import time
import tokenize
from collections.abc import Sequence
from typing import TYPE_CHECKING

from deepcoder.policies.base import Completion, Message
from deepcoder.policies.reference_plans import synthetic_thought
from deepcoder.problems import doctest_examples
from deepcoder.protocol.prompts import OBSERVATION_PREFIX
from deepcoder.utils.text import count_words

if TYPE_CHECKING:
    from deepcoder.problems import Problem


class ReferenceTeacher:
    """Turns a reference solution into a two-step Thought → Action → Observation trajectory."""

    provider = "reference"

    def __init__(self, model: str = "reference-solution") -> None:
        self.model = model

    def complete(self, messages: Sequence[Message], *, problem: Problem) -> Completion:
        start = time.perf_counter()
        solution = problem.reference_solution
        if not solution:
            raise ValueError(f"{problem.id}: the reference teacher needs a reference_solution")
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn == 0:
            text = self._first_turn(problem, solution.strip())
        else:
            text = self._final_turn(problem, solution.strip(), messages[-1]["content"])
        prompt_tokens = sum(count_words(m["content"]) for m in messages)
        return Completion(text, prompt_tokens, count_words(text), time.perf_counter() - start)

    @staticmethod
    def _first_turn(problem: Problem, solution: str) -> str:
        calls = [_without_comments(ex.source) for ex in doctest_examples(problem)]
        if calls:
            checks = "\n".join(f"print(repr({call}))" for call in calls)
            plan = f"I will write it and run it on the {len(calls)} examples from the docstring."
        else:
            checks = 'print("defined")'
            plan = "The docstring has no examples, so I will check that the program runs."
        code = f"{solution}\n\n{checks}"
        task = synthetic_thought(problem) or f"I need to implement `{problem.entry_point}`: {_summary(problem)}"
        return f"Thought: {task} {plan}\nAction: python\nAction Input:\n```python\n{code}\n```"

    @staticmethod
    def _final_turn(problem: Problem, solution: str, observation: str) -> str:
        wants = [ex.want.strip() for ex in doctest_examples(problem)]
        got = observation.removeprefix(OBSERVATION_PREFIX).strip().splitlines()
        if not wants:
            verdict = "The program runs without errors."
        elif got == wants:
            verdict = f"All {len(wants)} outputs match the expected values."
        else:
            verdict = "Some outputs differ from the docstring, but this is the reference solution."
        return f"Thought: {verdict} The function is complete.\nFinal Answer:\n```python\n{solution}\n```"


def _without_comments(source: str) -> str:
    """An example's source without ``# …`` comments, so it can be wrapped in ``print(repr(…))``."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type != tokenize.COMMENT]
        return tokenize.untokenize(tokens).strip()
    except (tokenize.TokenError, SyntaxError):
        return source.strip()


def _summary(problem: Problem) -> str:
    """The docstring's first sentence, lower-cased at the start, as a statement of the task."""
    match = re.search(r'("""|\'\'\')\s*(.*?)(?:\n\s*\n|>>>|\1)', problem.prompt, re.DOTALL)
    sentence = " ".join(match.group(2).split()) if match else f"see the docstring of {problem.entry_point}"
    sentence = sentence.split(". ")[0].rstrip(".") + "."
    return sentence[:1].lower() + sentence[1:]
