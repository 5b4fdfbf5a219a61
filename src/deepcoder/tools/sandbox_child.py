"""Forked-child side of the sandbox: one child runs exactly one program, then exits.

``fork_server.py`` forks a child per run and calls ``run_child``, which
  1. becomes leader of a new session/process group, then writes ``P<pid>\\n`` to the
     run's status pipe, so the executor can SIGKILL the whole group at its deadline;
  2. moves stdin/stdout/stderr onto the run's pipes and closes every other fd
     (the server's control socket, other runs' pipes);
  3. reads one JSON request ``{"code", "timeout_s", "max_output_chars", "workdir"}``
     from stdin, chdirs into the run's fresh temp dir and applies the rlimits;
  4. streams the program's printed output to stdout (at most max_output_chars + 1
     characters, so the parent can tell that it was cut);
  5. writes ``RESULT_MARKER`` + JSON ``{"exit_reason", "error"}`` to stderr and exits.
It never returns into the server loop. Every child starts from the server's
pristine, pre-loaded memory image, so nothing leaks from one run to the next.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import traceback

from deepcoder.tools.policy import PolicyError, compile_sandboxed
from deepcoder.tools.runtime import SandboxRuntime

RESULT_MARKER = b"\x00DEEPCODER_RESULT\x00"
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


def apply_limits(memory_mb: int, timeout_s: float) -> None:
    """Address space, CPU time, no new processes, no file writes, few fds, no core dumps."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes fail with an error instead
    cpu_s = math.ceil(timeout_s) + 1
    limit = memory_mb * 1024 * 1024
    for which, soft, hard in (
        (resource.RLIMIT_AS, limit, limit),
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
        (resource.RLIMIT_NPROC, 0, 0),
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
        if isinstance(exc, MemoryError):
            runtime.namespace.clear()  # free the program's data before formatting
        try:
            return {"exit_reason": "error", "error": format_error(exc)}
        except BaseException:  # noqa: BLE001 - e.g. a user __str__ that raises
            return {"exit_reason": "error", "error": type(exc).__name__}
    return {"exit_reason": "ok", "error": None}


def run_child(runtime: SandboxRuntime, sink: OutputSink, memory_mb: int, fds: list[int]) -> None:
    """Body of a freshly forked child (see the module docstring); ends with ``os._exit``."""
    stdin_fd, stdout_fd, stderr_fd, status_fd = fds
    try:
        os.setsid()
        write_all(status_fd, f"P{os.getpid()}\n".encode())
        for target, fd in ((0, stdin_fd), (1, stdout_fd), (2, stderr_fd)):
            os.dup2(fd, target)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        request = json.loads(read_all(0))
        os.chdir(request["workdir"])
        apply_limits(memory_mb, request["timeout_s"])
        sink.remaining = request["max_output_chars"] + 1
        result = execute(runtime, request["code"])
        write_all(2, RESULT_MARKER + json.dumps(result).encode() + b"\n")
    except BaseException:  # noqa: BLE001 - sandbox setup failed; report it as a crash
        try:
            write_all(2, traceback.format_exc().encode("utf-8", "replace"))
        finally:
            os._exit(SETUP_FAILED_EXIT)
    os._exit(0)
