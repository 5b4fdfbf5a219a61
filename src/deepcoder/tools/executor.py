"""Run untrusted, LLM-written Python programs in a restricted child process.

What the sandbox covers:
  * code is compiled with RestrictedPython (``policy.py``) and runs with guarded
    builtins, attribute/item/write guards and an import allow-list of pure
    standard-library modules handed out as attribute-filtered copies
    (``runtime.py``, ``safe_modules.py``): no ``open``, ``os``, ``sys``, sockets,
    subprocesses, dunder attributes or frame objects;
  * every run happens in a fresh child process (``sandbox_child.py``) forked from a
    server that never imports torch: own session/process group, empty temporary
    cwd removed afterwards, environment scrubbed (no API keys), rlimits on address
    space, CPU time, processes, file size, open files and core dumps;
  * a wall-clock deadline enforced by the parent with SIGKILL of the child's
    process group, which no ``except BaseException`` in user code can swallow;
  * capped output, and crashes (segfaults, OOM kills, SystemExit, ...) reported
    as results; ``run`` never raises.
What it does not cover: it is not a security boundary against a determined
attacker (interpreter or library bugs, side channels, RestrictedPython gaps,
root users ignoring RLIMIT_NPROC). For untrusted deployments run it inside a
container or VM with no network and no secrets.

Latency design: one long-lived fork server per executor (``fork_server.py``,
started by ``server_handle.py`` with the same clean ``-s -B -c`` boot and scrubbed
environment) pre-imports RestrictedPython, the policy and the allowed modules'
sandbox copies, then ``fork()``s one fresh child per run (``sandbox_child.py``),
so a run costs a fork instead of an interpreter start. One child per run: no
state leaks between runs. This process keeps the deadline (``supervisor.py``):
the child reports its pid before user code runs, and the executor SIGKILLs its
process group. If the server dies it is restarted on the next run; a run it was
serving is reported as a crash. Thread safety: requests to the server are
serialized by a lock (a fork takes about a millisecond); children run concurrently.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import threading
import weakref
from dataclasses import dataclass

from deepcoder.tools.sandbox_child import RESULT_MARKER
from deepcoder.tools.server_handle import STARTUP_TIMEOUT_S, ServerHandle
from deepcoder.tools.supervisor import RawOutcome, RunPipes, supervise


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one sandboxed run."""

    stdout: str
    error: str | None
    timed_out: bool
    exit_reason: str  # "ok" | "error" | "timeout" | "crash" | "policy"
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stop(box: list[ServerHandle]) -> None:
    while box:
        box.pop().stop()


class PythonExecutor:
    """Runs Python source in a sandboxed child process and reports what happened."""

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 1024, max_output_chars: int = 4000):
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self._lock = threading.Lock()
        self._server: list[ServerHandle] = []  # at most one; a list so the finalizer can share it
        self._finalizer = weakref.finalize(self, _stop, self._server)
        with self._lock:
            self._server.append(ServerHandle(memory_mb))  # loads while the caller does other work

    def __enter__(self) -> PythonExecutor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop the fork server (and any child still running). It is restarted if used again."""
        with self._lock:
            _stop(self._server)

    def run(self, code: str, timeout_s: float | None = None) -> ExecutionResult:
        """Execute `code`; never raises."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            workdir = tempfile.mkdtemp(prefix="deepcoder-sandbox-")
        except Exception as exc:  # noqa: BLE001 - e.g. out of disk or inodes
            return ExecutionResult("", f"SandboxError: cannot create workdir: {exc}", False, "crash", 0.0)
        pipes = None
        try:
            pipes = RunPipes()
            request = json.dumps(
                {"code": code, "timeout_s": timeout_s, "max_output_chars": self.max_output_chars, "workdir": workdir}
            ).encode("utf-8", "surrogatepass")
            self._submit(pipes.child_ends())
            pipes.close(pipes.child_ends())
            outcome = supervise(pipes, request, timeout_s, 4 * self.max_output_chars + 8, STARTUP_TIMEOUT_S)
            return self._interpret(outcome, timeout_s)
        except Exception as exc:  # noqa: BLE001 - the contract is to report, not raise
            return ExecutionResult("", f"SandboxError: {type(exc).__name__}: {exc}", False, "crash", 0.0)
        finally:
            if pipes is not None:
                pipes.close()
            shutil.rmtree(workdir, ignore_errors=True)

    def _submit(self, fds: list[int]) -> None:
        """Hand the run to the server, (re)starting it if it is not running; one retry."""
        with self._lock:
            for attempt in range(2):
                if self._server and not self._server[0].alive():
                    _stop(self._server)
                if not self._server:
                    self._server.append(ServerHandle(self.memory_mb))
                try:
                    self._server[0].submit(fds)
                    return
                except OSError:
                    _stop(self._server)
                    if attempt:
                        raise

    def _interpret(self, outcome: RawOutcome, timeout_s: float) -> ExecutionResult:
        if outcome.spawn_error is not None:
            return ExecutionResult("", f"Crash: cannot start sandbox child: {outcome.spawn_error}", False, "crash", 0.0)
        stdout = self._cap(outcome.stdout.decode("utf-8", "replace"))
        err, duration = outcome.stderr, outcome.duration_s
        marker = err.rfind(RESULT_MARKER)
        if marker >= 0 and not outcome.timed_out:
            reply = json.loads(err[marker + len(RESULT_MARKER) :])
            return ExecutionResult(stdout, reply["error"], False, reply["exit_reason"], duration)
        if outcome.timed_out or outcome.returncode == -signal.SIGXCPU:
            error = f"TimeoutError: execution exceeded {timeout_s} s"
            return ExecutionResult(stdout, error, True, "timeout", duration)
        if outcome.server_lost:
            return self._crash(stdout, err, None, duration, "sandbox server died during the run")
        return self._crash(stdout, err, outcome.returncode, duration, "sandbox process died")

    def _cap(self, text: str) -> str:
        if len(text) <= self.max_output_chars:
            return text
        return text[: self.max_output_chars] + f"\n...[output truncated at {self.max_output_chars} chars]"

    @staticmethod
    def _crash(stdout: str, stderr: bytes, returncode: int | None, duration: float, what: str):
        if returncode is None:
            how = "status unknown"
        elif returncode < 0:
            how = f"killed by {_signal_name(-returncode)}"
        else:
            how = f"exit code {returncode}"
        lines = stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {lines[-1][:300]}" if lines else ""
        return ExecutionResult(stdout, f"Crash: {what} ({how}){detail}", False, "crash", duration)
