"""Executor side of one run: the channels to the forked child, its deadline and its kill.

The server sends ``P<pid>`` with a pidfd of the child on the run's status socket before any
user code runs; from then on the executor alone enforces the wall-clock deadline by SIGKILLing
the child through the pidfd (with ``namespaces`` isolation the child is pid 1 of the run's
PID namespace, so every process of the run dies with it; with ``process`` isolation its
process group is killed too). The server reports the reaped wait status (``S<status>``).
Status EOF without a status means the server died. The result comes on a pipe of its own;
stdout is capped, stderr keeps its head and tail for crash reports and is never parsed.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from dataclasses import dataclass

from deepcoder.tools.sandbox_child import write_all

DRAIN_TIMEOUT_S = 5.0
MAX_STDERR_BYTES = 1 << 16
MAX_RESULT_BYTES = 1 << 20  # a real result is a few KiB; more is a forgery attempt


@dataclass(frozen=True)
class RawOutcome:
    """What was observed of one run, before interpretation by the executor."""

    stdout: bytes
    stderr: bytes
    result: bytes | None  # what came on the result pipe; None if it overflowed
    returncode: int | None  # Popen convention (-N: killed by signal N); None: unknown
    timed_out: bool
    server_lost: bool  # the server died before reporting the child's status
    spawn_error: str | None  # the server could not fork a child (or did not answer)
    duration_s: float


class RunPipes:
    """The channels wiring one forked child to the executor: four pipes and a status socket."""

    def __init__(self):
        self._fds: list[int] = []
        self.stdin_r, self.stdin_w = self._pipe()
        self.stdout_r, self.stdout_w = self._pipe()
        self.stderr_r, self.stderr_w = self._pipe()
        self.result_r, self.result_w = self._pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.status_sock, self.status_r, self.status_w = ours, ours.fileno(), theirs.detach()
        self._fds.append(self.status_w)
        self.pidfd: int | None = None

    def _pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self._fds += [r, w]
        return r, w

    def child_ends(self) -> list[int]:
        return [self.stdin_r, self.stdout_w, self.stderr_w, self.status_w, self.result_w]

    def adopt(self, fd: int) -> None:
        self._fds.append(fd)

    def close(self, fds: list[int] | None = None) -> None:
        if fds is None:
            self.status_sock.close()
        for fd in list(self._fds if fds is None else fds):
            if fd in self._fds:
                self._fds.remove(fd)
                os.close(fd)


class _Status:
    """Parses the status socket: the child's pid (and pidfd), then the server's wait status."""

    def __init__(self):
        self.buffer = b""
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.returncode: int | None = None
        self.spawn_error: str | None = None
        self.eof = False

    def read(self, pipes: RunPipes) -> None:
        data, fds, _, _ = socket.recv_fds(pipes.status_sock, 4096, 1)
        for extra in fds:
            pipes.adopt(extra)
            if self.pidfd is None:
                self.pidfd = extra
        self.feed(data)

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


def kill_run(status: _Status, process_group: bool) -> None:
    if status.pidfd is not None:
        with contextlib.suppress(OSError):  # already gone
            signal.pidfd_send_signal(status.pidfd, signal.SIGKILL)
    if process_group and status.pid is not None:
        with contextlib.suppress(OSError):
            os.killpg(status.pid, signal.SIGKILL)


def supervise(
    pipes: RunPipes,
    request: bytes,
    timeout_s: float,
    max_stdout_bytes: int,
    spawn_timeout_s: float,
    process_group: bool,
) -> RawOutcome:
    """Send `request` to the child wired to `pipes`, collect its output, kill it at the deadline."""
    status = _Status()
    poller = select.poll()
    poller.register(pipes.status_r, select.POLLIN)
    give_up = time.monotonic() + spawn_timeout_s
    while status.pid is None and not status.eof and poller.poll(max(0.0, give_up - time.monotonic()) * 1000):
        status.read(pipes)
    if status.pid is None:
        lost = status.spawn_error is None and status.eof
        if status.spawn_error is None and not status.eof:
            status.spawn_error = "no reply from the sandbox server"
        return RawOutcome(b"", b"", b"", None, False, lost, status.spawn_error, 0.0)

    start = time.monotonic()
    with contextlib.suppress(BrokenPipeError):  # the child died before reading it; its status tells why
        write_all(pipes.stdin_w, request)
    pipes.close([pipes.stdin_w])

    stdout, result = bytearray(), bytearray()
    stderr_head, stderr_tail = bytearray(), bytearray()
    open_fds = {pipes.stdout_r, pipes.stderr_r, pipes.result_r, pipes.status_r}
    outputs = {pipes.stdout_r, pipes.stderr_r, pipes.result_r}
    for fd in outputs:
        poller.register(fd, select.POLLIN)
    deadline, timed_out, exited, overflow = start + timeout_s, False, False, False
    while open_fds:
        now = time.monotonic()
        if not exited and not open_fds & outputs:  # child gone: only await its status
            exited, deadline = True, min(deadline, now + DRAIN_TIMEOUT_S)
        if now >= deadline:
            if exited or timed_out:
                break
            kill_run(status, process_group)
            timed_out, deadline = True, now + DRAIN_TIMEOUT_S
        for fd, _ in poller.poll(max(0.0, deadline - now) * 1000):
            if fd == pipes.status_r:
                status.read(pipes)
                if status.eof:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    if status.returncode is None:  # the server died mid-run
                        kill_run(status, process_group)
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
            elif fd == pipes.stdout_r:
                if len(stdout) < max_stdout_bytes:
                    stdout += data
            elif fd == pipes.result_r:
                if len(result) + len(data) > MAX_RESULT_BYTES:
                    overflow = True
                else:
                    result += data
            elif len(stderr_head) < MAX_STDERR_BYTES:
                stderr_head += data
            else:
                stderr_tail = (stderr_tail + data)[-MAX_STDERR_BYTES:]
    duration = time.monotonic() - start
    stderr = bytes(stderr_head[:MAX_STDERR_BYTES]) + bytes(stderr_tail)
    return RawOutcome(
        bytes(stdout[:max_stdout_bytes]),
        stderr,
        None if overflow else bytes(result),
        status.returncode,
        timed_out,
        status.returncode is None,
        None,
        duration,
    )
