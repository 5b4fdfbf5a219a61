"""Child-process side of the sandbox: one worker process runs exactly one program.

Protocol (all set up by ``executor.py``):
  1. started as ``python -c BOOT <memory_mb>`` in a fresh session, empty temp cwd
     and a minimal environment; it loads the sandbox runtime, applies its resource
     limits, then writes ``R`` to stdout ("ready"). Allowed modules are imported
     on first use, which keeps worker start-up (the throughput bound) short;
  2. reads one JSON request ``{"code", "timeout_s", "max_output_chars"}`` from stdin;
  3. streams the program's printed output to stdout (at most max_output_chars + 1
     characters, so the parent can tell that it was cut);
  4. writes ``RESULT_MARKER`` + JSON ``{"exit_reason", "error"}`` to stderr and exits.
Limits are applied here, after the imports and before any user code, instead of
in a ``preexec_fn`` so the (possibly multi-threaded, torch-loaded) parent can
spawn with vfork.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import sys
import warnings

from deepcoder.tools.policy import PolicyError, compile_sandboxed
from deepcoder.tools.runtime import SandboxRuntime

RESULT_MARKER = b"\x00DEEPCODER_RESULT\x00"
MAX_ERROR_CHARS = 2000


class OutputSink:
    """Writes printed text to fd 1 unbuffered, up to a character budget."""

    def __init__(self):
        self.remaining = 0

    def __call__(self, text: str) -> None:
        if self.remaining <= 0 or not text:
            return
        chunk = text[: self.remaining]
        self.remaining -= len(chunk)
        data = chunk.encode("utf-8", "replace")
        while data:
            data = data[os.write(1, data):]


def apply_limits(memory_mb: int) -> None:
    """Address space, no new processes, no file writes, no core dumps."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes fail with an error instead
    limit = memory_mb * 1024 * 1024
    for which, value in (
        (resource.RLIMIT_AS, limit),
        (resource.RLIMIT_NPROC, 0),
        (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 16),
    ):
        resource.setrlimit(which, (value, value))


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


def main() -> None:
    warnings.simplefilter("ignore")
    sys.setrecursionlimit(3000)
    sink = OutputSink()
    runtime = SandboxRuntime(sink)
    apply_limits(int(sys.argv[1]))
    os.write(1, b"R")
    request = json.loads(sys.stdin.buffer.read() or b"null")
    if request is None:  # parent discarded this spare worker
        os._exit(0)
    cpu_s = math.ceil(request["timeout_s"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    sink.remaining = request["max_output_chars"] + 1
    result = execute(runtime, request["code"])
    os.write(2, RESULT_MARKER + json.dumps(result).encode() + b"\n")
    os._exit(0)


if __name__ == "__main__":
    main()
