"""Fork server: a pre-loaded, single-threaded process that forks one sandbox child per run.

Started by ``server_handle.py`` as
``python -s -B -c BOOT <memory_mb> <control fd> <isolation> <hooks> owner=<pid>`` in a scrubbed
environment. With ``namespaces`` isolation it first moves itself into new user, PID, mount,
network, IPC and UTS namespaces (``isolation.boot_namespaces``; the process the executor
started only watches). It never imports torch; it pre-imports RestrictedPython, the policy and
the sandbox copies of every allowed module once, so a run costs a ``fork()`` instead of an
interpreter start (the latency design of ``executor.py``); the namespaces are set up once per
server, and per run only what is cheap (a PID and a mount namespace, a /proc, a tmpfs).
It starts no threads, so forking it is safe.

Control socket (AF_UNIX, SOCK_SEQPACKET):
  * server -> executor: ``R`` once loaded;
  * executor -> server: ``?`` (a ping; the server answers ``!``), or ``F`` carrying five fds
    (child stdin, stdout, stderr, status socket, result pipe). The server forks; it sends
    ``P<pid>\\n`` with a pidfd of the child on the status socket (the executor kills through
    it at the deadline), and after reaping the child ``S<wait status>\\n`` (``E<message>\\n``
    if fork failed), then closes it. The child runs ``sandbox_child.run_child``.
  * EOF (the executor closed or died): SIGKILL the children still running, reap, exit.
``hooks=test`` (set only by the test suite's executors) lets a request run unrestricted Python
inside the exact child setup of a run, and ``W`` wedge the server; without it both are refused.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import socket
import sys
import warnings

RUN_FDS = 5


def preload():
    """Everything a run needs that does not depend on the run, built once."""
    from deepcoder.tools.policy import compile_sandboxed
    from deepcoder.tools.runtime import SandboxRuntime
    from deepcoder.tools.safe_modules import ALLOWED_MODULES, LAZY_IMPORTS
    from deepcoder.tools.sandbox_child import OutputSink

    warnings.simplefilter("ignore")
    sys.setrecursionlimit(3000)
    harden_host_modules()
    for name in LAZY_IMPORTS:  # the jailed child may not be able to read the interpreter's files
        __import__(name)
    sink = OutputSink()
    runtime = SandboxRuntime(sink)
    for name in ALLOWED_MODULES:
        runtime.modules.get(name)
    compile_sandboxed("print(sorted({1: 2}.items()))")  # warm RestrictedPython's caches
    gc.collect()
    gc.freeze()  # children inherit these objects; keep gc from touching (copying) their pages
    return runtime, sink


def harden_host_modules() -> None:
    """Library entry points that take caller-chosen attribute names, checked at the source.

    Only this server process (and the children it forks) is affected.
    """
    import builtins
    import enum
    import types

    from deepcoder.tools.runtime import check_name

    # dataclasses and enum look classes' modules up in sys.modules: let "__main__" (the name
    # sandboxed code runs under) be an empty module, not the server's boot script.
    sys.modules["__main__"] = types.ModuleType("__main__")
    create = enum.EnumType.__dict__["_create_"]

    def member_names(names):
        if builtins.type(names) is str:
            return names.replace(",", " ").split()
        if builtins.type(names) is dict:
            return list(names)
        if builtins.type(names) in (list, tuple):
            return [
                n if builtins.type(n) is str else n[0] if builtins.type(n) in (list, tuple) and len(n) == 2 else None
                for n in names
            ]
        raise TypeError("Enum(): names must be a str, dict, list or tuple in the sandbox")

    def _create_(cls, class_name, names, *, module=None, qualname=None, type=None, start=1, boundary=None):
        if module is not None or qualname is not None:
            raise TypeError("Enum(): module= and qualname= are not available in the sandbox")
        for name in member_names(names):
            check_name(name, "member")
        return create(cls, class_name, names, module="__main__", type=type, start=start, boundary=boundary)

    enum.EnumType._create_ = _create_  # type: ignore[attr-defined]  # private hook, absent from typeshed


class ForkServer:
    """The server loop: fork on request, reap on SIGCHLD, report wait statuses."""

    def __init__(self, control: socket.socket, memory_mb: int, isolation: str, test_hooks: bool):
        from deepcoder.tools import isolation as iso

        self.control = control
        self.memory_mb = memory_mb
        self.isolation = isolation
        self.test_hooks = test_hooks
        self.forker = iso.PidNamespaceForker() if isolation == "namespaces" else None
        self.unprivileged_uid = isolation == "namespaces" and _sandbox_uid_mapped(iso.SANDBOX_UID)
        self.runtime, self.sink = preload()
        self.status_fds: dict[int, int] = {}  # child pid -> its status socket
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)

    def serve(self) -> None:
        self.control.send(b"R")
        while True:
            watched: list[socket.socket | int] = [self.control, self.wake_r]
            readable, _, _ = select.select(watched, [], [])
            if self.wake_r in readable:
                while _drain(self.wake_r):
                    pass
            if self.control in readable:
                message, fds, _, _ = socket.recv_fds(self.control, 16, RUN_FDS)
                if not message:
                    break
                if message == b"?":
                    self.control.send(b"!")
                    _close(fds)
                elif message == b"W" and self.test_hooks:  # test hook: a wedged server
                    while True:
                        signal.pause()
                else:
                    self.spawn(fds)
            self.reap()
        self.shutdown()

    def spawn(self, fds: list[int]) -> None:
        if len(fds) != RUN_FDS:
            _close(fds)
            return
        try:
            pid = self.forker.fork() if self.forker else os.fork()
        except OSError as exc:
            _report(fds[3], f"E{exc}")
            _close(fds)
            return
        if pid == 0:
            from deepcoder.tools.sandbox_child import run_child

            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            if self.forker:
                self.forker.close_in_child()
            run_child(
                self.runtime,
                self.sink,
                self.memory_mb,
                fds,
                jail=self.isolation == "namespaces",
                unprivileged_uid=self.unprivileged_uid,
                test_hooks=self.test_hooks,
            )
        try:
            pidfd = os.pidfd_open(pid)
            status = socket.socket(fileno=os.dup(fds[3]))
            try:
                socket.send_fds(status, [f"P{pid}\n".encode()], [pidfd])
            finally:
                status.close()
                os.close(pidfd)
        except OSError:  # the executor gave up on this run already; reap() reports to nobody
            pass
        self.status_fds[pid] = fds[3]
        _close([fds[0], fds[1], fds[2], fds[4]])

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
            kills = (os.kill,) if self.forker else (os.killpg, os.kill)  # the child may not have setsid yet
            for kill in kills:
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
        self.reap(block=True)


def _sandbox_uid_mapped(uid: int) -> bool:
    with open("/proc/self/uid_map") as fh:
        for line in fh:
            inside, _, count = (int(x) for x in line.split())
            if inside <= uid < inside + count:
                return True
    return False


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def _report(fd: int, line: str) -> None:
    try:
        data = f"{line}\n".encode()
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # the executor already gave up on this run
        pass


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def main() -> None:
    memory_mb, control_fd, isolation, hooks = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the owner's terminal is the owner's
    if isolation == "namespaces":
        from deepcoder.tools.isolation import boot_namespaces

        boot_namespaces([control_fd])  # returns in the fork server, in its namespaces
    elif isolation != "process":
        raise SystemExit(f"unknown isolation {isolation!r}")
    control = socket.socket(fileno=control_fd)
    ForkServer(control, memory_mb, isolation, hooks == "hooks=test").serve()


if __name__ == "__main__":
    main()
