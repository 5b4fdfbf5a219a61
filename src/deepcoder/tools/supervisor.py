"""Executor side of one run: the pipes to the forked child, its deadline and its kill.

The child reports its pid (``P<pid>``) on the status pipe before any user code
runs; from then on the executor alone enforces the wall-clock deadline by
SIGKILLing the child's process group. The server reports the reaped wait status
(``S<status>``). Status-pipe EOF without a status means the server died.
"""

from __future__ import annotations

import os
import select
import signal
import time
from dataclasses import dataclass

from deepcoder.tools.sandbox_child import write_all

DRAIN_TIMEOUT_S = 5.0
MAX_STDERR_BYTES = 1 << 16


@dataclass(frozen=True)
class RawOutcome:
    """What was observed of one run, before interpretation by the executor."""

    stdout: bytes
    stderr: bytes
    returncode: int | None  # Popen convention (-N: killed by signal N); None: unknown
    timed_out: bool
    server_lost: bool  # the server died before reporting the child's status
    spawn_error: str | None  # the server could not fork a child
    duration_s: float


class RunPipes:
    """The four pipes wiring one forked child to the executor."""

    def __init__(self):
        self._fds: list[int] = []
        self.stdin_r, self.stdin_w = self._pipe()
        self.stdout_r, self.stdout_w = self._pipe()
        self.stderr_r, self.stderr_w = self._pipe()
        self.status_r, self.status_w = self._pipe()

    def _pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self._fds += [r, w]
        return r, w

    def child_ends(self) -> list[int]:
        return [self.stdin_r, self.stdout_w, self.stderr_w, self.status_w]

    def close(self, fds: list[int] | None = None) -> None:
        for fd in list(self._fds if fds is None else fds):
            if fd in self._fds:
                self._fds.remove(fd)
                os.close(fd)


class _Status:
    """Parses the status pipe: the child's pid, then the server's wait status."""

    def __init__(self):
        self.buffer = b""
        self.pid: int | None = None
        self.returncode: int | None = None
        self.spawn_error: str | None = None
        self.eof = False

    def feed(self, data: bytes) -> None:
        if not data:
            self.eof = True
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            kind, value = line[:1], line[1:].decode("utf-8", "replace")
            if kind == b"P":
                self.pid = int(value)
            elif kind == b"S":
                self.returncode = os.waitstatus_to_exitcode(int(value))
            elif kind == b"E":
                self.spawn_error = value


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # already gone
        pass


def supervise(
    pipes: RunPipes, request: bytes, timeout_s: float, max_stdout_bytes: int, startup_timeout_s: float
) -> RawOutcome:
    """Send `request` to the child wired to `pipes`, collect its output, kill it at the deadline."""
    status = _Status()
    poller = select.poll()
    poller.register(pipes.status_r, select.POLLIN)
    give_up = time.monotonic() + startup_timeout_s
    while status.pid is None and not status.eof and poller.poll(max(0.0, give_up - time.monotonic()) * 1000):
        status.feed(os.read(pipes.status_r, 4096))
    if status.pid is None:
        if status.spawn_error is None and not status.eof:
            status.spawn_error = "no reply from the sandbox server"
        return RawOutcome(b"", b"", None, False, status.spawn_error is None, status.spawn_error, 0.0)

    start = time.monotonic()
    try:
        write_all(pipes.stdin_w, request)
    except BrokenPipeError:  # the child died before reading it; its status tells why
        pass
    pipes.close([pipes.stdin_w])

    outputs = {pipes.stdout_r: bytearray(), pipes.stderr_r: bytearray()}
    caps = {pipes.stdout_r: max_stdout_bytes, pipes.stderr_r: 2 * MAX_STDERR_BYTES}
    open_fds = set(outputs) | {pipes.status_r}
    for fd in outputs:
        poller.register(fd, select.POLLIN)
    deadline, timed_out, exited = start + timeout_s, False, False
    while open_fds:
        now = time.monotonic()
        if not exited and not open_fds & outputs.keys():  # child gone: only await its status
            exited, deadline = True, min(deadline, now + DRAIN_TIMEOUT_S)
        if now >= deadline:
            if exited or timed_out:
                break
            _kill_group(status.pid)
            timed_out, deadline = True, now + DRAIN_TIMEOUT_S
        for fd, _ in poller.poll(max(0.0, deadline - now) * 1000):
            data = os.read(fd, 1 << 16)
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
            if fd == pipes.status_r:
                status.feed(data)
                if status.eof and status.returncode is None:  # the server died mid-run
                    _kill_group(status.pid)
            elif len(outputs[fd]) < caps[fd]:
                outputs[fd] += data
    duration = time.monotonic() - start
    stdout = bytes(outputs[pipes.stdout_r][:max_stdout_bytes])
    stderr = bytes(outputs[pipes.stderr_r][-MAX_STDERR_BYTES:])
    return RawOutcome(stdout, stderr, status.returncode, timed_out, status.returncode is None, None, duration)
