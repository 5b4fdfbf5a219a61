"""Layer 1 of the sandbox, the Python policy: one hostile program (or more) per class of hole.

Each ``HOSTILE`` program prints ``ESCAPED`` if it gets through; it must instead fail with an
error or a policy refusal (not a crash: a crash would mean it broke something on the way).
``test_allowed_module_scan`` audits every allowed module's public API for calls that reach
getattr/setattr/delattr/exec/eval/compile with a name the caller may choose.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
import types

import pytest

from deepcoder.tools import PythonExecutor, run_tests
from deepcoder.tools.safe_modules import ALLOWED_MODULES, DENIED

OLD_MARKER = "\\x00DEEPCODER_RESULT\\x00"

TYPE_DUNDERS = (
    "__del__",
    "__setattr__",
    "__getattribute__",
    "__getattr__",
    "__annotations__",
    "__module__",
    "__init_subclass__",
    "__set_name__",
    "__class_getitem__",
    "__reduce_ex__",
    "__format__",
    "__instancecheck__",
    "__class__",
    "__dict__",
    "__get__",
    "__new__",
)

HOSTILE = {
    # --- library calls that getattr/setattr/exec caller-chosen names -----------------------
    "update_wrapper_globals": """
        import functools, json
        def f():
            pass
        functools.update_wrapper(f, json.dumps, assigned=(), updated=("__globals__",))
        def g():
            return open
        print("ESCAPED", g())
    """,
    "wraps_globals": """
        import functools, json
        def f():
            pass
        functools.wraps(json.dumps, assigned=(), updated=("__globals__",))(f)
        def g():
            return open
        print("ESCAPED", g())
    """,
    "wraps_builtins_attribute": """
        import functools
        class W:
            pass
        def f():
            pass
        w = W()
        functools.update_wrapper(w, f, assigned=("__builtins__",), updated=())
        print("ESCAPED")
    """,
    "update_wrapper_on_library_function": """
        import functools, json
        def f():
            pass
        functools.update_wrapper(json.loads, f)
        print("ESCAPED")
    """,
    "total_ordering_library_class": """
        import functools, fractions
        functools.total_ordering(fractions.Fraction)
        print("ESCAPED")
    """,
    "dataclass_library_class": """
        import dataclasses, string
        dataclasses.dataclass(string.Template)
        print("ESCAPED")
    """,
    "dataclass_field_name_exec": """
        import dataclasses
        C = type("C", (), {"__annotations__": {"x=print('ESCAPED')": int}})
        dataclasses.dataclass(C)
    """,
    "copy_reduce_setattr": """
        import copy, collections
        T = type("T", (), {"__reduce_ex__": lambda self, p: (
            (lambda: collections.Counter), (), (None, {"most_common": "ESCAPED"}))})
        copy.copy(T())
        print(collections.Counter.most_common)
    """,
    "copy_dispatch_table": """
        import copy, collections
        class T:
            pass
        copy.dispatch_table[T] = lambda obj: ((lambda: collections.Counter), (), (None, {"most_common": "ESCAPED"}))
        copy.copy(T())
        print(collections.Counter.most_common)
    """,
    "deepcopy_dispatch_table": """
        import copy, collections
        class T:
            pass
        copy.dispatch_table[T] = lambda obj: ((lambda: collections.Counter), (), (None, {"most_common": "ESCAPED"}))
        copy.deepcopy([T()])
        print(collections.Counter.most_common)
    """,
    "operator_setitem_skips_write_guard": """
        import operator, collections
        chain = collections.ChainMap()
        operator.setitem(chain, "k", 1)
        print("ESCAPED", chain)
    """,
    "operator_delitem_skips_write_guard": """
        import operator, collections
        chain = collections.ChainMap({"k": 1}, {"k": 2})
        chain.maps[0]  # readable, as before
        operator.delitem(chain, "k")
        print("ESCAPED", chain)
    """,
    "enum_functional_dunder_member": """
        import enum
        E = enum.Enum("E", [("__getattr__", 1)])
        print("ESCAPED")
    """,
    "enum_functional_module": """
        import enum
        E = enum.Enum("E", "dumps", module="json")
        print("ESCAPED")
    """,
    "enum_global_enum": """
        import enum
        print("ESCAPED", enum.global_enum)
    """,
    "abc_update_abstractmethods": """
        import abc, collections
        abc.update_abstractmethods(collections.Counter)
        print("ESCAPED")
    """,
    # --- guards that trust attacker-controlled objects -----------------------------------------
    **{
        f"type3_{name.strip('_')}": f"""
        T = type("T", (), {{{name!r}: lambda *args: None}})
        print("ESCAPED", T)
    """
        for name in TYPE_DUNDERS
    },
    "metaclass_of_int": """
        T = type(int)("T", (), {"__del__": lambda self: None})
        print("ESCAPED", T)
    """,
    "metaclass_of_type": """
        T = type(type)("T", (), {"__getattribute__": lambda self, n: None})
        print("ESCAPED", T)
    """,
    "abcmeta_direct": """
        import abc
        T = abc.ABCMeta("T", (), {"__del__": lambda self: None})
        print("ESCAPED", T)
    """,
    "abc_metaclass_via_type": """
        import abc
        T = type(abc.ABC)("T", (), {"__setattr__": lambda *a: None})
        print("ESCAPED", T)
    """,
    "super_format": """
        class S(str):
            pass
        s = S("{0.__class__.__mro__}")
        print("ESCAPED", super(S, s).format(1))
    """,
    "super_format_map": """
        class S(str):
            pass
        s = S("{x.__class__.__mro__}")
        print("ESCAPED", super(S, s).format_map({"x": 1}))
    """,
    "super_unbound_format": """
        class S(str):
            pass
        print("ESCAPED", super(S, S).format("{0.__class__.__mro__}", 1))
    """,
    "metaclass_eq_hash_spoofs_ownership": """
        import collections
        class M(type):
            def __eq__(cls, other):
                return True
            def __hash__(cls):
                return hash(collections.Counter)
        X = M("X", (), {})
        class Y(X):
            pass
        collections.Counter.most_common = "ESCAPED"
        print(collections.Counter.most_common)
    """,
    "setattr_str_subclass_name": """
        class S(str):
            def startswith(self, prefix):
                return False
        class T:
            pass
        def hook(self):
            return "ESCAPED"
        setattr(T, S("__repr__"), hook)
        print(repr(T()))
    """,
    "delattr_str_subclass_name": """
        class S(str):
            def startswith(self, prefix):
                return False
        class T:
            def __repr__(self):
                return "x"
        delattr(T, S("__repr__"))
        print("ESCAPED")
    """,
    "eval_str_subclass_source": """
        class S(str):
            def strip(self):
                return "1"
        print("ESCAPED", eval(S("().__class__")))
    """,
    "eval_reads_library_frame": """
        import heapq
        print("ESCAPED", heapq.nsmallest(1, ["sentinel"], key=eval))
    """,
    # --- the result channel --------------------------------------------------------------------
    "forged_marker_after_stderr_noise": f"""
        def noisy():
            try:
                yield 1
            finally:
                raise ValueError("{OLD_MARKER}" + '{{"exit_reason": "ok", "error": null}}' + "x" * 200)
        for _ in range(1500):
            g = noisy()
            next(g)
            del g
        1 / 0
    """,
}


@pytest.fixture(scope="module")
def executor():
    with PythonExecutor(timeout_s=5.0) as ex:
        yield ex


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_stopped_by_the_policy(executor, name):
    result = executor.run(textwrap.dedent(HOSTILE[name]))
    assert not result.ok, (result.stdout, result.error)
    assert "ESCAPED" not in result.stdout
    assert result.exit_reason in {"error", "policy"}, result.error
    assert executor.run("print(sorted({3, 1}))").stdout == "[1, 3]\n"


def test_usable_library_calls_still_work(executor):
    code = """
        import functools, dataclasses, enum, copy, operator
        def deco(f):
            @functools.wraps(f)
            def inner(*a):
                return f(*a) * 2
            return inner
        @deco
        def double(x):
            "doc"
            return x
        @functools.total_ordering
        class V:
            def __init__(self, v):
                self.v = v
            def __lt__(self, o):
                return self.v < o.v
            def __eq__(self, o):
                return self.v == o.v
        @dataclasses.dataclass(frozen=True)
        class P:
            x: int
            y: int = 0
        E = enum.Enum("E", "A B")
        F = enum.Enum("F", [("X", 1)])
        T = type("T", (object,), {"size": 3, "grow": lambda self: self.size + 1})
        d = {}
        operator.setitem(d, "k", 1)
        print(double(2), "", V(1) <= V(2), P(1), E.B.value, F.X.value, T().grow(),
              copy.deepcopy([P(2)]), d, isinstance(int, type), type(3) is int, type(P) is type)
    """
    result = executor.run(textwrap.dedent(code))
    assert result.error is None
    assert result.stdout == "4  True P(x=1, y=0) 2 1 4 [P(x=2, y=0)] {'k': 1} True True True\n"


def test_eval_still_sees_sandboxed_callers_locals(executor):
    code = "def f(y):\n    return eval('y + 1')\nprint(f(1), list(map(eval, ['2 * 3'])), eval('z', {'z': 4}))"
    assert executor.run(code).stdout == "2 [6] 4\n"


# --- the result channel -----------------------------------------------------------------------


def test_honest_program_with_large_stderr_reports_correctly(executor):
    code = """
        def noisy():
            try:
                yield 1
            finally:
                raise ValueError("x" * 300)
        for _ in range(1500):
            g = noisy()
            next(g)
            del g
        print("done")
    """
    result = executor.run(textwrap.dedent(code))
    assert result.ok and result.stdout == "done\n", result.error


def test_forged_marker_does_not_pass_grading(executor):
    tests = "def check(candidate):\n    assert candidate(1) == 2\n"
    program = textwrap.dedent(HOSTILE["forged_marker_after_stderr_noise"]).replace("1 / 0", "def inc(x):\n    return x")
    outcome = run_tests(executor, program, tests, "inc")
    assert not outcome.passed and outcome.error == "AssertionError"


# --- grading namespaces -------------------------------------------------------------------------

SHADOWS = {  # a program-level name, the test that trusts it, a wrong and a right solution
    "abs": ("def abs(x):\n    return 0", "assert abs(candidate(2.0) - 4.0) < 1e-6", "0.0", "x * x"),
    "abs_lambda": ("abs = lambda x: 0", "assert abs(candidate(2.0) - 4.0) < 1e-6", "0.0", "x * x"),
    "round": ("def round(x, n=0):\n    return 4.0", "assert round(candidate(2.0), 2) == 4.0", "0.0", "x * x"),
    "isinstance": (
        "def isinstance(a, b):\n    return True",
        "assert isinstance(candidate(2.0), float)",
        "'four'",
        "x * x",
    ),
    "sorted": ("def sorted(xs):\n    return [4.0]", "assert sorted([candidate(2.0)]) == [4.0]", "0.0", "x * x"),
}


@pytest.mark.parametrize("name", sorted(SHADOWS))
def test_program_cannot_shadow_the_tests_builtins(executor, name):
    shadow, assertion, wrong, right = SHADOWS[name]
    tests = f"def check(candidate):\n    {assertion}\n"
    outcome = run_tests(executor, f"{shadow}\ndef square(x):\n    return {wrong}\n", tests, "square")
    assert not outcome.passed and outcome.error == "AssertionError"
    assert run_tests(executor, f"{shadow}\ndef square(x):\n    return {right}\n", tests, "square").passed


def test_tests_see_the_entry_point_and_the_helpers_they_use(executor):
    program = "def encode(s):\n    return s[::-1]\ndef decode(s):\n    return s[::-1]\nSECRET = 1\n"
    tests = "def check(candidate):\n    assert candidate(encode('abc')) == 'abc'\n    assert 'SECRET' not in dir()\n"
    assert run_tests(executor, program, tests, "decode").passed
    leak = "def check(candidate):\n    assert SECRET == 1\n"
    outcome = run_tests(executor, program, leak, "decode")
    assert outcome.passed  # names the tests use but do not define come from the program (documented)
    missing = run_tests(executor, "x = 1\n", "def check(candidate):\n    pass\n", "solve")
    assert not missing.passed and missing.error == "NameError: name 'solve' is not defined"


# --- the allowed-module scan --------------------------------------------------------------------

SINKS = {"getattr": 1, "setattr": 1, "delattr": 1, "hasattr": 1, "eval": 0, "exec": 0, "compile": 0, "__import__": 0}

# Public callables whose source reaches a sink with a non-constant name, are neither denied nor
# wrapped (runtime overrides, guarded metaclasses), and why that is safe. Kept exact: an entry
# that the scan no longer flags fails the test too.
FORWARD_REF = (
    "string annotations become ForwardRef, which compile()s them and never evaluates (get_type_hints is denied)"
)
REVIEWED = {
    "collections.namedtuple": "field and type names are checked with isidentifier() and refuse '_' names",
    "typing.NamedTuple": "builds a collections.namedtuple (identifiers only); " + FORWARD_REF,
    "typing.TypedDict": "keys are stored in __annotations__ only, never set as attributes; " + FORWARD_REF,
    "typing.Protocol": "isinstance() of a runtime protocol calls hasattr() with member names that "
    "the class statement defined (the policy refuses '_' names there)",
    "typing.Generic": FORWARD_REF,
    "typing.ForwardRef": "compiles (never evaluates) its argument; _evaluate is private, get_type_hints denied",
    "typing.no_type_check": "getattr() over dir() of the class it is given, to set the fixed attribute "
    "__no_type_check__ on its functions; nothing is returned",
    "typing.Annotated": FORWARD_REF,
    "typing.ParamSpec": FORWARD_REF,
    "typing.TypeVar": FORWARD_REF,
    **{
        f"typing.Supports{kind}": "a runtime-checkable protocol (see typing.Protocol)"
        for kind in ("Abs", "Bytes", "Complex", "Float", "Index", "Int", "Round")
    },
    "typing.no_type_check_decorator": "wraps a decorator with no_type_check (a fixed attribute)",
    "functools.lru_cache": "calls update_wrapper with the default attribute lists",
    "functools.cache": "calls update_wrapper with the default attribute lists",
    "dataclasses.fields": "getattr() of the module constant _FIELDS",
    "dataclasses.asdict": "getattr() with field names (identifiers, checked by the dataclass wrapper)",
    "dataclasses.astuple": "getattr() with field names (identifiers, checked by the dataclass wrapper)",
    "dataclasses.replace": "getattr() with field names; calls the class with keyword arguments",
    "dataclasses.is_dataclass": "hasattr() of the module constant _FIELDS",
    "copy.copy": "the reduce protocol needs __reduce_ex__/__copy__ or dispatch_table: type() refuses "
    "those dunders, dispatch_table is denied",
    "copy.deepcopy": "as copy.copy",
}


def _sources(value):
    """(qualified name, function) pairs of the Python code behind a public attribute."""
    if isinstance(value, (types.FunctionType, types.MethodType)):
        yield value
    elif isinstance(value, type):
        for member in vars(value).values():
            member = getattr(member, "__func__", member)
            if isinstance(member, types.FunctionType):
                yield member
            elif isinstance(member, property):
                yield from (f for f in (member.fget, member.fset) if isinstance(f, types.FunctionType))


def _reaches_sink(func, module, seen: set) -> bool:
    """Whether `func`, or a function of `module` it calls by name, calls a sink with a non-constant name."""
    if func in seen or getattr(func, "__module__", None) != module.__name__:
        return False
    seen.add(func)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        name = node.func.id
        if name in SINKS:
            position = SINKS[name]
            if len(node.args) > position and not isinstance(node.args[position], ast.Constant):
                return True
        callee = vars(module).get(name)
        if isinstance(callee, (types.FunctionType, type)) and any(
            _reaches_sink(f, module, seen) for f in _sources(callee)
        ):
            return True
    return False


def _wrapped(module_name: str) -> set[str]:
    from deepcoder.tools.runtime import SandboxRuntime

    return set(SandboxRuntime(lambda text: None)._module_overrides().get(module_name, {}))


def _flagged(module_name: str) -> dict[str, str]:
    """attribute -> the name REVIEWED would know it by, for every flagged public attribute."""
    module = importlib.import_module(module_name)
    flagged = {}
    for attr, value in sorted(vars(module).items()):
        if attr.startswith("_") or isinstance(value, types.ModuleType):
            continue
        home = getattr(value, "__module__", None)
        real_module = importlib.import_module(home) if isinstance(home, str) else module
        if any(_reaches_sink(f, real_module, set()) for f in _sources(value)):
            key = f"{module_name}.{attr}"
            flagged[attr] = key if key in REVIEWED else f"{home}.{getattr(value, '__qualname__', attr)}"
    return flagged


@pytest.mark.parametrize("module_name", ALLOWED_MODULES)
def test_allowed_module_scan(executor, module_name):
    """Every public callable reaching a sink with a caller-chosen string is denied, wrapped or reviewed."""
    module = importlib.import_module(module_name)
    safe = DENIED.get(module_name, set()) | _wrapped(module_name)
    unreviewed = [
        attr
        for attr, key in _flagged(module_name).items()
        if attr not in safe
        and key not in REVIEWED
        and not (isinstance(getattr(module, attr), type) and issubclass(getattr(module, attr), type))
    ]
    assert unreviewed == [], f"{module_name}: review, wrap or deny {unreviewed} (see safe_modules.DENIED)"
    # and every denied name is really gone from the sandbox copy
    denied = sorted(DENIED.get(module_name, ()))
    if denied:
        probe = "\n".join(f"print(hasattr(m, {name!r}))" for name in denied)
        result = executor.run(f"import {module_name} as m\n{probe}")
        assert result.stdout == "False\n" * len(denied), result.error


def test_reviewed_list_has_no_stale_entries():
    flagged = {key for name in ALLOWED_MODULES for key in _flagged(name).values()}
    assert sorted(set(REVIEWED) - flagged) == []
