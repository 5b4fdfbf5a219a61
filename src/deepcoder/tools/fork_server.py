"""Fork server: a pre-loaded, single-threaded process that forks one sandbox child per run.

Started by ``server_handle.py`` as ``python -s -B -c BOOT <memory_mb> <control fd> owner=<pid>``
in a scrubbed environment. It never imports torch; it pre-imports RestrictedPython,
the policy and the sandbox copies of every allowed module once, so a run costs a
``fork()`` instead of an interpreter start (the latency design of ``executor.py``).
It starts no threads, so forking it is safe.

Control socket (AF_UNIX, SOCK_SEQPACKET):
  * server -> executor: ``R`` once loaded;
  * executor -> server: ``F`` carrying four fds (child stdin, stdout, stderr, status pipe).
    The server forks; the child runs ``sandbox_child.run_child``. After reaping it,
    the server writes ``S<wait status>\\n`` to the status pipe (``E<message>\\n`` if
    fork failed) and closes it.
  * EOF (the executor closed or died): SIGKILL the children still running, reap, exit.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
import warnings

from deepcoder.tools.policy import compile_sandboxed
from deepcoder.tools.runtime import SandboxRuntime
from deepcoder.tools.safe_modules import ALLOWED_MODULES
from deepcoder.tools.sandbox_child import OutputSink, run_child, write_all
import contextlib

RUN_FDS = 4


def preload() -> tuple[SandboxRuntime, OutputSink]:
    """Everything a run needs that does not depend on the run, built once."""
    warnings.simplefilter("ignore")
    sys.setrecursionlimit(3000)
    sink = OutputSink()
    runtime = SandboxRuntime(sink)
    for name in ALLOWED_MODULES:
        runtime.modules.get(name)
    compile_sandboxed("print(sorted({1: 2}.items()))")  # warm RestrictedPython's caches
    gc.collect()
    gc.freeze()  # children inherit these objects; keep gc from touching (copying) their pages
    return runtime, sink


class ForkServer:
    """The server loop: fork on request, reap on SIGCHLD, report wait statuses."""

    def __init__(self, control: socket.socket, memory_mb: int):
        self.control = control
        self.memory_mb = memory_mb
        self.runtime, self.sink = preload()
        self.status_fds: dict[int, int] = {}  # child pid -> its status pipe
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)

    def serve(self) -> None:
        self.control.send(b"R")
        while True:
            readable, _, _ = select.select([self.control, self.wake_r], [], [])
            if self.wake_r in readable:
                while _drain(self.wake_r):
                    pass
            if self.control in readable:
                message, fds, _, _ = socket.recv_fds(self.control, 16, RUN_FDS)
                if not message:
                    break
                self.spawn(fds)
            self.reap()
        self.shutdown()

    def spawn(self, fds: list[int]) -> None:
        if len(fds) != RUN_FDS:
            _close(fds)
            return
        try:
            pid = os.fork()
        except OSError as exc:
            _report(fds[3], f"E{exc}")
            _close(fds)
            return
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            run_child(self.runtime, self.sink, self.memory_mb, fds)
        self.status_fds[pid] = fds[3]
        _close(fds[:3])

    def reap(self, block: bool = False) -> None:
        while self.status_fds:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = self.status_fds.pop(pid, None)
            if fd is not None:
                _report(fd, f"S{status}")
                _close([fd])

    def shutdown(self) -> None:
        for pid in list(self.status_fds):
            for kill in (os.killpg, os.kill):  # os.kill: the child may not have called setsid yet
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
        self.reap(block=True)


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def _report(fd: int, line: str) -> None:
    try:
        write_all(fd, f"{line}\n".encode())
    except OSError:  # the executor already gave up on this run
        pass


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def main() -> None:
    memory_mb, control_fd = int(sys.argv[1]), int(sys.argv[2])
    control = socket.socket(fileno=control_fd)
    ForkServer(control, memory_mb).serve()


if __name__ == "__main__":
    main()
