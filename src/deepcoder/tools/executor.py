"""Run untrusted, LLM-written Python programs in a restricted child process.

What the sandbox covers:
  * code is compiled with RestrictedPython (``policy.py``) and runs with guarded
    builtins, attribute/item/write guards and an import allow-list of pure
    standard-library modules handed out as attribute-filtered copies
    (``runtime.py``, ``safe_modules.py``): no ``open``, ``os``, ``sys``, sockets,
    subprocesses, dunder attributes or frame objects;
  * every run happens in a fresh child interpreter (``sandbox_child.py``) that
    never imports torch: own session/process group, empty temporary cwd removed
    afterwards, environment scrubbed (no API keys), rlimits on address space,
    CPU time, processes, file size, open files and core dumps;
  * a wall-clock deadline enforced by the parent with SIGKILL of the child's
    process group, which no ``except BaseException`` in user code can swallow;
  * capped output, and crashes (segfaults, OOM kills, SystemExit, ...) reported
    as results; ``run`` never raises.
What it does not cover: it is not a security boundary against a determined
attacker (interpreter or library bugs, side channels, RestrictedPython gaps,
root users ignoring RLIMIT_NPROC). For untrusted deployments run it inside a
container or VM with no network and no secrets.

Latency: a spare worker is spawned ahead of time and consumed by the next run
(one worker per run, so no state leaks between runs).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from deepcoder.tools.sandbox_child import RESULT_MARKER

_SRC_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = (
    f"import sys; sys.path.insert(0, {_SRC_ROOT!r}); "
    "from deepcoder.tools.sandbox_child import main; main()"
)
# Fixed hash seed: set/dict-of-str iteration order, hence printed output, is reproducible.
_CHILD_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"}
_STARTUP_TIMEOUT_S = 30.0
_DRAIN_TIMEOUT_S = 5.0


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


class _Worker:
    """One child interpreter, started ahead of use, good for a single run."""

    def __init__(self, memory_mb: int):
        self.workdir = tempfile.mkdtemp(prefix="deepcoder-sandbox-")
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-B", "-c", _BOOT, str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
            env=_CHILD_ENV,
            start_new_session=True,
            close_fds=True,
        )
        self.ready = False

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the child reports it has loaded and limited itself."""
        if not self.ready:
            fd = self.proc.stdout.fileno()
            readable, _, _ = select.select([fd], [], [], timeout_s)
            self.ready = bool(readable) and os.read(fd, 1) == b"R"
        return self.ready

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def discard(self) -> None:
        """Kill the process group, reap the child, close pipes and remove the workdir."""
        self.kill()
        try:
            self.proc.communicate(timeout=_DRAIN_TIMEOUT_S)
        except (subprocess.TimeoutExpired, ValueError, OSError):
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _discard_all(workers: list[_Worker]) -> None:
    while workers:
        workers.pop().discard()


class PythonExecutor:
    """Runs Python source in a sandboxed child process and reports what happened."""

    def __init__(
        self,
        timeout_s: float = 5.0,
        memory_mb: int = 1024,
        max_output_chars: int = 4000,
        spare_workers: int = 1,
    ):
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.spare_workers = spare_workers
        self._lock = threading.Lock()
        self._spares: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _discard_all, self._spares)
        with self._lock:
            self._refill()

    def __enter__(self) -> PythonExecutor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop the spare workers. The executor restarts them if used again."""
        with self._lock:
            _discard_all(self._spares)

    def run(self, code: str, timeout_s: float | None = None) -> ExecutionResult:
        """Execute `code`; never raises."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            worker = self._take_worker()
        except Exception as exc:  # noqa: BLE001 - e.g. out of processes or file descriptors
            return ExecutionResult("", f"SandboxError: cannot start worker: {exc}", False, "crash", 0.0)
        try:
            return self._run_in(worker, code, timeout_s)
        except Exception as exc:  # noqa: BLE001 - the contract is to report, not raise
            return ExecutionResult("", f"SandboxError: {type(exc).__name__}: {exc}", False, "crash", 0.0)
        finally:
            worker.discard()

    def _take_worker(self) -> _Worker:
        with self._lock:
            worker = self._spares.pop(0) if self._spares else _Worker(self.memory_mb)
            self._refill()
        return worker

    def _refill(self) -> None:
        while len(self._spares) < self.spare_workers:
            self._spares.append(_Worker(self.memory_mb))

    def _run_in(self, worker: _Worker, code: str, timeout_s: float) -> ExecutionResult:
        if not worker.wait_ready(_STARTUP_TIMEOUT_S):
            worker.kill()
            _, err = worker.proc.communicate(timeout=_DRAIN_TIMEOUT_S)
            return self._crash("", err, worker.proc.returncode, 0.0, "sandbox worker failed to start")
        request = json.dumps(
            {"code": code, "timeout_s": timeout_s, "max_output_chars": self.max_output_chars}
        ).encode("utf-8", "surrogatepass")
        start = time.monotonic()
        try:
            out, err = worker.proc.communicate(request, timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            worker.kill()
            out, err = worker.proc.communicate(timeout=_DRAIN_TIMEOUT_S)
            timed_out = True
        duration = time.monotonic() - start
        stdout = self._cap(out.decode("utf-8", "replace"))
        marker = err.rfind(RESULT_MARKER)
        if marker >= 0 and not timed_out:
            reply = json.loads(err[marker + len(RESULT_MARKER):])
            return ExecutionResult(stdout, reply["error"], False, reply["exit_reason"], duration)
        returncode = worker.proc.returncode
        if timed_out or returncode == -signal.SIGXCPU:
            error = f"TimeoutError: execution exceeded {timeout_s} s"
            return ExecutionResult(stdout, error, True, "timeout", duration)
        return self._crash(stdout, err, returncode, duration, "sandbox process died")

    def _cap(self, text: str) -> str:
        if len(text) <= self.max_output_chars:
            return text
        return text[: self.max_output_chars] + f"\n...[output truncated at {self.max_output_chars} chars]"

    @staticmethod
    def _crash(stdout: str, stderr: bytes, returncode: int | None, duration: float, what: str):
        if returncode is not None and returncode < 0:
            how = f"killed by {_signal_name(-returncode)}"
        else:
            how = f"exit code {returncode}"
        lines = stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {lines[-1][:300]}" if lines else ""
        return ExecutionResult(stdout, f"Crash: {what} ({how}){detail}", False, "crash", duration)
