"""HumanEval-style grading: run a program against a `check(candidate)` test suite in the sandbox."""

from __future__ import annotations

from dataclasses import dataclass

from deepcoder.tools.executor import PythonExecutor


@dataclass(frozen=True)
class TestOutcome:
    """Whether the program passed; `error` is the first failure (e.g. "AssertionError")."""

    __test__ = False  # not a pytest test class despite the name

    passed: bool
    error: str | None
    timed_out: bool
    duration_s: float


def run_tests(
    executor: PythonExecutor, program: str, tests: str, entry_point: str, timeout_s: float = 10.0
) -> TestOutcome:
    """Run `program`, then `tests` (defining `check`), then `check(entry_point)`; pass iff no error.

    The program and the tests run in separate namespaces, each with its own fresh builtins: the
    tests see the entry point, plus the program's global names they use but neither define nor
    find among the builtins (helpers such as HumanEval/38's ``encode_cyclic``), so a program
    cannot shadow ``abs`` or ``isclose`` for the tests. What remains (as in every
    execution-based grader): a returned object whose ``__eq__`` always answers True passes
    ``==`` assertions, and a program may redefine the helpers the tests borrow from it.
    """
    result = executor.run_tests(program, tests, entry_point, timeout_s=timeout_s)
    return TestOutcome(passed=result.ok, error=result.error, timed_out=result.timed_out, duration_s=result.duration_s)
