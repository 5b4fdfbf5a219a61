"""problems=synthetic: held-out combinations never trained on, every reference passes (also in the sandbox)."""

from __future__ import annotations

import pytest

from deepcoder.problems import doctest_examples, load_problems
from deepcoder.problems.synthetic import HOLDOUT_FRACTION, build, generate, pairs, recover
from deepcoder.tools import PythonExecutor

TRAIN = generate("train", 2000, seed=0)
HELDOUT = generate("heldout", 1000, seed=0)


def _pair(problem):
    built = recover(problem)
    return built.operation.id, built.modifier.id


def test_heldout_problems_share_no_combination_of_parts_with_training():
    train_pairs = {_pair(p) for p in TRAIN} | {_pair(p) for p in generate("train", 500, seed=7)}
    heldout_pairs = {_pair(p) for p in HELDOUT}
    assert not train_pairs & heldout_pairs
    assert heldout_pairs <= {(op.id, mod.id) for op, mod in pairs("heldout")}
    assert len(heldout_pairs) >= 0.9 * len(pairs("heldout"))  # the held-out set covers its pairs
    # ... but every part of a held-out problem is trained on, with other partners
    train_ops, train_mods = {op for op, _ in train_pairs}, {mod for _, mod in train_pairs}
    assert {op for op, _ in heldout_pairs} <= train_ops and {mod for _, mod in heldout_pairs} <= train_mods


def test_the_division_of_pairs_is_fixed_and_about_the_stated_fraction():
    train, heldout = set(pairs("train")), set(pairs("heldout"))
    assert not train & heldout
    assert abs(len(heldout) / (len(train) + len(heldout)) - HOLDOUT_FRACTION) < 0.01


def test_every_reference_solution_passes_its_tests_and_matches_its_docstring():
    for problem in TRAIN + HELDOUT:
        namespace: dict = {}
        exec(problem.program(), namespace)  # our own generated code; raises on a failing assert
        for example in doctest_examples(problem):  # the docstring's examples agree with the code
            assert repr(eval(example.source, namespace)) == example.want.strip(), problem.id


def test_reference_solutions_pass_in_the_sandbox():
    """Many problems per sandbox run (each program defines, checks and is then redefined)."""
    chosen = TRAIN[:150] + HELDOUT[:150]
    with PythonExecutor() as executor:
        for start in range(0, len(chosen), 100):
            result = executor.run("\n".join(p.program() for p in chosen[start : start + 100]), timeout_s=30)
            assert result.ok, result.error


@pytest.mark.slow
def test_thousands_of_reference_solutions_pass_in_the_sandbox():
    with PythonExecutor() as executor:
        for start in range(0, len(TRAIN + HELDOUT), 250):
            chunk = (TRAIN + HELDOUT)[start : start + 250]
            result = executor.run("\n".join(p.program() for p in chunk), timeout_s=60)
            assert result.ok, result.error


def test_problems_are_seeded_distinct_and_rebuilt_from_their_id():
    assert [p.prompt for p in generate("train", 50, seed=0)] == [p.prompt for p in TRAIN[:50]]
    assert [p.prompt for p in generate("train", 50, seed=1)] != [p.prompt for p in TRAIN[:50]]
    assert len({p.prompt for p in TRAIN}) == len(TRAIN) and len({p.id for p in TRAIN}) == len(TRAIN)
    assert all(recover(p).problem == p for p in TRAIN[:100])
    assert recover(load_problems("sample")[0]) is None


def test_docstrings_are_paraphrased():
    openings = {p.prompt.split('"""')[1].split()[0] for p in TRAIN}
    assert {"Return", "Count", "Add", "Join"} <= openings


def test_load_problems_source_synthetic_and_its_errors():
    problems = load_problems("synthetic", split="heldout", n=30, seed=3, categories=["nums", "text"])
    assert problems and {p.category for p in problems} <= {"nums", "text"}
    assert {p.source for p in problems} == {"synthetic"}
    with pytest.raises(ValueError, match="problems.split='test' is not a split"):
        load_problems("synthetic", split="test")
    with pytest.raises(ValueError, match="problems.n must be >= 0"):
        load_problems("synthetic", n=-1)
    with pytest.raises(ValueError, match="apply to problems=synthetic only"):
        load_problems("sample", n=5)
    assert build("train", 0, 3).problem.id == "synthetic/train/0/3"


def test_the_reference_teacher_plans_on_synthetic_problems_only():
    from deepcoder.agent.factory import build_agent
    from deepcoder.policies import ReferenceTeacher

    agent, teacher = build_agent(tools=["python"]), ReferenceTeacher()
    for problem in HELDOUT[:12]:
        record = agent.run(teacher, problem)
        built, thought = recover(problem), record["steps"][0]["thought"]
        assert record["passed"] is True, problem.id
        step = "keep each x where" if built.modifier.kind == "keep" else "map each x to"
        assert built.statement()[1:] in thought and f"{step} {built.condition()}," in thought
    sample = load_problems("sample")[0]
    assert agent.run(teacher, sample)["steps"][0]["thought"].startswith(f"I need to implement `{sample.entry_point}`")
