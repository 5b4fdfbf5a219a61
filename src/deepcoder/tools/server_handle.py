"""Executor-side handle of one fork server process: start it, ping it, hand it runs, stop it.

The server is spawned as ``sys.executable -s -B -c`` with a scrubbed environment, its own
session, cwd ``/`` and no inherited fds but its end of the control socket. Its stderr goes to
an unnamed temporary file, read only to explain a failed start. With ``namespaces`` isolation
the process started here (``proc``) only watches the real server, which runs in new
namespaces; killing ``proc`` kills the server and every child (``isolation.py``).

Supervision: before every run the executor pings the server (``?`` -> ``!``) with a deadline
of ``PING_TIMEOUT_S``; a server that does not answer in time (stopped, wedged) or is dead is
killed and restarted, so no run waits on a broken server for more than a small constant.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SRC_ROOT = str(Path(__file__).resolve().parents[2])
# sys.path[0] is the cwd for `-c`; replace it so nothing is imported from a run's directory.
BOOT = f"import sys; sys.path[0] = {_SRC_ROOT!r}; from deepcoder.tools.fork_server import main; main()"
# Fixed hash seed: set/dict-of-str iteration order, hence printed output, is reproducible.
CHILD_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"}
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
PING_TIMEOUT_S = 3.0


class ServerError(RuntimeError):
    """The fork server could not be started or reached."""


class ServerHandle:
    """One running fork server; ``submit`` may raise OSError/ServerError if it is gone."""

    def __init__(self, memory_mb: int, isolation: str = "namespaces", test_hooks: bool = False):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (the server's stderr for its lifetime; closed in stop)
        self.isolation = isolation
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-s",
                    "-B",
                    "-c",
                    BOOT,
                    str(memory_mb),
                    str(theirs.fileno()),
                    isolation,
                    "hooks=test" if test_hooks else "hooks=none",
                    f"owner={os.getpid()}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                cwd="/",
                env=CHILD_ENV,
                start_new_session=True,
                pass_fds=[theirs.fileno()],
            )
        except BaseException:
            ours.close()
            self._stderr.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._ready = False
        self.suspect = False  # set when a run got no reply from this server

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ensure_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Wait for the server's start-up, or ping it; ServerError if it does not answer in time."""
        if not self._ready:
            self._wait_ready(timeout_s)
        elif not self.ping():
            raise ServerError("sandbox server did not answer a ping")

    def ping(self, timeout_s: float = PING_TIMEOUT_S) -> bool:
        try:
            self._sock.send(b"?")
            return self._recv(timeout_s) == b"!"
        except OSError:
            return False

    def _recv(self, timeout_s: float) -> bytes | None:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        end = time.monotonic() + timeout_s
        while True:
            if not poller.poll(max(0.0, end - time.monotonic()) * 1000):
                return None
            return self._sock.recv(16)

    def submit(self, fds: list[int]) -> None:
        """Ask the server to fork a child wired to `fds` (stdin, stdout, stderr, status, result)."""
        socket.send_fds(self._sock, [b"F"], fds)

    def _wait_ready(self, timeout_s: float) -> None:
        if self._recv(timeout_s) == b"R":
            self._ready = True
            return
        self._halt()
        raise ServerError(f"sandbox server failed to start{self._failure_detail()}")

    def _failure_detail(self) -> str:
        try:
            self._stderr.seek(0)
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return f": {lines[-1][:300]}" if lines else ""

    def server_pids(self) -> list[int]:
        """Host pids of the watcher and its descendants that form this server (for tests)."""
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as fh:
                    todo += [int(p) for p in fh.read().split()]
            except OSError:
                pass
        return pids

    def stop(self) -> None:
        """Close the control socket (the server then kills its children and exits) and reap it."""
        self._halt()
        self._stderr.close()

    def kill(self) -> None:
        """Stop without waiting for the server's cooperation (it may be stopped or wedged)."""
        self._kill()
        self.stop()

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _halt(self) -> None:
        self._sock.close()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._kill()
            self.proc.wait()
