"""The coding problem in HumanEval style, and what is read off its prompt (docstring, doctest examples).

``prompt`` is a function signature plus docstring, ``tests`` defines ``check(candidate)``, and a
grader runs ``reference_solution + tests + check(entry_point)``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One coding problem in HumanEval style."""

    id: str
    prompt: str
    entry_point: str
    tests: str
    reference_solution: str | None
    category: str
    difficulty: str
    source: str

    def program(self, solution: str | None = None) -> str:
        """The program a grader runs: solution (default: the reference) + tests + check call."""
        code = self.reference_solution if solution is None else solution
        if code is None:
            raise ValueError(f"problem {self.id!r} has no reference solution")
        return f"{code}\n\n{self.tests}\n\ncheck({self.entry_point})\n"


def prompt_docstring(prompt: str, entry_point: str) -> str:
    """The docstring of function ``entry_point`` in ``prompt`` ("" if none).

    Parse doctest examples from this, not from the raw prompt: in the raw text the
    closing triple quote right after an expected-output line would be read as output.
    """
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        tree = ast.parse(prompt + "\n    pass\n")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point:
            return ast.get_docstring(node) or ""
    return ""


def doctest_examples(problem: Problem) -> list:
    """``doctest.Example`` objects (``.source``, ``.want``) from the prompt's docstring.

    Returns [] when the docstring is not valid doctest text (a few HumanEval prompts).
    """
    import doctest

    try:
        return doctest.DocTestParser().get_examples(prompt_docstring(problem.prompt, problem.entry_point))
    except ValueError:
        return []
