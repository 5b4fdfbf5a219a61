"""Forked-child side of the sandbox: one child runs exactly one program, then exits.

``fork_server.py`` forks a child per run and calls ``run_child``, which
  1. with ``namespaces`` isolation enters the run's jail (``isolation.enter_run_jail``: pid 1
     of its own PID namespace, own mount namespace and /proc, an empty tmpfs /tmp as cwd, an
     unprivileged uid, no_new_privs, seccomp); with ``process`` isolation it only becomes
     leader of a new session/process group (the executor kills the group at the deadline);
  2. moves stdin/stdout/stderr onto the run's pipes, the result pipe onto fd 3, and closes
     every other fd (the server's control socket, other runs' pipes, the status socket);
  3. reads one JSON request ``{"code", "timeout_s", "max_output_chars", "workdir", "secret",
     ["tests", "entry_point"]}`` from stdin and applies the rlimits;
  4. streams the program's printed output to stdout (at most max_output_chars + 1
     characters, so the parent can tell that it was cut);
  5. writes ``<secret>\n`` + JSON ``{"exit_reason", "error"}`` to the result pipe, and only
     there, then exits 0. The executor believes a result only if it carries the run's secret
     and the child's exit status is 0; stderr is never parsed.
With ``tests`` (grading) the program runs in one namespace and the tests in another, with
fresh builtins, seeing only the entry point and the program's names they use but do not
define (see ``grading.py``). It never returns into the server loop. Every child starts from
the server's pristine, pre-loaded memory image, so nothing leaks from one run to the next.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import resource
import signal
import sys
import traceback

from deepcoder.tools.policy import PolicyError, compile_sandboxed
from deepcoder.tools.runtime import SandboxRuntime

MAX_ERROR_CHARS = 2000
SETUP_FAILED_EXIT = 70


class OutputSink:
    """Writes printed text to fd 1 unbuffered, up to a character budget."""

    def __init__(self):
        self.remaining = 0

    def __call__(self, text: str) -> None:
        if self.remaining <= 0 or not text:
            return
        chunk = text[: self.remaining]
        self.remaining -= len(chunk)
        write_all(1, chunk.encode("utf-8", "replace"))


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def apply_limits(memory_mb: int, timeout_s: float, nproc: int = 0) -> None:
    """Address space, CPU time, no new processes, no file writes, few fds, no core dumps."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes fail with an error instead
    cpu_s = math.ceil(timeout_s) + 1
    limit = memory_mb * 1024 * 1024
    for which, soft, hard in (
        (resource.RLIMIT_AS, limit, limit),
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_FSIZE, 0, 0),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NOFILE, 16, 16),
    ):
        resource.setrlimit(which, (soft, hard))


def format_error(exc: BaseException) -> str:
    message = str(exc) if not isinstance(exc, (SyntaxError, MemoryError)) else ""
    if isinstance(exc, SyntaxError):
        message = f"{exc.msg} (line {exc.lineno})"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def execute(runtime: SandboxRuntime, code: str) -> dict:
    """Compile and run `code`; every outcome, including SystemExit, becomes a dict."""
    try:
        compiled = compile_sandboxed(code)
    except PolicyError as exc:
        return {"exit_reason": "policy", "error": f"PolicyError: {exc}"[:MAX_ERROR_CHARS]}
    except (SyntaxError, ValueError, TypeError) as exc:
        return {"exit_reason": "error", "error": format_error(exc)}
    try:
        exec(compiled, runtime.namespace)
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        return _error_result(runtime, exc)
    return {"exit_reason": "ok", "error": None}


def execute_graded(runtime: SandboxRuntime, program: str, tests: str, entry_point: str) -> dict:
    """Run `program`, then `tests` and ``check(<entry point>)`` in a separate, fresh namespace."""
    try:
        compiled = [compile_sandboxed(program), compile_sandboxed(tests), compile_sandboxed("check(candidate__)")]
    except PolicyError as exc:
        return {"exit_reason": "policy", "error": f"PolicyError: {exc}"[:MAX_ERROR_CHARS]}
    except (SyntaxError, ValueError, TypeError) as exc:
        return {"exit_reason": "error", "error": format_error(exc)}
    program_ns = runtime.namespace
    try:
        exec(compiled[0], program_ns)
        if entry_point not in program_ns:
            raise NameError(f"name '{entry_point}' is not defined")
        tests_ns = runtime.new_namespace()
        for name in names_used_but_not_defined(tests, tests_ns["__builtins__"]):
            if name in program_ns:
                tests_ns[name] = program_ns[name]
        tests_ns[entry_point] = program_ns[entry_point]
        exec(compiled[1], tests_ns)
        tests_ns["candidate__"] = program_ns[entry_point]
        exec(compiled[2], tests_ns)
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        return _error_result(runtime, exc)
    return {"exit_reason": "ok", "error": None}


def names_used_but_not_defined(source: str, builtin_names) -> list[str]:
    """Global names `source` reads but never binds, other than builtins and `_` names."""
    tree = ast.parse(source)
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).partition(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return sorted(n for n in loaded - bound if n not in builtin_names and not n.startswith("_"))


def _error_result(runtime: SandboxRuntime, exc: BaseException) -> dict:
    if isinstance(exc, MemoryError):
        runtime.namespace.clear()  # free the program's data before formatting
    try:
        return {"exit_reason": "error", "error": format_error(exc)}
    except BaseException:  # noqa: BLE001 - e.g. a user __str__ that raises
        return {"exit_reason": "error", "error": type(exc).__name__}


def execute_unrestricted(code: str) -> dict:
    """Test hook only (``hooks=test``): plain ``exec`` with real builtins, as if layer 1 were broken."""
    try:
        exec(compile(code, "<unrestricted>", "exec"), {"__name__": "__main__"})
        result = {"exit_reason": "ok", "error": None}
    except BaseException as exc:  # noqa: BLE001
        result = {"exit_reason": "error", "error": f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]}
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # a closed or broken stream: the result still goes out
            stream.flush()
    return result


RESULT_FD = 3


def run_child(
    runtime: SandboxRuntime,
    sink: OutputSink,
    memory_mb: int,
    fds: list[int],
    *,
    jail: bool,
    unprivileged_uid: bool,
    test_hooks: bool,
) -> None:
    """Body of a freshly forked child (see the module docstring); ends with ``os._exit``."""
    stdin_fd, stdout_fd, stderr_fd, _status_fd, result_fd = fds  # the status socket is the server's
    try:
        if jail:
            from deepcoder.tools.isolation import enter_run_jail

            enter_run_jail(unprivileged_uid)
        else:
            os.setsid()
        for target, fd in ((0, stdin_fd), (1, stdout_fd), (2, stderr_fd), (RESULT_FD, result_fd)):
            os.dup2(fd, target, inheritable=False)
        os.closerange(RESULT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        request = json.loads(read_all(0))
        secret = request.pop("secret").encode()
        if not jail:
            os.chdir(request["workdir"])
        hooked = test_hooks and request.get("unrestricted")  # test hook: a few processes allowed
        apply_limits(memory_mb, request["timeout_s"], int(request.get("nproc", 0)) if hooked else 0)
        sink.remaining = request["max_output_chars"] + 1
        if request.get("unrestricted"):
            if not test_hooks:
                raise PermissionError("unrestricted runs are a test hook; this server was not started with it")
            result = execute_unrestricted(request["code"])
        elif "tests" in request:
            result = execute_graded(runtime, request["code"], request["tests"], request["entry_point"])
        else:
            result = execute(runtime, request["code"])
        write_all(RESULT_FD, secret + b"\n" + json.dumps(result).encode())
    except BaseException:  # noqa: BLE001 - sandbox setup failed; report it as a crash
        try:
            write_all(2, traceback.format_exc().encode("utf-8", "replace"))
        finally:
            os._exit(SETUP_FAILED_EXIT)
    os._exit(0)
