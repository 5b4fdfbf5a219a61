"""Sandbox executor: ordinary programs must work, hostile ones must fail cleanly."""

from __future__ import annotations

import builtins
import collections
import gc
import json
import math
import os
import random
import sys
import tempfile
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from deepcoder.tools import ExecutionResult, PythonExecutor, PythonTool, ToolResult


@pytest.fixture(scope="module")
def executor():
    with PythonExecutor(timeout_s=5.0, max_output_chars=2000) as ex:
        yield ex


def run(executor, code, **kwargs) -> ExecutionResult:
    return executor.run(textwrap.dedent(code), **kwargs)


# --- usability ------------------------------------------------------------------------

USABLE = {
    "print_order": ("print('a'); print('b', 1, sep='-'); print('c', end='!')", "a\nb-1\nc!"),
    "builtins": (
        "xs=[3,1,2]\nprint(sorted(xs), list(enumerate('ab')), list(zip(xs, 'abc')), sum(xs), min(xs),"
        " max(xs), list(map(str, xs)), list(filter(None, [0, 1])), any(xs), all(xs),"
        " dict(a=1), set([1]), tuple(xs), list(range(3)), isinstance(1, int), len(xs), abs(-2),"
        " round(2.567, 2), list(reversed(xs)), str(1), int('4'), float('1.5'), bool(0), chr(97),"
        " ord('a'), divmod(7, 2), pow(2, 10, 1000), hash(1) == hash(1), next(iter(xs)), hex(255), bin(5))",
        "[1, 2, 3] [(0, 'a'), (1, 'b')] [(3, 'a'), (1, 'b'), (2, 'c')] 6 1 3 ['3', '1', '2'] [1] True True"
        " {'a': 1} {1} (3, 1, 2) [0, 1, 2] True 3 2 2.57 [2, 1, 3] 1 4 1.5 False a 97 (3, 1) 24 True 3"
        " 0xff 0b101",
    ),
    "aug_item": (
        """
        from collections import Counter, defaultdict
        counts = {}
        for k in "abca":
            counts[k] = counts.get(k, 0)
            counts[k] += 1
        grid = [[0] * 2 for _ in range(2)]
        grid[1][0] -= 3
        d = defaultdict(list)
        d["x"] += [1]
        c = Counter("aab")
        c["b"] *= 10
        print(counts, grid, dict(d), c["b"])
        """,
        "{'a': 2, 'b': 1, 'c': 1} [[0, 0], [-3, 0]] {'x': [1]} 10",
    ),
    "class_attrs": (
        """
        class Acc:
            total = 0
            def __init__(self, step):
                self.step = step
                self.n = 0
            def add(self):
                self.n += self.step
                Acc.total += 1
                return self
            def __repr__(self):
                return f"Acc({self.n})"
            def __lt__(self, other):
                return self.n < other.n
        a = Acc(2).add().add()
        print(a, Acc.total, sorted([Acc(5).add(), a]))
        """,
        "Acc(4) 2 [Acc(4), Acc(5)]",
    ),
    "inheritance_super": (
        """
        class Base:
            def __init__(self, x):
                self.x = x
        class Child(Base):
            def __init__(self, x, y):
                super().__init__(x)
                self.y = y
        class Err(ValueError):
            pass
        try:
            raise Err(Child(1, 2).x + Child(1, 2).y)
        except ValueError as e:
            print("caught", e)
        """,
        "caught 3",
    ),
    "recursion_between_functions": (
        """
        def is_even(n):
            return True if n == 0 else is_odd(n - 1)
        def is_odd(n):
            return False if n == 0 else is_even(n - 1)
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        print(is_even(10), fib(20))
        """,
        "True 6765",
    ),
    "nonlocal_closure": (
        """
        def counter():
            n = 0
            def inc():
                nonlocal n
                n += 1
                return n
            return inc
        c = counter(); c(); print(c())
        """,
        "2",
    ),
    "args_kwargs": (
        "def f(*args, **kwargs):\n    return args, sorted(kwargs.items())\nprint(f(1, *[2], a=3, **{'b': 4}))",
        "((1, 2), [('a', 3), ('b', 4)])",
    ),
    "comprehensions_generators": (
        """
        def squares(n):
            for i in range(n):
                yield i * i
        print([x for x in squares(4)], {x % 2 for x in range(5)}, {k: v for k, v in [("a", 1)]},
              sum(x for x in range(4)), [(a, b) for a, b in [(1, 2)]])
        """,
        "[0, 1, 4, 9] {0, 1} {'a': 1} 6 [(1, 2)]",
    ),
    "fstrings_and_format": (
        "x = 3.14159\nprint(f'{x:.2f} {x!r}', '{} {:>3}'.format(1, 2), '%05.1f' % x, '{a}'.format_map({'a': 1}))",
        "3.14 3.14159 1   2 003.1 1",
    ),
    "try_except_finally": (
        """
        try:
            1 / 0
        except ZeroDivisionError as e:
            print("zde", e)
        finally:
            print("done")
        """,
        "zde division by zero\ndone",
    ),
    "eval_expression": (
        "x = 4\ndef f(y):\n    return eval('y * 2')\nprint(eval('x + 1'), f(5), eval('a + 1', {'a': 1}))",
        "5 10 2",
    ),
    "imports": (
        """
        import math, re, json, heapq, bisect, itertools, functools, string, statistics, random
        from collections import deque, OrderedDict
        from collections.abc import Sequence
        from fractions import Fraction
        from decimal import Decimal
        from typing import List, Optional
        import hashlib, datetime, copy, operator, textwrap, unicodedata, array, cmath, numbers, enum, abc
        h = [5, 1, 3]; heapq.heapify(h)
        print(math.gcd(12, 18), re.findall(r"\\d+", "a1b22"), json.dumps({"a": [1]}), heapq.heappop(h),
              bisect.bisect([1, 3], 2), list(itertools.accumulate([1, 2])), functools.reduce(operator.add, [1, 2]),
              string.ascii_lowercase[:3], statistics.mean([1, 2, 3]), Fraction(1, 3) + Fraction(1, 6),
              Decimal("0.1") + Decimal("0.2"), hashlib.md5(b"x").hexdigest()[:6], isinstance([], Sequence),
              operator.attrgetter("real")(3), copy.deepcopy([[1]]), deque([1]).popleft())
        """,
        "6 ['1', '22'] {\"a\": [1]} 1 1 [1, 3] 3 abc 2 1/2 0.3 9dd4e4 True 3 [[1]] 1",
    ),
    "dataclass_enum_namedtuple": (
        """
        from dataclasses import dataclass, field
        from enum import Enum
        from typing import NamedTuple
        @dataclass(order=True)
        class P:
            x: int
            tags: list = field(default_factory=list)
        class Color(Enum):
            RED = 1
        class Pt(NamedTuple):
            a: int
            b: int = 0
        total: int = 0
        print(P(1), Color(1).name, Pt(2), total)
        """,
        "P(x=1, tags=[]) RED Pt(a=2, b=0) 0",
    ),
    "main_guard_and_lambda_sort": (
        "def main():\n    print(sorted(['bb', 'a'], key=lambda s: len(s)))\nif __name__ == '__main__':\n    main()",
        "['a', 'bb']",
    ),
}


@pytest.mark.parametrize("name", sorted(USABLE))
def test_usable_programs(executor, name):
    code, expected = USABLE[name]
    result = run(executor, code)
    assert result.error is None, result.error
    assert result.ok and result.exit_reason == "ok" and not result.timed_out
    assert result.stdout.rstrip("\n") == expected


def test_error_keeps_preceding_output(executor):
    result = run(executor, "print('before')\nx = undefined_name")
    assert result.stdout == "before\n"
    assert result.error == "NameError: name 'undefined_name' is not defined"
    assert result.exit_reason == "error" and not result.ok


def test_syntax_error_and_policy_refusal_are_distinguished(executor):
    syntax = run(executor, "def f(:\n    pass")
    assert syntax.exit_reason == "error" and syntax.error.startswith("SyntaxError:")
    policy = run(executor, "print(().__class__)")
    assert policy.exit_reason == "policy" and policy.error.startswith("PolicyError:")


def test_weird_inputs_never_raise(executor):
    for code in ["", "\x00", "\ud800", "print('é ✓')", 42]:
        result = executor.run(code)
        assert isinstance(result, ExecutionResult)
    assert executor.run("print('é ✓')").stdout == "é ✓\n"


def test_output_is_capped_with_marker():
    with PythonExecutor(max_output_chars=100) as ex:
        result = ex.run("for i in range(100000):\n    print(i)")
    assert result.ok
    assert result.stdout.endswith("\n...[output truncated at 100 chars]")
    assert len(result.stdout) < 200


def test_timeout_override_and_duration(executor):
    result = executor.run("while True:\n    pass", timeout_s=0.5)
    assert result.timed_out and result.exit_reason == "timeout"
    assert result.error == "TimeoutError: execution exceeded 0.5 s"
    assert 0.4 < result.duration_s < 3.0


def _sandbox_dirs() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("deepcoder-sandbox-")}


def test_child_environment_is_scrubbed_and_workdir_removed(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "gsk_secret_value")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    with PythonExecutor() as ex:
        assert ex.run("print(1)").stdout == "1\n"
        server = ex._server[0].proc  # forked children inherit the server's environment
        with open(f"/proc/{server.pid}/environ", "rb") as fh:
            environ = fh.read().decode()
        assert "secret" not in environ and "API_KEY" not in environ
        before = _sandbox_dirs()
        result = ex.run("import math\nprint(len('x'))")
        assert result.stdout == "1\n"
        assert _sandbox_dirs() <= before


def test_server_is_restarted_after_dying():
    with PythonExecutor(timeout_s=5.0) as ex:
        assert ex.run("print(1)").ok
        ex._server[0].proc.kill()
        ex._server[0].proc.wait()
        assert ex.run("print(2)").stdout == "2\n"  # dead between runs: transparent restart
        server = ex._server[0].proc
        threading.Timer(0.5, server.kill).start()
        mid_run = ex.run("while True:\n    pass")
        assert mid_run.exit_reason == "crash" and "server died" in mid_run.error
        assert 0.4 < mid_run.duration_s < 3.0
        assert ex.run("print(3)").stdout == "3\n"


def test_concurrent_runs_from_threads(executor):
    codes = [f"import math\nprint({i} * 2)" for i in range(16)]
    codes.append("while True:\n    pass")
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda code: executor.run(code, timeout_s=1.0), codes))
    assert [r.stdout for r in results[:-1]] == [f"{i * 2}\n" for i in range(16)]
    assert results[-1].timed_out


def test_runs_share_no_state(executor):
    seeded = run(executor, "import random\nrandom.seed(0)\nseen = 1\nprint(random.random())").stdout
    after = run(executor, "import random\nprint('seen' in dir(), random.random())").stdout
    assert after.split()[0] == "False" and after.split()[1] != seeded.strip()
    draws = {run(executor, "import random\nprint(random.random())").stdout for _ in range(3)}
    assert len(draws) == 3  # every child reseeds random, as a fresh interpreter would


# --- hostile ----------------------------------------------------------------------------

HOSTILE = {
    "dunder_bases": "print(().__class__.__bases__[0].__subclasses__())",
    "getattr_dunder": "print(getattr((), '__class__'))",
    "getattr_dunder_via_hasattr": "print(hasattr(1, '__class__') or getattr(1, '__class__'))",
    "format_attr_escape": "print('{0.__class__}'.format(1))",
    "format_map_escape": "print('{x.__class__.__base__}'.format_map({'x': 1}))",
    "string_formatter": "import string\nprint(string.Formatter().format('{0.__class__}', 1))",
    "attrgetter_escape": "import operator\nprint(operator.attrgetter('__class__')(1))",
    "methodcaller_escape": "import operator\nprint(operator.methodcaller('__subclasses__')(object))",
    "generator_frame": "def g():\n    yield 1\nprint(g().gi_frame.f_globals)",
    "generator_frame_getattr": "def g():\n    yield 1\nprint(getattr(g(), 'gi_frame'))",
    "function_globals": "def f():\n    pass\nprint(f.__globals__)",
    "json_codecs": "import json\nprint(json.codecs.open)",
    "random_os": "import random\nprint(random._os.system)",
    "typing_sys": "import typing\nprint(typing.sys.modules)",
    "type_hints_eval": "import typing\nprint(typing.get_type_hints)",
    "import_os": "import os\nprint(os.listdir('/'))",
    "import_sys": "import sys\nprint(sys.modules)",
    "import_subprocess": "import subprocess\nsubprocess.run(['ls'])",
    "import_socket": "import socket\nsocket.socket()",
    "dunder_import": "print(__import__('os'))",
    "open_read": "print(open('/etc/passwd').read())",
    "open_write": "open('pwned.txt', 'w').write('x')",
    "exec_builtin": "exec('import os')",
    "eval_escape": "print(eval('().__class__'))",
    "globals_builtin": "print(globals())",
    "env_vars": "import os\nprint(os.environ.get('GROQ_API_KEY'))",
    "fork": "import os\nos.fork()",
    "multiprocessing": "import multiprocessing\nmultiprocessing.Process(target=print).start()",
    "infinite_loop_catching_baseexception": (
        "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"
    ),
    "memory_bomb_string": "x = 'a' * (10 ** 11)",
    "memory_bomb_list": "xs = []\nwhile True:\n    xs.append([0] * 10 ** 6)",
    "system_exit": "raise SystemExit(0)",
    "keyboard_interrupt": "raise KeyboardInterrupt",
    "set_recursion_limit": "import sys\nsys.setrecursionlimit(10 ** 9)",
    "deep_recursion": "def f(n):\n    return f(n + 1)\nf(0)",
    "modify_host_module": "import math\nmath.pi = 3",
    "setattr_host_module": "import math\nsetattr(math, 'pi', 3)",
    "modify_library_class": "import collections\ncollections.Counter.most_common = None",
    "make_dataclass": "import dataclasses\ndataclasses.make_dataclass('X', [('__class__', int)])",
    "relative_import": "from . import executor",
}


@dataclass(frozen=True)
class HostState:
    """What a healthy test process keeps unchanged across the hostile suite."""

    rss_mb: float
    modules: frozenset[str]
    watched: dict[str, tuple[int, dict[str, int]]]  # module -> (id, {attribute: id(value)})
    children: frozenset[int]
    sandbox_processes: frozenset[int]
    files: frozenset[str]
    open_fds: int

    @classmethod
    def capture(cls) -> HostState:
        with open("/proc/self/status") as fh:
            rss_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        watched = {
            name: (id(module), {key: id(value) for key, value in vars(module).items()})
            for name, module in (
                ("os", os),
                ("json", json),
                ("random", random),
                ("math", math),
                ("collections", collections),
                ("builtins", builtins),
            )
        }
        files = {f"cwd/{name}" for name in os.listdir(".")}
        files |= {f"tmp/{name}" for name in os.listdir(tempfile.gettempdir())}
        # The system /tmp is shared with other processes: only look for what a hostile run would write.
        files |= {f"/tmp/{name}" for name in os.listdir("/tmp") if name.startswith("pwned")}
        children, sandbox = set(), set()
        owner = f"owner={os.getpid()}".encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile
            if ppid == os.getpid():
                children.add(int(pid))
            if owner in argv:  # our fork servers and their children, even if orphaned
                sandbox.add(int(pid))
        return cls(
            rss_kb / 1024,
            frozenset(sys.modules),
            watched,
            frozenset(children),
            frozenset(sandbox),
            frozenset(files),
            len(os.listdir("/proc/self/fd")),
        )


@pytest.fixture(scope="module")
def host_before_hostile(tmp_path_factory):
    """Snapshot of this process before the hostile suite, run from an empty cwd and tempdir."""
    private = tmp_path_factory.mktemp("hostile")
    (private / "cwd").mkdir()
    (private / "tmp").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(private / "cwd")
        patch.setattr(tempfile, "tempdir", str(private / "tmp"))
        gc.collect()
        yield HostState.capture()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_programs_fail_cleanly(name, host_before_hostile):
    with PythonExecutor(timeout_s=1.0, memory_mb=512) as ex:
        result = ex.run(HOSTILE[name])
        assert not result.ok, result.stdout
        assert result.exit_reason in {"error", "policy", "timeout", "crash"}
        assert "secret" not in result.stdout
        follow_up = ex.run("import math\nprint(math.pi, sorted({3, 1}))")
    assert follow_up.ok and follow_up.stdout == f"{math.pi} [1, 3]\n"


def test_host_is_healthy_after_hostile_suite(host_before_hostile):
    before = host_before_hostile
    gc.collect()
    after = HostState.capture()
    assert after.rss_mb - before.rss_mb < 200
    assert after.modules == before.modules
    assert after.watched == before.watched
    assert after.open_fds <= before.open_fds
    assert after.children <= before.children  # only the module executor's server, if any
    assert after.sandbox_processes <= before.sandbox_processes
    assert after.files == before.files and not any(f.startswith(("cwd/", "tmp/")) for f in after.files)


def test_infinite_loop_is_killed_from_parent():
    with PythonExecutor(timeout_s=1.0) as ex:
        result = ex.run(HOSTILE["infinite_loop_catching_baseexception"])
    assert result.timed_out and result.exit_reason == "timeout"


def test_host_module_is_unchanged_after_modification_attempt(executor):
    before = math.pi
    assert not run(executor, "import math\nmath.pi = 3").ok
    assert math.pi == before
    assert run(executor, "import math\nprint(math.pi)").stdout == f"{before}\n"


def test_system_exit_and_keyboard_interrupt_are_errors(executor):
    assert run(executor, "raise SystemExit(3)").error == "SystemExit: 3"
    assert run(executor, "raise KeyboardInterrupt").error == "KeyboardInterrupt"


def test_memory_bomb_is_an_error():
    with PythonExecutor(memory_mb=256) as ex:
        result = ex.run("x = 'a' * (10 ** 10)")
    assert result.exit_reason in {"error", "crash"} and "MemoryError" in result.error


# --- agent-facing wrapper ------------------------------------------------------------------


def test_python_tool_observation_text(executor):
    tool = PythonTool(executor)
    assert tool.name == "python" and "math" in tool.description
    assert tool("print('hi')") == ToolResult(text="hi\n", ok=True)
    assert tool("x = 1") == ToolResult(text="(no output)", ok=True)
    failed = tool("print('partial', end='')\nraise ValueError('bad')")
    assert failed == ToolResult(text="partial\nError: ValueError: bad", ok=False)
    assert tool("1/0").text == "Error: ZeroDivisionError: division by zero"
    timed_out = PythonTool(PythonExecutor(timeout_s=0.5))("while True:\n    pass")
    assert timed_out.timed_out and timed_out.text == "Error: TimeoutError: execution exceeded 0.5 s"
