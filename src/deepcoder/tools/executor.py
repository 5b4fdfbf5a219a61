"""Run untrusted, LLM-written Python programs in a restricted, jailed child process.

Two layers, each assumed broken by the other (the threat model is in README.md):
  * layer 1, the Python policy: code is compiled with RestrictedPython (``policy.py``) and
    runs with guarded builtins (a rule-checking ``type``, ``eval`` of expressions under the
    same policy), attribute/item/write guards that judge objects by identity and exact
    ``str`` names, and an import allow-list of pure standard-library modules handed out as
    attribute-filtered copies whose name-taking entry points are denied or wrapped
    (``runtime.py``, ``safe_modules.py``): no ``open``, ``os``, ``sys``, sockets,
    subprocesses, dunder attributes or frame objects;
  * layer 2, the operating system (``isolation.py``): the fork server runs in new user, PID,
    mount, network, IPC and UTS namespaces with read-only mounts, a private /proc, no network
    and no environment of the parent; each run's child is pid 1 of its own PID namespace
    (no process outlives the run), with its own /proc and an empty tmpfs as the only
    writable place, an unprivileged uid, no_new_privs, a seccomp filter and rlimits on
    address space, CPU time, processes (RLIMIT_NPROC binds: the uid is not root), file
    size, open files and core dumps. ``isolation="process"`` is the weaker opt-in for
    machines without user namespaces (layer 1 only, plus a session, the rlimits and a
    scrubbed environment), with a warning on every run; by default the executor refuses
    to start where namespaces are unavailable (SandboxUnavailable, saying how to opt in).
Around both: a wall-clock deadline enforced by the parent with SIGKILL through a pidfd,
which no ``except BaseException`` can swallow; the result on a pipe of its own, carrying a
per-run secret and believed only if the exit status is 0 (output caps never drop it);
capped output; crashes (segfaults, OOM kills, SystemExit, ...) reported as results; ``run``
never raises.

Latency design: one long-lived fork server per executor (``fork_server.py``, started by
``server_handle.py`` with a clean ``-s -B -c`` boot and scrubbed environment) sets up its
namespaces once, pre-imports RestrictedPython, the policy and the allowed modules' sandbox
copies, then ``fork()``s one fresh child per run (``sandbox_child.py``), so a run costs a
fork and a few namespace calls instead of an interpreter start. One child per run: no
state leaks between runs. This process keeps the deadline (``supervisor.py``). Before each
run the server is pinged with a deadline; a dead, stopped or wedged server is killed and
restarted, and a run it was serving is reported as a crash. Thread safety: requests to the
server are serialized by a lock; children run concurrently.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import tempfile
import threading
import weakref
from dataclasses import dataclass

from deepcoder.tools.server_handle import PING_TIMEOUT_S, STARTUP_TIMEOUT_S, ServerError, ServerHandle
from deepcoder.tools.supervisor import RawOutcome, RunPipes, supervise

log = logging.getLogger(__name__)

ISOLATION_MODES = ("namespaces", "process")
ISOLATION_ENV = "DEEPCODER_SANDBOX_ISOLATION"


class SandboxUnavailable(RuntimeError):
    """Strong (namespace) isolation cannot run on this machine, and no weaker mode was chosen."""


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


def _parse_result(data: bytes | None, secret: str) -> dict | None:
    """The child's reply if `data` is exactly ``<secret>\\n<json object>`` of the right shape."""
    if not data:
        return None
    first, _, body = data.partition(b"\n")
    if not secrets.compare_digest(first, secret.encode()):
        return None
    try:
        reply = json.loads(body)
    except ValueError:
        return None
    if (
        not isinstance(reply, dict)
        or set(reply) != {"exit_reason", "error"}
        or reply["exit_reason"] not in ("ok", "error", "policy")
        or (reply["error"] is None) != (reply["exit_reason"] == "ok")
        or not isinstance(reply["error"], (str, type(None)))
    ):
        return None
    return reply


def _stop(box: list[ServerHandle]) -> None:
    while box:
        box.pop().stop()


class PythonExecutor:
    """Runs Python source in a sandboxed child process and reports what happened."""

    def __init__(
        self,
        timeout_s: float = 5.0,
        memory_mb: int = 1024,
        max_output_chars: int = 4000,
        isolation: str | None = None,
        _test_hooks: bool = False,
    ):
        """`isolation`: "namespaces" (default; the ``DEEPCODER_SANDBOX_ISOLATION`` environment
        variable may name another) or "process", the weaker opt-in for machines without user
        namespaces, which logs a warning on every run. Raises SandboxUnavailable if namespaces
        were asked for and this machine cannot provide them. `_test_hooks` is for the test
        suite only: it lets ``_run_unrestricted`` run plain Python inside a run's jail."""
        isolation = isolation or os.environ.get(ISOLATION_ENV) or "namespaces"
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {ISOLATION_MODES}, not {isolation!r}")
        if isolation == "namespaces":
            from deepcoder.tools.isolation import namespaces_unavailable_reason

            reason = namespaces_unavailable_reason()
            if reason is not None:
                raise SandboxUnavailable(
                    f"the sandbox needs Linux user, PID, mount and network namespaces, which are "
                    f"unavailable here ({reason}). To run with the weaker process-only isolation "
                    f"instead (no protection if the Python policy is escaped), set {ISOLATION_ENV}=process "
                    f"(agent.isolation=process) or pass PythonExecutor(isolation='process')."
                )
        self.isolation = isolation
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self._test_hooks = _test_hooks
        self._lock = threading.Lock()
        self._server: list[ServerHandle] = []  # at most one; a list so the finalizer can share it
        self._finalizer = weakref.finalize(self, _stop, self._server)
        with self._lock:
            self._server.append(self._new_server())  # loads while the caller does other work

    def _new_server(self) -> ServerHandle:
        return ServerHandle(self.memory_mb, self.isolation, self._test_hooks)

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
        return self._run({"code": code}, timeout_s)

    def run_tests(self, program: str, tests: str, entry_point: str, timeout_s: float | None = None) -> ExecutionResult:
        """Run `program`, then `tests` and ``check(entry_point)`` in a separate namespace."""
        return self._run({"code": program, "tests": tests, "entry_point": entry_point}, timeout_s)

    def _run_unrestricted(self, code: str, timeout_s: float | None = None, nproc: int = 0) -> ExecutionResult:
        """Test hook: run plain Python, without the policy, in the exact child setup of a run
        (`nproc`: RLIMIT_NPROC for this run, to test what happens to the processes it starts)."""
        if not self._test_hooks:
            raise RuntimeError("PythonExecutor(_test_hooks=True) is required")
        return self._run({"code": code, "unrestricted": True, "nproc": nproc}, timeout_s)

    def _run(self, fields: dict, timeout_s: float | None) -> ExecutionResult:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self.isolation == "process":
            log.warning(
                "sandbox: running with process-only isolation (%s=process); a program that "
                "escapes the Python policy can reach this machine",
                ISOLATION_ENV,
            )
        workdir = None
        if self.isolation == "process":  # with namespaces, the child's cwd is its own tmpfs
            try:
                workdir = tempfile.mkdtemp(prefix="deepcoder-sandbox-")
            except Exception as exc:  # noqa: BLE001 - e.g. out of disk or inodes
                return ExecutionResult("", f"SandboxError: cannot create workdir: {exc}", False, "crash", 0.0)
        pipes = None
        try:
            pipes = RunPipes()
            secret = secrets.token_hex(16)
            request = json.dumps(
                {
                    **fields,
                    "timeout_s": timeout_s,
                    "max_output_chars": self.max_output_chars,
                    "workdir": workdir,
                    "secret": secret,
                }
            ).encode("utf-8", "surrogatepass")
            server = self._submit(pipes.child_ends())
            pipes.close(pipes.child_ends())
            outcome = supervise(
                pipes,
                request,
                timeout_s,
                4 * self.max_output_chars + 8,
                PING_TIMEOUT_S,
                process_group=self.isolation == "process",
            )
            if outcome.spawn_error is not None or outcome.server_lost:
                server.suspect = True
            return self._interpret(outcome, timeout_s, secret)
        except Exception as exc:  # noqa: BLE001 - the contract is to report, not raise
            return ExecutionResult("", f"SandboxError: {type(exc).__name__}: {exc}", False, "crash", 0.0)
        finally:
            if pipes is not None:
                pipes.close()
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def _submit(self, fds: list[int]) -> ServerHandle:
        """Hand the run to a live, answering server, (re)starting it if needed; one retry."""
        with self._lock:
            for attempt in range(2):
                server = self._server[0] if self._server else None
                if server is not None and (server.suspect or not server.alive()):
                    self._drop_server()
                    server = None
                if server is None:
                    server = self._new_server()
                    self._server.append(server)
                try:
                    server.ensure_ready(STARTUP_TIMEOUT_S)
                    server.submit(fds)
                    return server
                except (OSError, ServerError):
                    self._drop_server()
                    if attempt:
                        raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _drop_server(self) -> None:
        while self._server:
            self._server.pop().kill()

    def _interpret(self, outcome: RawOutcome, timeout_s: float, secret: str) -> ExecutionResult:
        if outcome.spawn_error is not None:
            return ExecutionResult("", f"Crash: cannot start sandbox child: {outcome.spawn_error}", False, "crash", 0.0)
        stdout = self._cap(outcome.stdout.decode("utf-8", "replace"))
        err, duration = outcome.stderr, outcome.duration_s
        reply = _parse_result(outcome.result, secret) if outcome.returncode == 0 else None
        if reply is not None and not outcome.timed_out:
            return ExecutionResult(stdout, reply["error"], False, reply["exit_reason"], duration)
        if outcome.timed_out or outcome.returncode == -signal.SIGXCPU:
            error = f"TimeoutError: execution exceeded {timeout_s} s"
            return ExecutionResult(stdout, error, True, "timeout", duration)
        if outcome.server_lost:
            return self._crash(stdout, err, None, duration, "sandbox server died during the run")
        if outcome.returncode == 0:
            return self._crash(stdout, err, 0, duration, "sandbox process exited without a valid result")
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
