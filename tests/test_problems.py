"""Tests for deepcoder.problems: sample data, loaders, validation, selection, stats."""

from __future__ import annotations

import ast
import doctest
import json

import pytest

from deepcoder.problems import (
    Problem,
    ProblemFormatError,
    doctest_examples,
    format_stats,
    humaneval_difficulty,
    load_file,
    load_humaneval,
    load_problems,
    load_sample,
    prompt_docstring,
    select,
    stats,
)
from deepcoder.problems.__main__ import main

SAMPLE = load_sample()
ALLOWED_MODULES = {"math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "typing"}


def _ns_for(problem: Problem) -> dict:
    ns: dict = {}
    exec(compile(problem.reference_solution, f"<{problem.id}>", "exec"), ns)  # trusted own data
    return ns


# ------------------------------------------------------------------ sample set shape


def test_sample_shape():
    assert len(SAMPLE) >= 12
    ids = [p.id for p in SAMPLE]
    assert len(set(ids)) == len(ids)
    cats = {p.category for p in SAMPLE}
    assert cats == {"strings", "math", "lists", "dicts", "algorithms"}
    for c in cats:
        assert sum(p.category == c for p in SAMPLE) >= 2, c
    for d in ("easy", "medium", "hard"):
        assert sum(p.difficulty == d for p in SAMPLE) >= 3, d
    assert {p.difficulty for p in SAMPLE} == {"easy", "medium", "hard"}
    for p in SAMPLE:
        assert p.source == "sample"
        assert p.id.startswith("sample/")
        assert p.entry_point.isidentifier()
        assert p.reference_solution.startswith(p.prompt)


@pytest.mark.parametrize("problem", SAMPLE, ids=lambda p: p.id)
def test_sample_doctest_examples_match_reference(problem):
    # parse the docstring (not the raw prompt, whose closing quotes would join `want`)
    examples = doctest.DocTestParser().get_examples(prompt_docstring(problem.prompt, problem.entry_point))
    assert [(e.source, e.want) for e in doctest_examples(problem)] == [(e.source, e.want) for e in examples]
    assert 2 <= len(examples) <= 3, problem.id
    ns = _ns_for(problem)
    for ex in examples:
        assert ex.source.strip().startswith(problem.entry_point + "("), ex.source
        got = repr(eval(ex.source, ns))
        assert got == ex.want.strip(), f"{problem.id}: {ex.source.strip()} -> {got}, want {ex.want!r}"


@pytest.mark.parametrize("problem", SAMPLE, ids=lambda p: p.id)
def test_sample_reference_passes_own_check(problem):
    ns: dict = {}
    exec(compile(problem.program(), f"<{problem.id}>", "exec"), ns)
    n_asserts = sum(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(problem.tests)))
    assert 4 <= n_asserts <= 8, problem.id


@pytest.mark.parametrize("problem", SAMPLE, ids=lambda p: p.id)
def test_sample_is_sandbox_friendly(problem):
    program = problem.program()
    tree = ast.parse(program)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert set(m.split(".")[0] for m in mods) <= ALLOWED_MODULES
        if isinstance(node, ast.Name):
            assert not node.id.startswith("_"), node.id
            assert node.id != "print"
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("_"), node.attr
        if isinstance(node, ast.AugAssign):
            assert isinstance(node.target, ast.Name)
    # body length: keep reference solutions short
    body = problem.reference_solution[len(problem.prompt) :]
    assert 1 <= len([ln for ln in body.splitlines() if ln.strip()]) <= 12
    try:
        from RestrictedPython import compile_restricted_exec
    except ImportError:  # pragma: no cover
        return
    result = compile_restricted_exec(program)
    assert not result.errors, result.errors


def test_sample_via_load_problems_default():
    assert [p.id for p in load_problems()] == [p.id for p in SAMPLE]


# ------------------------------------------------------------------ HumanEval


def test_humaneval_loads():
    he = load_humaneval()
    assert len(he) == 164
    assert len({p.id for p in he}) == 164
    first = he[0]
    assert first.id == "HumanEval/0"
    assert first.entry_point == "has_close_elements"
    assert "def check(candidate)" in first.tests
    assert first.reference_solution.startswith(first.prompt)
    assert len(first.reference_solution) > len(first.prompt)
    for p in he:
        assert p.category == "humaneval"
        assert p.source == "humaneval"
        assert p.difficulty in {"easy", "medium", "hard"}
    assert {p.difficulty for p in he} == {"easy", "medium", "hard"}
    # doctest extraction never raises (many HumanEval prompts use ">>>" examples)
    assert sum(bool(doctest_examples(p)) for p in he) > 50
    assert len(load_problems("humaneval", difficulties=["easy"])) == sum(p.difficulty == "easy" for p in he)


def test_humaneval_reference_passes_check():
    he = load_humaneval()
    ns: dict = {}
    exec(he[0].program(), ns)


def test_humaneval_difficulty_heuristic():
    assert humaneval_difficulty("    return 1\n") == "easy"
    assert humaneval_difficulty("\n".join(["    x = 1"] * 3) + "\n\n\n") == "easy"
    assert humaneval_difficulty("\n".join(["    x = 1"] * 8)) == "medium"
    assert humaneval_difficulty("\n".join(["    x = 1"] * 9)) == "hard"


# ------------------------------------------------------------------ user files

OURS = {
    "id": "mine/add",
    "prompt": 'def add(a: int, b: int) -> int:\n    """Add.\n    >>> add(1, 2)\n    3\n    """\n',
    "entry_point": "add",
    "tests": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
    "reference_solution": "def add(a: int, b: int) -> int:\n    return a + b\n",
    "category": "math",
    "difficulty": "easy",
}
HE_STYLE = {
    "task_id": "Mine/1",
    "prompt": 'def neg(x: int) -> int:\n    """Negate.\n    >>> neg(2)\n    -2\n    """\n',
    "entry_point": "neg",
    "canonical_solution": "    return -x\n",
    "test": "def check(candidate):\n    assert candidate(2) == -2\n",
}


def _write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_load_jsonl_ours_and_humaneval_style(tmp_path):
    f = _write_jsonl(tmp_path / "p.jsonl", [OURS, "", "   ", HE_STYLE])
    probs = load_file(f)
    assert [p.id for p in probs] == ["mine/add", "Mine/1"]
    a, b = probs
    assert (a.category, a.difficulty, a.source) == ("math", "easy", str(f))
    assert b.tests == HE_STYLE["test"]
    assert b.reference_solution == HE_STYLE["prompt"] + HE_STYLE["canonical_solution"]
    assert (b.category, b.difficulty) == ("uncategorized", "unknown")
    for p in probs:  # references actually work
        exec(p.program(), {})


def test_load_json_list_and_optional_reference(tmp_path):
    rec = {k: v for k, v in OURS.items() if k not in ("reference_solution", "category")}
    f = tmp_path / "p.json"
    f.write_text(json.dumps([rec, HE_STYLE], indent=2))
    probs = load_file(f)
    assert probs[0].reference_solution is None
    assert probs[0].category == "uncategorized"
    assert probs[1].reference_solution.endswith("return -x\n")
    st = stats(probs)
    assert st["with_reference"] == 1
    # via the Hydra target
    assert len(load_problems("file", path=str(f))) == 2


def _error(tmp_path, name, content) -> str:
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(ProblemFormatError) as ei:
        load_file(f)
    assert isinstance(ei.value, ValueError)
    return str(ei.value)


def _lines(*recs):
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in recs) + "\n"


def _with(**kw):
    rec = dict(OURS)
    rec.update(kw)
    for k, v in list(rec.items()):
        if v is None:
            del rec[k]
    return rec


def test_error_bad_json_line_3(tmp_path):
    msg = _error(tmp_path, "bad.jsonl", _lines(_with(id="a"), _with(id="b"), '{"id": "c" "x": 1}'))
    assert "bad.jsonl:3:" in msg
    assert "invalid JSON" in msg and "col" in msg


def test_error_missing_field(tmp_path):
    msg = _error(tmp_path, "miss.jsonl", _lines(_with(id="a"), _with(id="b", entry_point=None)))
    assert "miss.jsonl:2:" in msg
    assert "field 'entry_point'" in msg and "missing" in msg


def test_error_entry_point_not_identifier(tmp_path):
    msg = _error(tmp_path, "ep.jsonl", _lines(_with(entry_point="add-two")))
    assert "ep.jsonl:1:" in msg and "field 'entry_point'" in msg and "identifier" in msg


def test_error_tests_without_check(tmp_path):
    msg = _error(
        tmp_path, "t.jsonl", _lines(_with(id="a"), _with(id="b", tests="def test(c):\n    assert c(1, 2) == 3\n"))
    )
    assert "t.jsonl:2:" in msg and "field 'tests'" in msg and "check" in msg


def test_error_tests_syntax(tmp_path):
    msg = _error(tmp_path, "s.jsonl", _lines(_with(tests="def check(candidate)\n    pass\n")))
    assert "s.jsonl:1:" in msg and "field 'tests'" in msg and "syntax" in msg


def test_error_solution_syntax_and_prompt_syntax(tmp_path):
    msg = _error(tmp_path, "r.jsonl", _lines(_with(reference_solution="def add(a, b)\n  return 1\n")))
    assert "r.jsonl:1:" in msg and "field 'reference_solution'" in msg
    msg = _error(
        tmp_path, "c.jsonl", _lines({k: v for k, v in HE_STYLE.items()} | {"canonical_solution": "    return (\n"})
    )
    assert "c.jsonl:1:" in msg and "field 'canonical_solution'" in msg
    msg = _error(tmp_path, "pr.jsonl", _lines(_with(prompt="def add(a, b:\n")))
    assert "pr.jsonl:1:" in msg and "field 'prompt'" in msg


def test_error_duplicate_id_names_both_lines(tmp_path):
    msg = _error(tmp_path, "dup.jsonl", _lines(_with(id="x"), _with(id="y"), "", _with(id="x")))
    assert "dup.jsonl:4:" in msg and "dup.jsonl:1" in msg and "duplicate" in msg
    assert "field 'id'" in msg


def test_error_json_names_index(tmp_path):
    msg = _error(tmp_path, "p.json", json.dumps([_with(id="a"), _with(id="b", tests=None)]))
    assert "p.json:[1]:" in msg and "field 'tests'" in msg and "missing" in msg
    msg = _error(tmp_path, "q.json", '[\n  {"id": "a",}\n]')
    assert "q.json:2:" in msg and "invalid JSON" in msg
    msg = _error(tmp_path, "r.json", json.dumps({"id": "a"}))
    assert "r.json" in msg and "list" in msg


def test_error_wrong_type_and_non_object(tmp_path):
    msg = _error(tmp_path, "ty.jsonl", _lines(_with(prompt=5)))
    assert "ty.jsonl:1:" in msg and "field 'prompt'" in msg
    msg = _error(tmp_path, "arr.jsonl", _lines(_with(id="a"), "[1, 2]"))
    assert "arr.jsonl:2:" in msg


def test_error_unsupported_extension(tmp_path):
    msg = _error(tmp_path, "p.txt", "{}")
    assert "p.txt" in msg


# ------------------------------------------------------------------ selection


def test_select_filters():
    easy = select(SAMPLE, difficulties=["easy"])
    assert easy and all(p.difficulty == "easy" for p in easy)
    sm = select(SAMPLE, categories=["strings", "math"], difficulties="medium")
    assert sm and all(p.category in {"strings", "math"} and p.difficulty == "medium" for p in sm)
    one = select(SAMPLE, ids=["sample/edit_distance"])
    assert [p.id for p in one] == ["sample/edit_distance"]
    assert select(SAMPLE, limit=3) == SAMPLE[:3]
    assert select(SAMPLE) == SAMPLE
    assert select(SAMPLE, limit=0) == []


def test_select_unknown_names_list_available():
    with pytest.raises(ValueError) as ei:
        select(SAMPLE, categories=["strings", "geometry"])
    assert "geometry" in str(ei.value) and "algorithms" in str(ei.value)
    with pytest.raises(ValueError) as ei:
        select(SAMPLE, difficulties=["insane"])
    assert "insane" in str(ei.value) and "medium" in str(ei.value)
    with pytest.raises(ValueError):
        select(SAMPLE, ids=["sample/nope"])


def test_select_seeded_shuffle():
    a = select(SAMPLE, shuffle=True, seed=1)
    b = select(SAMPLE, shuffle=True, seed=1)
    c = select(SAMPLE, shuffle=True, seed=2)
    assert [p.id for p in a] == [p.id for p in b]
    assert [p.id for p in a] != [p.id for p in c]
    assert sorted(p.id for p in a) == sorted(p.id for p in SAMPLE)
    lim = select(SAMPLE, shuffle=True, seed=1, limit=4)
    assert lim == a[:4]


def test_load_problems_listconfig_and_errors():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"categories": ["lists", "dicts"], "difficulties": ["easy", "hard"]})
    probs = load_problems(
        "sample", categories=cfg.categories, difficulties=cfg.difficulties, limit=10, shuffle=True, seed=3
    )
    assert probs and all(p.category in {"lists", "dicts"} for p in probs)
    with pytest.raises(ValueError):
        load_problems("file")
    with pytest.raises(ValueError):
        load_problems("bogus")


def test_load_problems_hydra_instantiate():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {"_target_": "deepcoder.problems.load_problems", "source": "sample", "difficulties": ["hard"], "limit": 2}
    )
    probs = instantiate(cfg)
    assert len(probs) == 2 and all(p.difficulty == "hard" for p in probs)


# ------------------------------------------------------------------ stats / CLI


def test_stats_counts():
    st = stats(SAMPLE)
    assert st["count"] == len(SAMPLE)
    assert sum(st["by_category"].values()) == len(SAMPLE)
    assert sum(st["by_difficulty"].values()) == len(SAMPLE)
    assert st["by_source"] == {"sample": len(SAMPLE)}
    assert st["with_reference"] == len(SAMPLE)
    assert st["by_category"]["dicts"] == sum(p.category == "dicts" for p in SAMPLE)
    assert st["mean_prompt_chars"] == pytest.approx(sum(len(p.prompt) for p in SAMPLE) / len(SAMPLE))
    empty = stats([])
    assert empty["count"] == 0 and empty["mean_prompt_chars"] == 0.0


def test_format_stats_and_cli(capsys, tmp_path):
    from rich.console import Console

    console = Console(record=True, width=100)
    console.print(format_stats(stats(SAMPLE)))
    text = console.export_text()
    assert "algorithms" in text and str(len(SAMPLE)) in text
    assert main(["stats"]) == 0
    assert "strings" in capsys.readouterr().out
    f = _write_jsonl(tmp_path / "u.jsonl", [OURS])
    assert main(["stats", str(f)]) == 0
    assert "math" in capsys.readouterr().out
    bad = _write_jsonl(tmp_path / "bad.jsonl", ['{"id": 1'])
    assert main(["stats", str(bad)]) == 1
    assert "bad.jsonl:1" in capsys.readouterr().out
