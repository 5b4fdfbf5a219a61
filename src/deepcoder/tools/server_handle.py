"""Executor-side handle of one fork server process: start it, hand it runs, stop it.

The server is spawned like the old one-shot workers were: ``sys.executable -s -B -c``
with a scrubbed environment, its own session, cwd ``/`` and no inherited fds but
its end of the control socket. Its stderr goes to an unnamed temporary file, read
only to explain a failed start.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
import contextlib

_SRC_ROOT = str(Path(__file__).resolve().parents[2])
# sys.path[0] is the cwd for `-c`; replace it so nothing is imported from a run's directory.
BOOT = f"import sys; sys.path[0] = {_SRC_ROOT!r}; from deepcoder.tools.fork_server import main; main()"
# Fixed hash seed: set/dict-of-str iteration order, hence printed output, is reproducible.
CHILD_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"}
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class ServerError(RuntimeError):
    """The fork server could not be started or reached."""


class ServerHandle:
    """One running fork server; ``submit`` may raise OSError/ServerError if it is gone."""

    def __init__(self, memory_mb: int):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-s", "-B", "-c", BOOT, str(memory_mb), str(theirs.fileno()), f"owner={os.getpid()}"],
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

    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, fds: list[int]) -> None:
        """Ask the server to fork a child wired to `fds` (stdin, stdout, stderr, status)."""
        if not self._ready:
            self._wait_ready()
        socket.send_fds(self._sock, [b"F"], fds)

    def _wait_ready(self) -> None:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        if poller.poll(STARTUP_TIMEOUT_S * 1000) and self._sock.recv(16) == b"R":
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

    def stop(self) -> None:
        """Close the control socket (the server then kills its children and exits) and reap it."""
        self._halt()
        self._stderr.close()

    def _halt(self) -> None:
        self._sock.close()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
